//! `#[derive(Aggregate)]`: parse `#[aggregate]` and `#[snapshot]`, check them, generate
//! the `Aggregate` impl.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::{Data, DeriveInput, LitStr, Path};

use crate::attr::{self, Attr};
use crate::ctxt::{self, Ctxt};
use crate::snapshot::{self, Snapshot};
use crate::symbol::{AGGREGATE, AGGREGATE_KEYS, EVENT, NAME, SNAPSHOT};

/// What `#[aggregate]` and `#[snapshot]` declare.
struct Input<'a> {
    input: &'a DeriveInput,
    name: String,
    event: Option<Path>,
    /// `event` was written, even if its value was wrong (already reported).
    event_written: bool,
    snapshot: Option<Snapshot>,
}

pub fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let parsed = parse(&cx, input);
    check_event(&cx, &parsed);
    if let Some(s) = &parsed.snapshot {
        snapshot::check(&cx, s);
    }
    match cx.check() {
        Ok(()) => generate(&parsed),
        Err(error) => ctxt::with_fallback(error, fallback(&parsed)),
    }
}

fn parse<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Input<'a> {
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
            let result = a.parse_nested_meta(|meta| {
                let outcome = if meta.path == NAME {
                    attr::parse_str(&meta, "aggregate", NAME).map(|s| {
                        if s.value().trim().is_empty() {
                            cx.error_spanned_by(&s, "aggregate name cannot be empty");
                        }
                        name.set(&meta.path, s)
                    })
                } else if meta.path == EVENT {
                    event_written = true;
                    parse_event(&meta).map(|p| event.set(&meta.path, p))
                } else {
                    Err(attr::unknown_key(&meta, "aggregate", AGGREGATE_KEYS))
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
        } else if a.path() == SNAPSHOT {
            let parsed = snapshot::parse(cx, a);
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

    Input {
        input,
        name: name
            .get()
            .map_or_else(|| input.ident.to_string(), |s| s.value()),
        event: event.get(),
        event_written,
        snapshot,
    }
}

/// `event = OrderEvent`: a type path.
fn parse_event(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Path> {
    match meta.value()?.parse::<syn::Expr>()? {
        syn::Expr::Path(p) if p.qself.is_none() => Ok(p.path),
        syn::Expr::Lit(syn::ExprLit {
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

/// Rule: the aggregate names its event enum.
fn check_event(cx: &Ctxt, input: &Input<'_>) {
    if input.event.is_none() && !input.event_written {
        cx.error_spanned_by(
            &input.input.ident,
            "missing #[aggregate(event = ...)]: name the event enum this aggregate applies, e.g. #[aggregate(event = OrderEvent)]",
        );
    }
}

fn generate(input: &Input<'_>) -> TokenStream {
    let ident = &input.input.ident;
    let name = &input.name;
    let Some(event) = &input.event else {
        return TokenStream::new();
    };
    let schema_version = input
        .snapshot
        .as_ref()
        .and_then(|s| s.schema_version)
        .unwrap_or(1);
    let policy = input.snapshot.as_ref().map(|s| {
        let strategy = s.strategy_tokens();
        let mode = s.mode_tokens();
        let timeout = s.timeout.map(|ms| {
            quote! { .with_timeout(::core::time::Duration::from_millis(#ms)) }
        });
        quote! {
            fn snapshot_policy() -> ::eventsource::SnapshotPolicy {
                ::eventsource::SnapshotPolicy::new(#strategy, ::eventsource::SnapshotMode::#mode)
                    #timeout
            }
        }
    });
    let event_checks = input
        .snapshot
        .iter()
        .flat_map(Snapshot::event_names)
        .map(|n| check_event_name(event, n));
    let serde_check = quote_spanned! {ident.span()=>
        fn to_snapshot(&self) -> ::eventsource::__private::serde_json::Result<::std::string::String> {
            ::eventsource::__private::to_snapshot_json(self)
        }

        fn from_snapshot(json: &str) -> ::eventsource::__private::serde_json::Result<Self> {
            ::eventsource::__private::from_snapshot_json(json)
        }
    };
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl ::eventsource::Aggregate for #ident {
                type Event = #event;
                const TYPE: &'static str = #name;
                const SCHEMA_VERSION: u32 = #schema_version;

                fn apply_event(&mut self, event: &Self::Event) {
                    <#event as ::eventsource::Dispatch<Self>>::dispatch(event, self)
                }

                #serde_check

                #policy
            }

            #(#event_checks)*
        };
    }
}

/// `#[snapshot(on(Name))]`: a const assertion that the event enum has an event stored
/// as `Name`, evaluated at compile time and reported on the name with the valid names.
fn check_event_name(event: &Path, n: &snapshot::EventName) -> TokenStream {
    let value = &n.value;
    let enum_name = event.to_token_stream().to_string().replace(' ', "");
    let prefix = format!("#[snapshot(on(...))]: `{value}` is not an event of `{enum_name}`");
    quote_spanned! {n.span=>
        const _: () = {
            const EVENT_TYPES: &[&str] = <#event as ::eventsource::DomainEvent>::EVENT_TYPES;
            if !::eventsource::__private::has_event_type(EVENT_TYPES, #value) {
                ::core::panic!(
                    "{}",
                    ::eventsource::__private::unknown_event_message(#prefix, EVENT_TYPES).as_str()
                );
            }
        };
    }
}

/// On error: an impl whose methods are never called, so uses of the type elsewhere do
/// not cascade into more errors. Only possible with a concrete type and a known event.
fn fallback(input: &Input<'_>) -> TokenStream {
    let ident = &input.input.ident;
    let Some(event) = &input.event else {
        return TokenStream::new();
    };
    if !input.input.generics.params.is_empty() || matches!(input.input.data, Data::Union(_)) {
        // No impl is possible; still resolve the event type, so a wrong path is reported.
        return quote! {
            const _: ::core::marker::PhantomData<#event> = ::core::marker::PhantomData;
        };
    }
    let name = &input.name;
    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::eventsource::Aggregate for #ident {
                type Event = #event;
                const TYPE: &'static str = #name;
                const SCHEMA_VERSION: u32 = 1;
                fn apply_event(&mut self, _: &Self::Event) { ::core::unreachable!() }
                fn to_snapshot(&self) -> ::eventsource::__private::serde_json::Result<::std::string::String> {
                    ::core::unreachable!()
                }
                fn from_snapshot(_: &str) -> ::eventsource::__private::serde_json::Result<Self> {
                    ::core::unreachable!()
                }
            }
        };
    }
}
