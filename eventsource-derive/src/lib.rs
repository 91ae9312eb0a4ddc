//! Derive macros of the `eventsource` crate: `#[derive(DomainEvent)]` and
//! `#[derive(Aggregate)]`. See the `eventsource` crate for their documentation.
//!
//! Each derive reads in three steps, each in its own file: `parse` turns the attributes
//! into a model (reporting malformed input), `check` applies the rules that span
//! several keys or variants, and `generate` writes the impls. Generated code reaches
//! every runtime item through `::eventsource::__private`, and names its bindings
//! `__eventsource_*`, so it cannot clash with the user's names.

mod aggregate;
mod event;
mod internals;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

// Documented where `eventsource` re-exports it (rustdoc would show both texts).
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(&input).into()
}

// Documented where `eventsource` re-exports it (rustdoc would show both texts).
#[proc_macro_derive(Aggregate, attributes(aggregate, snapshot))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    aggregate::expand(&input).into()
}
