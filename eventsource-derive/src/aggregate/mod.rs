//! `#[derive(Aggregate)]`: [`parse`] `#[aggregate]` and `#[snapshot]`, [`check`] their
//! rules, [`generate`] the `Aggregate` impl.

mod check;
mod generate;
mod parse;

use proc_macro2::{Span, TokenStream};
use syn::{DeriveInput, Expr, Path};

use crate::internals::chain::Chain;
use crate::internals::ctxt::{self, Ctxt};
use crate::internals::symbol::Symbol;

/// What `#[aggregate]` and `#[snapshot]` declare.
struct Input<'a> {
    input: &'a DeriveInput,
    name: String,
    /// `name = "..."` as written, for its rule.
    name_lit: Option<syn::LitStr>,
    event: Option<Path>,
    /// `event` was written, even if its value was wrong (already reported).
    event_written: bool,
    snapshot: Option<Snapshot>,
}

/// What `#[snapshot(...)]` declares.
pub struct Snapshot {
    /// The attribute's name, for errors about the whole attribute.
    pub span: Span,
    pub schema_version: Option<u32>,
    /// `schema_version` was written, even if its value was wrong (already reported).
    pub schema_version_written: bool,
    /// The attribute is not a list, already reported.
    pub malformed: bool,
    pub mode: Option<(Mode, Span)>,
    pub never: Option<Span>,
    /// `timeout = "500ms"`: the bound on snapshot reads and writes, in milliseconds.
    pub timeout: Option<u64>,
    /// Combined with "or".
    pub triggers: Vec<Trigger>,
    /// `keep = N`: how many snapshots per aggregate are kept, with the span of `N`.
    pub keep: Option<(u64, Span)>,
    /// `compress_over = "64KiB"`: states longer than this many bytes are stored
    /// compressed.
    pub compress_over: Option<u64>,
    /// `upcast(...)` or `upcast_from(...)`: how older states reach `schema_version`.
    pub upcast: Option<Chain>,
    pub upcast_from: Option<Chain>,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Sync,
    Background,
    Manual,
}

/// One trigger; `span` is its key's.
pub struct Trigger {
    pub span: Span,
    pub key: Symbol,
    pub kind: Kind,
}

pub enum Kind {
    Every(u64),
    After(u64),
    On(Vec<EventName>),
    ReplayedOver(u64),
    LoadSlowerThan(u64),
    Any(Vec<Trigger>),
    All(Vec<Trigger>),
    Strategy(Expr),
}

/// A name in `on(...)`: an identifier or a string literal, with its span.
pub struct EventName {
    pub value: String,
    pub span: Span,
}

impl Snapshot {
    /// The state's chain, whichever form it was written in.
    pub fn chain(&self) -> Option<&Chain> {
        self.upcast.as_ref().or(self.upcast_from.as_ref())
    }
}

pub fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let parsed = parse::parse(&cx, input);
    check::check(&cx, &parsed);
    match cx.check() {
        Ok(()) => generate::generate(&parsed),
        Err(error) => ctxt::with_fallback(error, generate::fallback(&parsed)),
    }
}
