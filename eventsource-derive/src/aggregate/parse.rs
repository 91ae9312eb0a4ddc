//! Reading `#[aggregate(...)]` and `#[snapshot(...)]`.

use proc_macro2::Span;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Expr, Ident, LitStr, Path, Token};

use super::{EventName, Input, Kind, Mode, Snapshot, Trigger};
use crate::internals::attr::{self, Attr};
use crate::internals::chain;
use crate::internals::ctxt::Ctxt;
use crate::internals::duration;
use crate::internals::size;
use crate::internals::symbol::{
    AFTER, AGGREGATE, AGGREGATE_KEYS, ALL, ANY, COMPRESS_OVER, EVENT, EVERY, KEEP,
    LOAD_SLOWER_THAN, MODE, NAME, NEVER, ON, REPLAYED_OVER, SCHEMA_VERSION, SNAPSHOT,
    SNAPSHOT_KEYS, Symbol, THRESHOLD, TIMEOUT, TOP_LEVEL_ONLY, TRIGGER_KEYS, UPCAST, UPCAST_FROM,
};

const ATTR: &str = "snapshot";

pub fn parse<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Input<'a> {
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "#[derive(Aggregate)] does not support generic types; declare a concrete state type",
        );
    }
    if let Data::Union(u) = &input.data {
        cx.error_spanned_by(
            u.union_token,
            "#[derive(Aggregate)] works on a struct or an enum, not a union",
        );
    }

    let mut name = Attr::<LitStr>::none(cx, "aggregate", NAME);
    let mut event = Attr::<Path>::none(cx, "aggregate", EVENT);
    let mut snapshot: Option<Snapshot> = None;
    let mut event_written = false;

    for a in &input.attrs {
        if a.path() == AGGREGATE {
            attr::parse_keys(cx, a, AGGREGATE_KEYS, |meta| {
                Some(match attr::key_of(meta, AGGREGATE_KEYS)? {
                    NAME => {
                        attr::parse_str(meta, "aggregate", NAME).map(|s| name.set(&meta.path, s))
                    }
                    _ => {
                        event_written = true;
                        parse_event(meta).map(|p| event.set(&meta.path, p))
                    }
                })
            });
        } else if a.path() == SNAPSHOT {
            let parsed = parse_snapshot(cx, a);
            if snapshot.is_some() {
                cx.error_spanned_by(
                    a,
                    "duplicate #[snapshot(...)] attribute; merge its keys into the first one",
                );
            } else {
                snapshot = Some(parsed);
            }
        }
    }

    let name_lit = name.get();
    Input {
        input,
        name: name_lit
            .as_ref()
            .map_or_else(|| input.ident.to_string(), LitStr::value),
        name_lit,
        event: event.get(),
        event_written,
        snapshot,
    }
}

/// `event = OrderEvent`: a type path.
fn parse_event(meta: &ParseNestedMeta<'_>) -> syn::Result<Path> {
    match attr::value_expr(meta)? {
        Expr::Path(p) if p.qself.is_none() => Ok(p.path),
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Err(syn::Error::new(
            s.span(),
            format!(
                "`event` takes the event enum's type, not a string: write `event = {}` without quotes",
                s.value()
            ),
        )),
        other => Err(syn::Error::new_spanned(
            other,
            "expected the event enum's type for `event` in #[aggregate(...)], e.g. `event = OrderEvent`",
        )),
    }
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

fn parse_snapshot(cx: &Ctxt, a: &syn::Attribute) -> Snapshot {
    let mut schema_version = Attr::none(cx, ATTR, SCHEMA_VERSION);
    let mut mode = Attr::none(cx, ATTR, MODE);
    let mut never = Attr::none(cx, ATTR, NEVER);
    let mut timeout = Attr::none(cx, ATTR, TIMEOUT);
    let mut keep = Attr::none(cx, ATTR, KEEP);
    let mut compress_over = Attr::none(cx, ATTR, COMPRESS_OVER);
    let mut upcast = Attr::none(cx, ATTR, UPCAST);
    let mut upcast_from = Attr::none(cx, ATTR, UPCAST_FROM);
    let mut triggers = Triggers::new(cx, Level::Top);
    let mut schema_version_written = false;
    let mut malformed = false;
    if let syn::Meta::List(_) = a.meta {
        attr::parse_keys(cx, a, SNAPSHOT_KEYS, |meta| {
            if let Some(result) = triggers.parse(meta) {
                return Some(result);
            }
            Some(match attr::key_of(meta, SNAPSHOT_KEYS)? {
                SCHEMA_VERSION => {
                    schema_version_written = true;
                    attr::parse_positive(meta, ATTR, SCHEMA_VERSION, i32::MAX as u64)
                        .map(|v| schema_version.set(&meta.path, v as u32))
                }
                MODE => parse_mode(meta).map(|m| mode.set(&meta.path, m)),
                TIMEOUT => parse_duration(meta, TIMEOUT).map(|ms| timeout.set(&meta.path, ms)),
                KEEP => parse_keep(meta).map(|k| keep.set(&meta.path, k)),
                COMPRESS_OVER => {
                    parse_size(meta, COMPRESS_OVER).map(|b| compress_over.set(&meta.path, b))
                }
                UPCAST => chain::parse(meta, UPCAST).map(|c| upcast.set(&meta.path, c)),
                UPCAST_FROM => {
                    chain::parse(meta, UPCAST_FROM).map(|c| upcast_from.set(&meta.path, c))
                }
                _ => {
                    // NEVER, the last key that is not a trigger.
                    if meta.input.is_empty() || meta.input.peek(Token![,]) {
                        never.set(&meta.path, meta.path.span());
                        Ok(())
                    } else {
                        Err(meta.error("`never` takes no value: write `never` alone"))
                    }
                }
            })
        });
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
        keep: keep.get(),
        compress_over: compress_over.get(),
        upcast: upcast.get(),
        upcast_from: upcast_from.get(),
    }
}

/// `keep = N`: how many snapshots of each aggregate are kept, at least 1.
fn parse_keep(meta: &ParseNestedMeta<'_>) -> syn::Result<(u64, Span)> {
    let fork = meta.input.fork();
    let zero = fork.parse::<Token![=]>().is_ok()
        && fork
            .parse::<syn::LitInt>()
            .is_ok_and(|i| i.base10_parse::<u64>().is_ok_and(|v| v == 0));
    if zero {
        let value = meta.value()?;
        let lit: syn::LitInt = value.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            "`keep = 0` would keep no snapshot at all: write `keep = 1` (the default, the latest only) or more to keep a history for `load_at`; to take no snapshots, use `never`",
        ));
    }
    let span = meta.path.span();
    attr::parse_positive(meta, ATTR, KEEP, u64::from(u32::MAX)).map(|n| (n, span))
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
    let expr = attr::value_expr(meta)?;
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

/// `key = "64KiB"`: a size in bytes, from 1 to 1 GiB.
fn parse_size(meta: &ParseNestedMeta<'_>, key: Symbol) -> syn::Result<u64> {
    let expr = attr::value_expr(meta)?;
    let lit = match expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => s,
        other => {
            return Err(syn::Error::new_spanned(
                other,
                format!(
                    "expected a size string for `{key}`, e.g. `{key} = \"64KiB\"` (units: B, kB, KiB, MB, MiB)"
                ),
            ));
        }
    };
    size::parse_bytes(&lit.value()).map_err(|message| syn::Error::new(lit.span(), message))
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
    attr::parse_nested_keys(cx, meta, &level.place(), TRIGGER_KEYS, |inner| {
        triggers.parse(inner).or_else(|| {
            attr::key_of(inner, TOP_LEVEL_ONLY).map(|key| {
                Err(inner.error(format!(
                    "`{key}` belongs at the top level of #[snapshot(...)], not inside `{group}(...)`"
                )))
            })
        })
    })?;
    Ok(triggers.list)
}
