//! Upcast chains in attributes: `upcast(1 => v1_to_v2, 2 => v2_to_v3)` (functions on the
//! stored JSON) or `upcast_from(1 => OrderV1, 2 => OrderV2)` (types joined by `From`),
//! and the rules every chain obeys.

use std::collections::BTreeMap;

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{LitInt, Path, Token, Type};

use super::ctxt::Ctxt;
use super::symbol::{Symbol, UPCAST_FROM};

/// A parsed chain, in the order written.
pub struct Chain {
    /// `upcast` or `upcast_from`.
    pub key: Symbol,
    /// The key's span, for errors about the whole chain.
    pub span: Span,
    pub steps: Vec<Step>,
}

/// `1 => target`: what reads version 1 and carries it on.
pub struct Step {
    pub version: u32,
    pub version_span: Span,
    pub target: Target,
}

pub enum Target {
    /// `upcast(...)`: a function on the JSON value.
    Fn(Path),
    /// `upcast_from(...)`: the type version `n` was stored as.
    Type(Type),
}

/// Where a chain may start.
#[derive(Clone, Copy, PartialEq)]
pub enum Start {
    /// At version 1: every stored event must reach the current version.
    First,
    /// Anywhere: older snapshots are replayed past.
    Anywhere,
}

/// Parses `key(1 => a, 2 => b)`.
pub fn parse(meta: &ParseNestedMeta<'_>, key: Symbol) -> syn::Result<Chain> {
    let span = meta
        .path
        .get_ident()
        .map_or_else(Span::call_site, |i| i.span());
    let example = if key == UPCAST_FROM {
        "`upcast_from(1 => OrderV1, 2 => OrderV2)`"
    } else {
        "`upcast(1 => v1_to_v2, 2 => v2_to_v3)`"
    };
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!(
            "write the steps in parentheses, each a stored version and what upcasts it: {example}"
        )));
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let mut steps = Vec::new();
    while !content.is_empty() {
        let version: LitInt = content.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("expected a stored version before `=>`, e.g. {example}"),
            )
        })?;
        let number = version
            .base10_parse::<u32>()
            .ok()
            .filter(|v| *v >= 1 && *v <= i32::MAX as u32)
            .ok_or_else(|| {
                syn::Error::new(
                    version.span(),
                    format!("a stored version is a whole number from 1 to {}", i32::MAX),
                )
            })?;
        content.parse::<Token![=>]>()?;
        let target = if key == UPCAST_FROM {
            Target::Type(content.parse::<Type>()?)
        } else if content.peek(syn::LitStr) {
            let s: syn::LitStr = content.parse()?;
            return Err(syn::Error::new(
                s.span(),
                format!(
                    "`{key}` takes a function path, not a string: write `{} => {}` without quotes",
                    number,
                    s.value()
                ),
            ));
        } else {
            Target::Fn(content.parse::<Path>().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    format!("expected the path of an upcast function after `=>`, e.g. {example}"),
                )
            })?)
        };
        steps.push(Step {
            version: number,
            version_span: version.span(),
            target,
        });
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
    }
    if steps.is_empty() {
        return Err(syn::Error::new(
            span,
            format!("empty `{key}()`: list the steps, e.g. {example}"),
        ));
    }
    Ok(Chain { key, span, steps })
}

impl Chain {
    /// The steps by version, for a chain that passed [`check`](Self::check).
    pub fn ordered(&self) -> Vec<&Step> {
        let mut steps: Vec<&Step> = self.steps.iter().collect();
        steps.sort_by_key(|s| s.version);
        steps
    }

    /// The version of the first step.
    pub fn first(&self) -> u32 {
        self.steps.iter().map(|s| s.version).min().unwrap_or(1)
    }

    /// Rules: one step per version; each below `current` (`version_key = current` of
    /// `what`), since the current version is read as it is; no gap up to `current - 1`;
    /// and, when `start` says so, a first step at version 1.
    pub fn check(&self, cx: &Ctxt, what: &str, version_key: &str, current: u32, start: Start) {
        let mut seen: BTreeMap<u32, Span> = BTreeMap::new();
        let mut valid = true;
        for step in &self.steps {
            if seen.insert(step.version, step.version_span).is_some() {
                valid = false;
                cx.syn_error(syn::Error::new(
                    step.version_span,
                    format!(
                        "duplicate step for version {}: each stored version has exactly one step; remove one of them",
                        step.version
                    ),
                ));
            } else if step.version >= current {
                valid = false;
                let fix = if step.version == current {
                    format!(
                        "version {current} is current and is read as it is, so steps run on the versions below it"
                    )
                } else {
                    format!("nothing is stored at a version above {current}")
                };
                cx.syn_error(syn::Error::new(
                    step.version_span,
                    format!(
                        "a step from version {} has nothing to upcast: {what} is at `{version_key} = {current}`, and {fix}; raise `{version_key}` or remove this step",
                        step.version
                    ),
                ));
            }
        }
        if !valid {
            return;
        }
        let from = match start {
            Start::First => 1,
            Start::Anywhere => self.first(),
        };
        let missing: Vec<u32> = (from..current).filter(|v| !seen.contains_key(v)).collect();
        if let Some(first) = missing.first() {
            let list = missing
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let why = if start == Start::First {
                "events stored at every version from 1 on must reach the current one"
            } else {
                "a snapshot at any version after the first step must reach the current one"
            };
            cx.syn_error(syn::Error::new(
                self.span,
                format!(
                    "gap in the upcast chain of {what}: no step for version {list}; {why}: add `{first} => ...`"
                ),
            ));
        }
    }
}
