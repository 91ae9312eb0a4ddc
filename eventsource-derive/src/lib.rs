//! Derive macros of the `eventsource` crate: `#[derive(DomainEvent)]` and
//! `#[derive(Aggregate)]`. See the `eventsource` crate for their documentation.

mod aggregate;
mod attr;
mod ctxt;
mod duration;
mod event;
mod snapshot;
mod symbol;

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
