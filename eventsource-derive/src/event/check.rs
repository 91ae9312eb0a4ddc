//! The rules of an event enum, across keys and variants.

use std::collections::HashMap;

use quote::ToTokens;
use syn::LitStr;

use super::{EventEnum, Variant};
use crate::internals::chain::Start;
use crate::internals::ctxt::Ctxt;

pub fn check(cx: &Ctxt, e: &EventEnum<'_>) {
    for v in &e.variants {
        if let Some(lit) = &v.name_lit {
            check_name(cx, lit, "event name");
        }
        for alias in &v.aliases {
            check_name(cx, alias, "alias");
        }
        check_chain(cx, v);
    }
    check_unique_names(cx, &e.variants);
    check_distinct_payloads(cx, &e.variants);
}

/// Rule: a stored name is not empty and has no surrounding whitespace.
fn check_name(cx: &Ctxt, lit: &LitStr, what: &str) {
    let value = lit.value();
    if value.trim().is_empty() {
        cx.error_spanned_by(lit, format!("{what} cannot be empty"));
    } else if value.trim() != value {
        cx.error_spanned_by(lit, format!("{what} cannot start or end with whitespace"));
    }
}

/// Rule: one chain form per variant, and the chain rules of [`Chain::check`].
///
/// [`Chain::check`]: crate::internals::chain::Chain::check
fn check_chain(cx: &Ctxt, v: &Variant<'_>) {
    if let (Some(_), Some(typed)) = (&v.upcast, &v.upcast_from) {
        cx.syn_error(syn::Error::new(
            typed.span,
            format!(
                "`{}` has both `upcast` and `upcast_from`: a variant's stored versions go through one chain; keep one of them",
                v.ident
            ),
        ));
        return;
    }
    let Some(chain) = v.chain() else { return };
    let what = format!("event `{}`", v.name);
    if v.version_span.is_none() && v.version == 1 {
        cx.syn_error(syn::Error::new(
            chain.span,
            format!(
                "`{}` needs the variant's current version: add `version = {}` beside `{}(...)`, one above the last step",
                chain.key,
                chain.steps.iter().map(|s| s.version).max().unwrap_or(1) + 1,
                chain.key
            ),
        ));
        return;
    }
    chain.check(cx, &what, "version", v.version, Start::First);
}

/// Rule: no two variants share a stored name or alias (decoding would be ambiguous),
/// and no alias repeats its own variant's name.
fn check_unique_names(cx: &Ctxt, variants: &[Variant<'_>]) {
    // Stored name → (variant, "name" or "alias").
    let mut seen: HashMap<String, (&syn::Ident, &str)> = HashMap::new();
    for v in variants {
        if let Some((first, _)) = seen.insert(v.name.clone(), (v.ident, "name")) {
            cx.error_spanned_by(
                &v.name_span,
                format!(
                    "duplicate event name \"{}\": variants `{first}` and `{}` would be stored alike; give one of them #[event(name = \"...\")]",
                    v.name, v.ident
                ),
            );
        }
    }
    for v in variants {
        for alias in &v.aliases {
            let value = alias.value();
            if value == v.name {
                cx.error_spanned_by(
                    alias,
                    format!(
                        "alias \"{value}\" is `{}`'s own name; an alias is a name it was stored under before: remove it",
                        v.ident
                    ),
                );
                continue;
            }
            match seen.get(&value) {
                Some((other, _)) if *other == v.ident => cx.error_spanned_by(
                    alias,
                    format!("alias \"{value}\" is listed twice for `{}`; remove one", v.ident),
                ),
                Some((other, kind)) => cx.error_spanned_by(
                    alias,
                    format!(
                        "alias \"{value}\" of `{}` is already the {kind} of `{other}`: a stored event of that name would decode as either; remove it from one of them",
                        v.ident
                    ),
                ),
                None => {
                    seen.insert(value, (v.ident, "alias"));
                }
            }
        }
    }
}

/// Rule: each variant wraps its own type. The dispatch routes a variant to the
/// aggregate's `Apply<Inner>`, so two variants of one type would reach the same
/// handler, which cannot tell them apart.
fn check_distinct_payloads(cx: &Ctxt, variants: &[Variant<'_>]) {
    let mut seen: HashMap<String, &syn::Ident> = HashMap::new();
    for v in variants {
        let key = v.ty.to_token_stream().to_string();
        if let Some(first) = seen.insert(key.clone(), v.ident) {
            let ty = key.replace(' ', "");
            cx.error_spanned_by(
                v.ty,
                format!(
                    "variants `{first}` and `{}` both wrap `{ty}`: both would be applied by the one `impl Apply<{ty}>`, which cannot tell them apart; wrap a distinct type in each, e.g. `struct {}({ty});`",
                    v.ident, v.ident
                ),
            );
        }
    }
}
