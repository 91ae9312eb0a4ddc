//! The behaviour every store must have, written once and run against every backend.
//!
//! Each function takes a store, exercises one rule and panics (with a message saying
//! which rule) when the store breaks it. The functions use aggregate types and ids of
//! their own, so they can share a store, a database and a run with other tests.

pub mod admin;
pub mod event_store;
pub mod faults;
pub mod feed;
pub mod history;
pub mod hostile;
pub mod hostile_values;
pub mod nonfinite;
pub mod repository;
pub mod retries;
pub mod roundtrip;
pub mod snapshot_store;
pub mod subscriptions;
pub mod upcasting;
