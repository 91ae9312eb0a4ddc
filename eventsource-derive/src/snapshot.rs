//! `#[snapshot(...)]`: the schema version, the mode, and the triggers that make up the
//! snapshot strategy.
//!
//! ```text
//! #[snapshot(
//!     schema_version = 2,                 // required
//!     mode = "background",                // "sync" (default), "background" or "manual"
//!     every = 100,                        // alias: threshold = 100
//!     after = "1h",                       // time since the last snapshot
//!     on(OrderSubmitted, "order.closed"), // a save stores one of these events
//!     replayed_over = 500,                // the last load replayed more events
//!     load_slower_than = "200ms",         // the last load took longer
//!     any(...), all(...),                 // groups of triggers, nestable
//!     strategy = my_strategy(),           // any `impl SnapshotStrategy`
//!     never,                              // explicitly no automatic snapshot
//! )]
//! ```
//!
//! Top-level triggers combine with "or": a snapshot is taken when any one is due.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitStr, Path, Token};

use crate::attr::{self, Attr};
use crate::ctxt::Ctxt;
use crate::duration;
use crate::symbol::{
    AFTER, ALL, ANY, EVERY, LOAD_SLOWER_THAN, MODE, NEVER, ON, REPLAYED_OVER, SCHEMA_VERSION,
    SNAPSHOT_KEYS, Symbol, THRESHOLD, TIMEOUT, TOP_LEVEL_ONLY, TRIGGER_KEYS,
};

const ATTR: &str = "snapshot";

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

/// Where a key was found, for messages.
#[derive(Clone, Copy)]
enum Level {
    Top,
    Group(Symbol),
}

impl Level {
    fn place(self) -> String {
        match self {
            Level::Top => "#[snapshot(...)]".to_owned(),
            Level::Group(g) => format!("`{g}(...)` of #[snapshot(...)]"),
        }
    }
}

/// The triggers of one level, each single-valued key at most once.
struct Triggers<'c> {
    cx: &'c Ctxt,
    level: Level,
    every: Option<Symbol>,
    after: bool,
    on: bool,
    replayed_over: bool,
    load_slower_than: bool,
    list: Vec<Trigger>,
}

impl<'c> Triggers<'c> {
    fn new(cx: &'c Ctxt, level: Level) -> Self {
        Triggers {
            cx,
            level,
            every: None,
            after: false,
            on: false,
            replayed_over: false,
            load_slower_than: false,
            list: Vec::new(),
        }
    }

    /// Parses `meta` if it is a trigger key: `None` if it is not one.
    fn parse(&mut self, meta: &ParseNestedMeta<'_>) -> Option<syn::Result<()>> {
        let key = *TRIGGER_KEYS.iter().find(|k| meta.path == **k)?;
        let span = meta.path.span();
        let kind = match key {
            EVERY | THRESHOLD => self.every(meta, key),
            AFTER => self
                .once(meta, |t| &mut t.after)
                .and_then(|()| parse_duration(meta, AFTER))
                .map(Kind::After),
            ON => self
                .once(meta, |t| &mut t.on)
                .and_then(|()| parse_on(meta))
                .map(Kind::On),
            REPLAYED_OVER => self
                .once(meta, |t| &mut t.replayed_over)
                .and_then(|()| attr::parse_positive(meta, ATTR, REPLAYED_OVER, i64::MAX as u64))
                .map(Kind::ReplayedOver),
            LOAD_SLOWER_THAN => self
                .once(meta, |t| &mut t.load_slower_than)
                .and_then(|()| parse_duration(meta, LOAD_SLOWER_THAN))
                .map(Kind::LoadSlowerThan),
            ANY => parse_group(self.cx, meta, ANY).map(Kind::Any),
            ALL => parse_group(self.cx, meta, ALL).map(Kind::All),
            // STRATEGY, the last of TRIGGER_KEYS.
            _ => meta
                .value()
                .and_then(|v| v.parse::<Expr>())
                .map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "expected an expression for `strategy`, e.g. `strategy = my_strategy()` or `strategy = MY_STRATEGY`",
                    )
                })
                .map(Kind::Strategy),
        };
        Some(kind.map(|kind| self.list.push(Trigger { span, key, kind })))
    }

    /// `every = N` or its alias `threshold = N`, once per level.
    fn every(&mut self, meta: &ParseNestedMeta<'_>, key: Symbol) -> syn::Result<Kind> {
        if let Some(first) = self.every {
            let message = if first == key {
                format!(
                    "duplicate key `{key}` in {}; remove one of them",
                    self.level.place()
                )
            } else {
                format!(
                    "`{key}` repeats `{first}`: `threshold` is another name for `every`; keep one of them"
                )
            };
            return Err(meta.error(message));
        }
        self.every = Some(key);
        attr::parse_positive(meta, ATTR, key, i64::MAX as u64).map(Kind::Every)
    }

    fn once(
        &mut self,
        meta: &ParseNestedMeta<'_>,
        seen: impl FnOnce(&mut Self) -> &mut bool,
    ) -> syn::Result<()> {
        let place = self.level.place();
        let seen = seen(self);
        if std::mem::replace(seen, true) {
            let key = meta.path.to_token_stream();
            let advice = if meta.path == ON {
                "; list every event in one `on(...)`"
            } else {
                "; remove one of them"
            };
            return Err(meta.error(format!("duplicate key `{key}` in {place}{advice}")));
        }
        Ok(())
    }
}

pub fn parse(cx: &Ctxt, a: &syn::Attribute) -> Snapshot {
    let mut schema_version = Attr::none(cx, ATTR, SCHEMA_VERSION);
    let mut mode = Attr::none(cx, ATTR, MODE);
    let mut never = Attr::none(cx, ATTR, NEVER);
    let mut timeout = Attr::none(cx, ATTR, TIMEOUT);
    let mut triggers = Triggers::new(cx, Level::Top);
    let mut schema_version_written = false;
    let mut malformed = false;
    if let syn::Meta::List(_) = a.meta {
        let result = a.parse_nested_meta(|meta| {
            let outcome = if let Some(result) = triggers.parse(&meta) {
                result
            } else if meta.path == SCHEMA_VERSION {
                schema_version_written = true;
                attr::parse_positive(&meta, ATTR, SCHEMA_VERSION, u64::from(u32::MAX))
                    .map(|v| schema_version.set(&meta.path, v as u32))
            } else if meta.path == MODE {
                parse_mode(&meta).map(|m| mode.set(&meta.path, m))
            } else if meta.path == TIMEOUT {
                parse_duration(&meta, TIMEOUT).map(|ms| timeout.set(&meta.path, ms))
            } else if meta.path == NEVER {
                if meta.input.is_empty() || meta.input.peek(Token![,]) {
                    never.set(&meta.path, meta.path.span());
                    Ok(())
                } else {
                    Err(meta.error("`never` takes no value: write `never` alone"))
                }
            } else {
                Err(attr::unknown_key(&meta, ATTR, SNAPSHOT_KEYS))
            };
            if let Err(e) = outcome {
                cx.syn_error(e);
                attr::skip_value(&meta);
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    } else if let syn::Meta::NameValue(nv) = &a.meta {
        malformed = true;
        cx.error_spanned_by(
            nv,
            "expected #[snapshot(...)] with keys, e.g. #[snapshot(schema_version = 1, every = 100)]",
        );
    }
    Snapshot {
        span: attr::attr_span(a),
        schema_version: schema_version.get(),
        schema_version_written,
        malformed,
        mode: mode.get(),
        never: never.get(),
        timeout: timeout.get(),
        triggers: triggers.list,
    }
}

fn parse_mode(meta: &ParseNestedMeta<'_>) -> syn::Result<(Mode, Span)> {
    let s = attr::parse_str(meta, ATTR, MODE)?;
    let mode = match s.value().as_str() {
        "sync" => Mode::Sync,
        "background" => Mode::Background,
        "manual" => Mode::Manual,
        other => {
            return Err(syn::Error::new(
                s.span(),
                format!(
                    "unknown snapshot mode `{other}`, expected one of \"sync\", \"background\", \"manual\""
                ),
            ));
        }
    };
    Ok((mode, s.span()))
}

/// `key = "1h30m"`: a non-zero duration, in milliseconds.
fn parse_duration(meta: &ParseNestedMeta<'_>, key: Symbol) -> syn::Result<u64> {
    let expr: Expr = meta.value()?.parse()?;
    let lit = match expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => s,
        other => {
            return Err(syn::Error::new_spanned(
                other,
                format!(
                    "expected a duration string for `{key}`, e.g. `{key} = \"1h\"` (units: ms, s, m, h, d)"
                ),
            ));
        }
    };
    match duration::parse_millis(&lit.value()) {
        Ok(0) if key == TIMEOUT => Err(syn::Error::new(
            lit.span(),
            "`timeout` must be longer than zero: it bounds how long a snapshot read or write may take",
        )),
        Ok(0) => Err(syn::Error::new(
            lit.span(),
            format!(
                "`{key}` must be longer than zero; to turn automatic snapshots off, use `never` or mode = \"manual\""
            ),
        )),
        Ok(ms) => Ok(ms),
        Err(message) => Err(syn::Error::new(lit.span(), message)),
    }
}

/// `on(EventName, "stored.name", ...)`.
fn parse_on(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<EventName>> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(
            meta.error("write the events in parentheses: `on(OrderSubmitted, OrderCancelled)`")
        );
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let mut names = Vec::new();
    while !content.is_empty() {
        let name = if content.peek(LitStr) {
            let s: LitStr = content.parse()?;
            EventName {
                value: s.value(),
                span: s.span(),
            }
        } else if content.peek(Ident) {
            let path: Path = content.parse()?;
            let Some(ident) = path.get_ident() else {
                return Err(syn::Error::new_spanned(
                    path,
                    "expected an event name, not a path: write the event type's name alone, e.g. `on(OrderSubmitted)`",
                ));
            };
            EventName {
                value: ident.to_string(),
                span: ident.span(),
            }
        } else {
            return Err(content.error(
                "expected an event name, e.g. `on(OrderSubmitted)` or `on(\"order.submitted\")`",
            ));
        };
        names.push(name);
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
    }
    if names.is_empty() {
        return Err(meta.error("empty `on()`: name at least one event, e.g. `on(OrderSubmitted)`"));
    }
    Ok(names)
}

/// `any(...)` or `all(...)`: one or more triggers.
fn parse_group(cx: &Ctxt, meta: &ParseNestedMeta<'_>, group: Symbol) -> syn::Result<Vec<Trigger>> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!(
            "write the triggers of `{group}` in parentheses, e.g. `{group}(every = 100, after = \"1h\")`"
        )));
    }
    let fork = meta.input.fork();
    let content;
    syn::parenthesized!(content in fork);
    if content.is_empty() {
        let err = meta.error(format!(
            "empty `{group}()`: list at least one trigger, e.g. `{group}(every = 100, after = \"1h\")`"
        ));
        let _empty;
        syn::parenthesized!(_empty in meta.input);
        return Err(err);
    }
    let level = Level::Group(group);
    let mut triggers = Triggers::new(cx, level);
    meta.parse_nested_meta(|inner| {
        let outcome = match triggers.parse(&inner) {
            Some(result) => result,
            None if TOP_LEVEL_ONLY.iter().any(|k| inner.path == *k) => Err(inner.error(format!(
                "`{}` belongs at the top level of #[snapshot(...)], not inside `{group}(...)`",
                inner.path.to_token_stream()
            ))),
            None => Err(attr::unknown_key_in(&inner, &level.place(), TRIGGER_KEYS)),
        };
        if let Err(e) = outcome {
            cx.syn_error(e);
            attr::skip_value(&inner);
        }
        Ok(())
    })?;
    Ok(triggers.list)
}

/// Rules of `#[snapshot]`:
/// - `schema_version` is required: snapshots outlive code changes, so their shape is
///   versioned from the start;
/// - `mode = "manual"` takes no automatic trigger (the repository never asks it);
/// - `never` takes no other trigger (it would contradict them).
pub fn check(cx: &Ctxt, s: &Snapshot) {
    if s.schema_version.is_none() && !s.schema_version_written && !s.malformed {
        cx.syn_error(syn::Error::new(
            s.span,
            "missing `schema_version` in #[snapshot(...)]: add `schema_version = 1` and increment it whenever the state's serialized shape changes",
        ));
    }
    if let (Some((Mode::Manual, mode_span)), Some(first)) = (s.mode, s.triggers.first()) {
        let mut e = syn::Error::new(
            first.span,
            format!(
                "`{}` has no effect with mode = \"manual\": remove the automatic triggers, or use mode = \"sync\" or \"background\"",
                first.key
            ),
        );
        e.combine(syn::Error::new(mode_span, "manual mode declared here"));
        cx.syn_error(e);
    }
    if let (Some(never), Some(first)) = (s.never, s.triggers.first()) {
        let mut e = syn::Error::new(
            never,
            format!(
                "`never` contradicts the other triggers: remove `never`, or remove `{}` and the other triggers",
                first.key
            ),
        );
        e.combine(syn::Error::new(first.span, "trigger declared here"));
        cx.syn_error(e);
    }
}

impl Snapshot {
    pub fn mode_tokens(&self) -> TokenStream {
        match self.mode.map_or(Mode::Sync, |(m, _)| m) {
            Mode::Sync => quote!(Sync),
            Mode::Background => quote!(Background),
            Mode::Manual => quote!(Manual),
        }
    }

    /// The strategy tree: top-level triggers under one `AnyOf`.
    pub fn strategy_tokens(&self) -> TokenStream {
        match self.triggers.as_slice() {
            [] => quote!(::eventsource::__private::Never),
            [one] => one.to_tokens(),
            many => group(quote!(AnyOf), many),
        }
    }

    /// Every name of every `on(...)`, nested ones included.
    pub fn event_names(&self) -> Vec<&EventName> {
        fn walk<'a>(triggers: &'a [Trigger], out: &mut Vec<&'a EventName>) {
            for t in triggers {
                match &t.kind {
                    Kind::On(names) => out.extend(names),
                    Kind::Any(inner) | Kind::All(inner) => walk(inner, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.triggers, &mut out);
        out
    }
}

fn group(ty: TokenStream, triggers: &[Trigger]) -> TokenStream {
    let parts = triggers.iter().map(Trigger::to_tokens);
    quote!(::eventsource::__private::#ty::new() #(.with(#parts))*)
}

impl Trigger {
    fn to_tokens(&self) -> TokenStream {
        let p = quote!(::eventsource::__private);
        let duration = |ms: u64| quote!(::core::time::Duration::from_millis(#ms));
        match &self.kind {
            Kind::Every(n) => quote!(#p::EveryNEvents::__from_attribute(#n)),
            Kind::After(ms) => {
                let d = duration(*ms);
                quote!(#p::TimeSinceSnapshot::new(#d))
            }
            Kind::On(names) => {
                let names = names.iter().map(|n| &n.value);
                quote!(#p::OnEvents::new([#(#names),*]))
            }
            Kind::ReplayedOver(n) => quote!(#p::CostlyLoad::replayed_over(#n)),
            Kind::LoadSlowerThan(ms) => {
                let d = duration(*ms);
                quote!(#p::CostlyLoad::slower_than(#d))
            }
            Kind::Any(inner) => group(quote!(AnyOf), inner),
            Kind::All(inner) => group(quote!(AllOf), inner),
            Kind::Strategy(expr) => {
                quote_spanned!(expr.span()=> ::eventsource::__private::user_strategy(#expr))
            }
        }
    }
}
