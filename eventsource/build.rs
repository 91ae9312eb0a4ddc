fn main() {
    // The migrations embedded by `sqlx::migrate!` live at the workspace root.
    println!("cargo:rerun-if-changed=../migrations");
}
