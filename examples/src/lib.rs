//! Runnable examples live beside this crate: `cargo run --example snapshotting`.
//!
//! The bank service's and the metrics endpoint's code are modules of this crate, so that
//! their end-to-end tests can start them in-process; `cargo run --example bank` and
//! `cargo run --example metrics` run them as programs.

#[path = "../bank/mod.rs"]
pub mod bank;

#[path = "../metrics/mod.rs"]
pub mod metrics;
