//! Runnable examples live beside this crate: `cargo run --example snapshotting`.
//!
//! The bank service's code is a module of this crate, so that its end-to-end test can
//! start it in-process; `cargo run --example bank` runs it as a program.

#[path = "../bank/mod.rs"]
pub mod bank;
