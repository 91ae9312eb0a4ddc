//! Reading the enum and each variant's `#[event(...)]`.

use quote::ToTokens;
use syn::{Data, DeriveInput, Fields, Ident, Type};

use super::{EventEnum, Variant};
use crate::internals::attr::{self, Attr};
use crate::internals::chain;
use crate::internals::ctxt::Ctxt;
use crate::internals::symbol::{ALIASES, EVENT, EVENT_KEYS, NAME, UPCAST, UPCAST_FROM, VERSION};

const ATTR: &str = "event";

pub fn parse<'a>(cx: &Ctxt, input: &'a DeriveInput) -> EventEnum<'a> {
    let mut variants = Vec::new();
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "#[derive(DomainEvent)] does not support generic enums; name the event types concretely",
        );
    }
    let Data::Enum(data) = &input.data else {
        cx.error_spanned_by(
            &input.ident,
            "#[derive(DomainEvent)] works on an enum with one newtype variant per event, e.g. `enum OrderEvent { Created(OrderCreated) }`",
        );
        return EventEnum { input, variants };
    };
    if data.variants.is_empty() {
        cx.error_spanned_by(
            &input.ident,
            "an event enum needs at least one variant, e.g. `Created(OrderCreated)`",
        );
    }
    for variant in &data.variants {
        let ty = match &variant.fields {
            Fields::Unnamed(f) if f.unnamed.len() == 1 => &f.unnamed[0].ty,
            _ => {
                let ident = &variant.ident;
                cx.error_spanned_by(
                    variant,
                    format!(
                        "event variant `{ident}` must wrap exactly one event type, e.g. `{ident}({ident}Event)`; put its fields in that struct"
                    ),
                );
                continue;
            }
        };
        if let Some(v) = parse_variant(cx, &variant.ident, ty, &variant.attrs) {
            variants.push(v);
        }
    }
    EventEnum { input, variants }
}

fn parse_variant<'a>(
    cx: &Ctxt,
    ident: &'a Ident,
    ty: &'a Type,
    attrs: &[syn::Attribute],
) -> Option<Variant<'a>> {
    let mut name = Attr::none(cx, ATTR, NAME);
    let mut version = Attr::none(cx, ATTR, VERSION);
    let mut aliases = Attr::none(cx, ATTR, ALIASES);
    let mut upcast = Attr::none(cx, ATTR, UPCAST);
    let mut upcast_from = Attr::none(cx, ATTR, UPCAST_FROM);
    for a in attrs.iter().filter(|a| a.path() == EVENT) {
        attr::parse_keys(cx, a, EVENT_KEYS, |meta| {
            let key = attr::key_of(meta, EVENT_KEYS)?;
            Some(match key {
                NAME => attr::parse_str(meta, ATTR, NAME).map(|s| name.set(&meta.path, s)),
                VERSION => attr::parse_positive(meta, ATTR, VERSION, i32::MAX as u64).map(|v| {
                    let span = meta.path.get_ident().map(Ident::span);
                    version.set(&meta.path, (v as u32, span));
                }),
                ALIASES => attr::parse_str_list(meta, ALIASES).map(|l| aliases.set(&meta.path, l)),
                UPCAST => chain::parse(meta, UPCAST).map(|c| upcast.set(&meta.path, c)),
                _ => chain::parse(meta, UPCAST_FROM).map(|c| upcast_from.set(&meta.path, c)),
            })
        });
    }
    let name_lit = name.get();
    let (name, name_span) = match &name_lit {
        Some(lit) => (lit.value(), lit.to_token_stream()),
        None => match type_name(ty) {
            Some(type_ident) => (type_ident.to_string(), ty.to_token_stream()),
            None => {
                cx.error_spanned_by(
                    ty,
                    "cannot name this event after its type; add #[event(name = \"...\")]",
                );
                return None;
            }
        },
    };
    let (version, version_span) = version.get().unwrap_or((1, None));
    Some(Variant {
        ident,
        ty,
        name,
        name_span,
        name_lit,
        version,
        version_span,
        aliases: aliases.get().unwrap_or_default(),
        upcast: upcast.get(),
        upcast_from: upcast_from.get(),
    })
}

/// The last segment of a plain type path: `OrderCreated` for `events::OrderCreated`.
fn type_name(ty: &Type) -> Option<&Ident> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| &s.ident),
        _ => None,
    }
}
