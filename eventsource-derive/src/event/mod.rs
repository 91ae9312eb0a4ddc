//! `#[derive(DomainEvent)]`: [`parse`] the enum and its `#[event(...)]` attributes,
//! [`check`] the rules across variants, [`generate`] the impls.

mod check;
mod generate;
mod parse;

use proc_macro2::{Span, TokenStream};
use syn::{DeriveInput, Ident, LitStr, Type};

use crate::internals::chain::Chain;
use crate::internals::ctxt::{self, Ctxt};

/// The enum as declared.
struct EventEnum<'a> {
    input: &'a DeriveInput,
    variants: Vec<Variant<'a>>,
}

/// One variant: `Created(OrderCreated)` with what its `#[event(...)]` says.
struct Variant<'a> {
    ident: &'a Ident,
    ty: &'a Type,
    /// The stored name: `name = "..."`, else the inner type's name.
    name: String,
    /// Where errors about the name point: the literal, or the type it comes from.
    name_span: TokenStream,
    /// `name = "..."` as written, for the name rules.
    name_lit: Option<LitStr>,
    version: u32,
    /// The `version = N` literal, if written.
    version_span: Option<Span>,
    aliases: Vec<LitStr>,
    upcast: Option<Chain>,
    upcast_from: Option<Chain>,
}

impl Variant<'_> {
    /// The variant's chain, whichever form it was written in.
    fn chain(&self) -> Option<&Chain> {
        self.upcast.as_ref().or(self.upcast_from.as_ref())
    }
}

pub fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let parsed = parse::parse(&cx, input);
    check::check(&cx, &parsed);
    match cx.check() {
        Ok(()) => generate::generate(&parsed),
        Err(error) => ctxt::with_fallback(error, generate::fallback(input)),
    }
}
