//! Compile-error tests of the derive macros: each `tests/ui/**/*.rs` must fail to compile
//! with exactly its `.stderr`; each `tests/pass/*.rs` must compile and run.
//!
//! The `.stderr` files depend on the compiler version; see `README.md` to re-bless them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/**/*.rs");
    t.pass("tests/pass/*.rs");
}
