//! Compile-error tests: see `tests/ui.rs`.
