//! Parsing of attributes, shared by both derives: the one loop over an attribute's keys,
//! and the parsers of the values written after them.

use proc_macro2::Span;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, Lit, LitStr};

use super::ctxt::Ctxt;
use super::symbol::{SYNONYMS, Symbol, list};

/// The key of `meta` if it is one of `keys`.
pub fn key_of(meta: &ParseNestedMeta<'_>, keys: &[Symbol]) -> Option<Symbol> {
    keys.iter().copied().find(|k| meta.path == *k)
}

/// Parses the keys of `#[name(key = value, ...)]`: `each` parses one key's value and
/// answers `None` for a key it does not take, which is reported with the keys of
/// `keys` and a did-you-mean hint. Every error is recorded and the parse goes on with
/// the next key, so that one build reports every mistake.
pub fn parse_keys(
    cx: &Ctxt,
    attr: &syn::Attribute,
    keys: &[Symbol],
    mut each: impl FnMut(&ParseNestedMeta<'_>) -> Option<syn::Result<()>>,
) {
    let name = attr
        .path()
        .get_ident()
        .map_or_else(String::new, ToString::to_string);
    let place = format!("#[{name}(...)]");
    let result = attr.parse_nested_meta(|meta| {
        parse_key(cx, &meta, &place, keys, &mut each);
        Ok(())
    });
    if let Err(e) = result {
        cx.syn_error(e);
    }
}

/// [`parse_keys`] for the keys in the parentheses after `meta`, e.g. `any(...)`, named
/// `place` in messages.
pub fn parse_nested_keys(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    place: &str,
    keys: &[Symbol],
    mut each: impl FnMut(&ParseNestedMeta<'_>) -> Option<syn::Result<()>>,
) -> syn::Result<()> {
    meta.parse_nested_meta(|inner| {
        parse_key(cx, &inner, place, keys, &mut each);
        Ok(())
    })
}

fn parse_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    place: &str,
    keys: &[Symbol],
    each: &mut impl FnMut(&ParseNestedMeta<'_>) -> Option<syn::Result<()>>,
) {
    let outcome = each(meta).unwrap_or_else(|| Err(unknown_key_in(meta, place, keys)));
    if let Err(e) = outcome {
        cx.syn_error(e);
        skip_value(meta);
    }
}

/// One attribute key's value; a second occurrence is reported on its own span.
pub struct Attr<'c, T> {
    cx: &'c Ctxt,
    attr: &'static str,
    name: Symbol,
    value: Option<T>,
}

impl<'c, T> Attr<'c, T> {
    pub fn none(cx: &'c Ctxt, attr: &'static str, name: Symbol) -> Self {
        Attr {
            cx,
            attr,
            name,
            value: None,
        }
    }

    pub fn set<S: ToTokens>(&mut self, spanned: S, value: T) {
        if self.value.is_some() {
            self.cx.error_spanned_by(
                spanned,
                format!(
                    "duplicate key `{}` in #[{}(...)]; remove one of them",
                    self.name, self.attr
                ),
            );
        } else {
            self.value = Some(value);
        }
    }

    pub fn get(self) -> Option<T> {
        self.value
    }
}

/// The expression after `key =`, out of the invisible group a `macro_rules!` fragment
/// (`$name:literal`, `$n:expr`) arrives in.
pub fn value_expr(meta: &ParseNestedMeta<'_>) -> syn::Result<Expr> {
    let mut expr: Expr = meta.value()?.parse()?;
    while let Expr::Group(group) = expr {
        expr = *group.expr;
    }
    Ok(expr)
}

/// The literal after `key =`, or an error telling what literal was expected.
fn lit(meta: &ParseNestedMeta<'_>, attr: &str, key: Symbol) -> syn::Result<Lit> {
    let expr = value_expr(meta)?;
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => Ok(lit),
        Expr::Path(p) if p.path.get_ident().is_some() => Err(syn::Error::new_spanned(
            &p,
            format!(
                "expected a literal for `{key}` in #[{attr}(...)]: did you mean `{key} = \"{}\"`, in quotes?",
                p.path.to_token_stream()
            ),
        )),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a literal for `{key}` in #[{attr}(...)]"),
        )),
    }
}

/// `key = "text"`.
pub fn parse_str(meta: &ParseNestedMeta<'_>, attr: &str, key: Symbol) -> syn::Result<LitStr> {
    match lit(meta, attr, key)? {
        Lit::Str(s) => Ok(s),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a string for `{key}` in #[{attr}(...)], e.g. `{key} = \"...\"`"),
        )),
    }
}

/// `key = 123`: a whole number from 1 to `max`.
pub fn parse_positive(
    meta: &ParseNestedMeta<'_>,
    attr: &str,
    key: Symbol,
    max: u64,
) -> syn::Result<u64> {
    let expr = value_expr(meta)?;
    let range = format!("a whole number from 1 to {max}");
    let int = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int,
        Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => {
            return Err(syn::Error::new_spanned(
                expr,
                format!("`{key}` cannot be negative: expected {range}"),
            ));
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) if s.value().trim().parse::<u64>().is_ok() => {
            return Err(syn::Error::new(
                s.span(),
                format!(
                    "expected an integer for `{key}`, not a string: write `{key} = {}` without quotes",
                    s.value().trim()
                ),
            ));
        }
        other => {
            return Err(syn::Error::new_spanned(
                other,
                format!("expected an integer for `{key}` in #[{attr}(...)], e.g. `{key} = 1`"),
            ));
        }
    };
    match int.base10_parse::<u64>() {
        Ok(0) => Err(syn::Error::new(
            int.span(),
            format!("`{key}` must be at least 1"),
        )),
        Ok(v) if v <= max => Ok(v),
        _ => Err(syn::Error::new(
            int.span(),
            format!(
                "`{key} = {}` is too large: expected {range}",
                int.base10_digits()
            ),
        )),
    }
}

/// The error for a key that `place` (e.g. "`any(...)` of #[snapshot(...)]") does not
/// accept, with a suggestion.
pub fn unknown_key_in(meta: &ParseNestedMeta<'_>, place: &str, keys: &[Symbol]) -> syn::Error {
    let got = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| meta.path.to_token_stream().to_string().replace(' ', ""));
    let synonym = SYNONYMS
        .iter()
        .find(|(word, key)| *word == got && keys.iter().any(|k| k.0 == key.0))
        .map(|(_, key)| key.0);
    let hint = synonym
        .or_else(|| {
            keys.iter()
                .filter(|k| edit_distance(&got, k.0) <= 2)
                .min_by_key(|k| edit_distance(&got, k.0))
                .map(|k| k.0)
        })
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    meta.error(format!(
        "unknown key `{got}` in {place}, expected {}{hint}",
        list(keys)
    ))
}

/// Skips the rest of a key's input after an error, so parsing can go on.
fn skip_value(meta: &ParseNestedMeta<'_>) {
    if meta.input.peek(syn::Token![=]) {
        let _ = meta.value().and_then(|v| v.parse::<Expr>());
    } else if meta.input.peek(syn::token::Paren) {
        let _ = meta.input.parse::<proc_macro2::TokenTree>();
    }
}

/// Levenshtein distance, for did-you-mean hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A span for errors about a whole attribute.
pub fn attr_span(attr: &syn::Attribute) -> Span {
    attr.path()
        .get_ident()
        .map_or_else(Span::call_site, |i| i.span())
}

/// `key("a", "b")`: one or more string literals, each with its span.
pub fn parse_str_list(meta: &ParseNestedMeta<'_>, key: Symbol) -> syn::Result<Vec<LitStr>> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!(
            "write the names in parentheses: `{key}(\"OldName\")`"
        )));
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let mut out = Vec::new();
    while !content.is_empty() {
        if content.peek(LitStr) {
            out.push(content.parse::<LitStr>()?);
        } else if content.peek(syn::Ident) {
            let ident: syn::Ident = content.parse()?;
            return Err(syn::Error::new(
                ident.span(),
                format!("write the name in quotes: `{key}(\"{ident}\")`"),
            ));
        } else {
            return Err(content.error(format!(
                "expected a string in `{key}(...)`, e.g. `{key}(\"OldName\")`"
            )));
        }
        if !content.is_empty() {
            content.parse::<syn::Token![,]>()?;
        }
    }
    if out.is_empty() {
        return Err(meta.error(format!(
            "empty `{key}()`: name at least one earlier name, e.g. `{key}(\"OldName\")`"
        )));
    }
    Ok(out)
}
