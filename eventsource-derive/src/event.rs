//! `#[derive(DomainEvent)]`: parse the enum, check it, generate the impls.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Type};

use crate::attr::{self, Attr};
use crate::ctxt::{self, Ctxt};
use crate::symbol::{EVENT, EVENT_KEYS, NAME, VERSION};

/// One variant: `Created(OrderCreated)` with its stored name and version.
struct Variant<'a> {
    ident: &'a Ident,
    ty: &'a Type,
    name: String,
    name_span: TokenStream,
    version: u32,
}

pub fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let variants = parse(&cx, input);
    check_unique_names(&cx, &variants);
    match cx.check() {
        Ok(()) => generate(input, &variants),
        Err(error) => ctxt::with_fallback(error, fallback(input)),
    }
}

fn parse<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Vec<Variant<'a>> {
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
        return Vec::new();
    };
    if data.variants.is_empty() {
        cx.error_spanned_by(
            &input.ident,
            "an event enum needs at least one variant, e.g. `Created(OrderCreated)`",
        );
    }
    let mut out = Vec::new();
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
        let mut name = Attr::none(cx, "event", NAME);
        let mut version = Attr::none(cx, "event", VERSION);
        for a in variant.attrs.iter().filter(|a| a.path() == EVENT) {
            let result = a.parse_nested_meta(|meta| {
                let outcome = if meta.path == NAME {
                    attr::parse_str(&meta, "event", NAME).map(|s| name.set(&meta.path, s))
                } else if meta.path == VERSION {
                    attr::parse_positive(&meta, "event", VERSION, u64::from(u32::MAX))
                        .map(|v| version.set(&meta.path, v as u32))
                } else {
                    Err(attr::unknown_key(&meta, "event", EVENT_KEYS))
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
        }
        let (name, name_span) = match name.get() {
            Some(lit) => {
                check_name(cx, &lit);
                (lit.value(), lit.to_token_stream())
            }
            None => match type_name(ty) {
                Some(ident) => (ident.to_string(), ty.to_token_stream()),
                None => {
                    cx.error_spanned_by(
                        ty,
                        "cannot name this event after its type; add #[event(name = \"...\")]",
                    );
                    continue;
                }
            },
        };
        out.push(Variant {
            ident: &variant.ident,
            ty,
            name,
            name_span,
            version: version.get().unwrap_or(1),
        });
    }
    out
}

/// Rule: an event name is not empty and has no surrounding whitespace.
fn check_name(cx: &Ctxt, lit: &LitStr) {
    let value = lit.value();
    if value.trim().is_empty() {
        cx.error_spanned_by(lit, "event name cannot be empty");
    } else if value.trim() != value {
        cx.error_spanned_by(lit, "event name cannot start or end with whitespace");
    }
}

/// Rule: two variants never share a stored event name (decoding would be ambiguous).
fn check_unique_names(cx: &Ctxt, variants: &[Variant<'_>]) {
    let mut seen: HashMap<&str, &Ident> = HashMap::new();
    for v in variants {
        if let Some(first) = seen.insert(&v.name, v.ident) {
            cx.error_spanned_by(
                &v.name_span,
                format!(
                    "duplicate event name \"{}\": variants `{first}` and `{}` would be stored alike; give one of them #[event(name = \"...\")]",
                    v.name, v.ident
                ),
            );
        }
    }
}

/// The last segment of a plain type path: `OrderCreated` for `events::OrderCreated`.
fn type_name(ty: &Type) -> Option<&Ident> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| &s.ident),
        _ => None,
    }
}

fn generate(input: &DeriveInput, variants: &[Variant<'_>]) -> TokenStream {
    let enum_ident = &input.ident;
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    let idents: Vec<&Ident> = variants.iter().map(|v| v.ident).collect();
    let types: Vec<&Type> = variants.iter().map(|v| v.ty).collect();
    let versions: Vec<u32> = variants.iter().map(|v| v.version).collect();

    // `From<Inner>` only for inner types that appear once.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for ty in &types {
        *counts.entry(ty.to_token_stream().to_string()).or_default() += 1;
    }
    let froms = variants
        .iter()
        .filter(|v| counts[&v.ty.to_token_stream().to_string()] == 1)
        .map(|v| {
            let (ident, ty) = (v.ident, v.ty);
            quote! {
                #[automatically_derived]
                impl ::core::convert::From<#ty> for #enum_ident {
                    fn from(event: #ty) -> Self {
                        #enum_ident::#ident(event)
                    }
                }

                // A command may return the payload alone.
                #[automatically_derived]
                impl ::eventsource::__private::IntoEvents<#enum_ident> for #ty {
                    fn into_events(self, out: &mut ::std::vec::Vec<#enum_ident>) {
                        out.push(#enum_ident::#ident(self));
                    }
                }
            }
        });

    quote! {
        #[doc(hidden)]
        const _: () = {
            use ::eventsource::__private::serde_json;

            #[automatically_derived]
            impl ::eventsource::DomainEvent for #enum_ident {
                const EVENT_TYPES: &'static [&'static str] = &[#(#names),*];

                fn event_type(&self) -> &'static str {
                    match self {
                        #(#enum_ident::#idents(_) => #names,)*
                    }
                }

                fn event_version(&self) -> u32 {
                    match self {
                        #(#enum_ident::#idents(_) => #versions,)*
                    }
                }

                fn to_payload(&self) -> serde_json::Result<::std::string::String> {
                    match self {
                        #(#enum_ident::#idents(event) => serde_json::to_string(event),)*
                    }
                }

                fn from_payload(
                    event_type: &str,
                    _event_version: u32,
                    payload: &str,
                ) -> ::core::result::Result<Self, ::eventsource::event::EventDecodeError> {
                    match event_type {
                        #(#names => ::core::result::Result::Ok(
                            #enum_ident::#idents(serde_json::from_str::<#types>(payload)?)
                        ),)*
                        other => ::core::result::Result::Err(
                            ::eventsource::event::EventDecodeError::UnknownType {
                                event_type: ::std::string::ToString::to_string(other),
                                expected: <Self as ::eventsource::DomainEvent>::EVENT_TYPES,
                            },
                        ),
                    }
                }
            }

            #[automatically_derived]
            impl<__A> ::eventsource::Dispatch<__A> for #enum_ident
            where
                #(__A: ::eventsource::Apply<#types>,)*
            {
                fn dispatch(&self, state: &mut __A) {
                    match self {
                        #(#enum_ident::#idents(event) => <__A as ::eventsource::Apply<#types>>::apply(state, event),)*
                    }
                }
            }

            #(#froms)*
        };
    }
}

/// On error: an impl with no events, so uses of the enum do not cascade into more errors.
fn fallback(input: &DeriveInput) -> TokenStream {
    let ident = &input.ident;
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::eventsource::DomainEvent for #ident {
                const EVENT_TYPES: &'static [&'static str] = &[];
                fn event_type(&self) -> &'static str { ::core::unreachable!() }
                fn event_version(&self) -> u32 { ::core::unreachable!() }
                fn to_payload(&self) -> ::eventsource::__private::serde_json::Result<::std::string::String> {
                    ::core::unreachable!()
                }
                fn from_payload(_: &str, _: u32, _: &str)
                    -> ::core::result::Result<Self, ::eventsource::event::EventDecodeError> {
                    ::core::unreachable!()
                }
            }
            #[automatically_derived]
            impl<__A> ::eventsource::Dispatch<__A> for #ident {
                fn dispatch(&self, _: &mut __A) { ::core::unreachable!() }
            }
        };
    }
}
