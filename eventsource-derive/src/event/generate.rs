//! The impls of `#[derive(DomainEvent)]`: `DomainEvent` (names, versions, encoding, and
//! decoding with aliases and upcast chains), `Dispatch`, `From<Inner>` and `IntoEvents`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident};

use super::{EventEnum, Variant};
use crate::internals::chain::Target;

pub fn generate(e: &EventEnum<'_>) -> TokenStream {
    let p = quote!(::eventsource::__private);
    let enum_ident = &e.input.ident;
    let variants = &e.variants;
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    let aliases: Vec<String> = variants
        .iter()
        .flat_map(|v| v.aliases.iter().map(syn::LitStr::value))
        .collect();
    let idents: Vec<&Ident> = variants.iter().map(|v| v.ident).collect();
    let types: Vec<&syn::Type> = variants.iter().map(|v| v.ty).collect();
    let versions: Vec<u32> = variants.iter().map(|v| v.version).collect();
    let arms = variants.iter().map(|v| decode_arm(enum_ident, v));

    let froms = variants.iter().map(|v| {
        let (ident, ty) = (v.ident, v.ty);
        quote! {
            #[automatically_derived]
            impl ::core::convert::From<#ty> for #enum_ident {
                fn from(__eventsource_event: #ty) -> Self {
                    #enum_ident::#ident(__eventsource_event)
                }
            }

            // A command may return the payload alone.
            #[automatically_derived]
            impl #p::IntoEvents<#enum_ident> for #ty {
                fn into_events(self, __eventsource_out: &mut ::std::vec::Vec<#enum_ident>) {
                    __eventsource_out.push(#enum_ident::#ident(self));
                }
            }
        }
    });

    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #p::DomainEvent for #enum_ident {
                const EVENT_TYPES: &'static [&'static str] = &[#(#names),*];
                const EVENT_ALIASES: &'static [&'static str] = &[#(#aliases),*];

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

                fn to_payload(&self) -> #p::serde_json::Result<#p::String> {
                    match self {
                        #(#enum_ident::#idents(__eventsource_event) => #p::serde_json::to_string(__eventsource_event),)*
                    }
                }

                fn from_payload(
                    __eventsource_type: &str,
                    __eventsource_version: u32,
                    __eventsource_payload: &str,
                ) -> #p::Result<Self, #p::EventDecodeError> {
                    #p::exactly_one(
                        __eventsource_type,
                        <Self as #p::DomainEvent>::decode(
                            __eventsource_type,
                            __eventsource_version,
                            __eventsource_payload,
                        )?,
                    )
                }

                fn decode(
                    __eventsource_type: &str,
                    __eventsource_version: u32,
                    __eventsource_payload: &str,
                ) -> #p::Result<#p::Decoded<Self>, #p::EventDecodeError> {
                    match __eventsource_type {
                        #(#arms)*
                        __eventsource_other => #p::Result::Err(
                            #p::EventDecodeError::UnknownType {
                                event_type: ::core::convert::From::from(__eventsource_other),
                                expected: <Self as #p::DomainEvent>::EVENT_TYPES,
                            },
                        ),
                    }
                }
            }

            #[automatically_derived]
            impl<__EventsourceState> #p::Dispatch<__EventsourceState> for #enum_ident
            where
                #(__EventsourceState: #p::Apply<#types>,)*
            {
                fn dispatch(&self, __eventsource_state: &mut __EventsourceState) {
                    match self {
                        #(#enum_ident::#idents(__eventsource_event) =>
                            <__EventsourceState as #p::Apply<#types>>::apply(__eventsource_state, __eventsource_event),)*
                    }
                }
            }

            #(#froms)*
        };
    }
}

/// The `match` arm decoding one variant from its name and aliases: the current version
/// straight through serde, a newer one refused, an older one through the chain (or, with
/// none declared, as it is).
fn decode_arm(enum_ident: &Ident, v: &Variant<'_>) -> TokenStream {
    let p = quote!(::eventsource::__private);
    let (ident, ty, current) = (v.ident, v.ty, v.version);
    let name = &v.name;
    let aliases = v.aliases.iter().map(syn::LitStr::value);
    let current_arm = quote! {
        #p::Result::Ok(#p::Decoded::One(#enum_ident::#ident(
            #p::serde_json::from_str::<#ty>(__eventsource_payload)?
        )))
    };
    let older = match v.chain() {
        None => current_arm.clone(),
        Some(chain)
            if chain
                .steps
                .iter()
                .all(|s| matches!(s.target, Target::Fn(_))) =>
        {
            let steps = chain.ordered().into_iter().map(|step| {
                let from = step.version;
                let Target::Fn(f) = &step.target else {
                    unreachable!()
                };
                let call = quote_spanned! {f.span()=>
                    #p::upcast_event_step(__eventsource_values, __eventsource_type, #from, &#f)?
                };
                quote! {
                    if __eventsource_version <= #from {
                        __eventsource_values = #call;
                    }
                }
            });
            quote! {
                if __eventsource_version < 1 {
                    return #p::Result::Err(#p::below_chain(__eventsource_type, __eventsource_version));
                }
                let mut __eventsource_values = #p::upcast_start(__eventsource_type, __eventsource_payload)?;
                #(#steps)*
                #p::upcast_finish::<#ty, #enum_ident>(__eventsource_values, #enum_ident::#ident)
            }
        }
        Some(chain) => {
            let ordered = chain.ordered();
            let arms = ordered.iter().enumerate().map(|(i, step)| {
                let from = step.version;
                let Target::Type(stored) = &step.target else { unreachable!() };
                let later = ordered[i + 1..]
                    .iter()
                    .filter_map(|s| match &s.target {
                        Target::Type(t) => Some(t),
                        Target::Fn(_) => None,
                    })
                    .chain(std::iter::once(ty));
                let conversions = later.map(|next| {
                    quote_spanned! {next.span()=>
                        let __eventsource_value: #next = ::eventsource::__private::upcast_typed(__eventsource_value);
                    }
                });
                quote! {
                    #from => {
                        let __eventsource_value: #stored = #p::serde_json::from_str(__eventsource_payload)?;
                        #(#conversions)*
                        #p::Result::Ok(#p::Decoded::One(#enum_ident::#ident(__eventsource_value)))
                    }
                }
            });
            quote! {
                match __eventsource_version {
                    #(#arms)*
                    _ => #p::Result::Err(#p::below_chain(__eventsource_type, __eventsource_version)),
                }
            }
        }
    };
    // The older versions' path stays out of line, so that it costs nothing to the
    // current version's.
    let older = if v.chain().is_some() {
        quote! {
            #[cold]
            #[inline(never)]
            fn __eventsource_older(
                __eventsource_type: &str,
                __eventsource_version: u32,
                __eventsource_payload: &str,
            ) -> #p::Result<#p::Decoded<#enum_ident>, #p::EventDecodeError> {
                #older
            }
            __eventsource_older(__eventsource_type, __eventsource_version, __eventsource_payload)
        }
    } else {
        older
    };
    quote! {
        #name #(| #aliases)* => {
            if __eventsource_version == #current {
                #current_arm
            } else if __eventsource_version > #current {
                #p::Result::Err(#p::newer_event(__eventsource_type, __eventsource_version, #current))
            } else {
                #older
            }
        }
    }
}

/// On error: an impl with no events, so uses of the enum do not cascade into more errors.
pub fn fallback(input: &DeriveInput) -> TokenStream {
    let p = quote!(::eventsource::__private);
    let ident = &input.ident;
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #p::DomainEvent for #ident {
                const EVENT_TYPES: &'static [&'static str] = &[];
                fn event_type(&self) -> &'static str { ::core::unreachable!() }
                fn event_version(&self) -> u32 { ::core::unreachable!() }
                fn to_payload(&self) -> #p::serde_json::Result<#p::String> {
                    ::core::unreachable!()
                }
                fn from_payload(_: &str, _: u32, _: &str)
                    -> #p::Result<Self, #p::EventDecodeError> {
                    ::core::unreachable!()
                }
            }
            #[automatically_derived]
            impl<__EventsourceState> #p::Dispatch<__EventsourceState> for #ident {
                fn dispatch(&self, _: &mut __EventsourceState) { ::core::unreachable!() }
            }
        };
    }
}
