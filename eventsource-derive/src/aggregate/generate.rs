//! The `Aggregate` impl of `#[derive(Aggregate)]`: names, schema version, the apply
//! dispatch, snapshot (de)serialization and upcasting, and the snapshot policy.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, Path};

use super::{EventName, Input, Kind, Mode, Snapshot, Trigger};
use crate::internals::chain::{Chain, Target};

pub fn generate(input: &Input<'_>) -> TokenStream {
    let p = quote!(::eventsource::__private);
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
        let policy = quote! {
            #p::SnapshotPolicy::new(#strategy, #p::SnapshotMode::#mode) #timeout
        };
        let policy = match s.keep {
            Some((keep, _)) => {
                let keep = keep as u32;
                quote!(#p::keep_snapshots(#policy, #keep))
            }
            None => policy,
        };
        let policy = match s.compress_over {
            Some(bytes) => {
                let bytes = proc_macro2::Literal::u64_unsuffixed(bytes);
                quote!(#p::compress_snapshots_over(#policy, #bytes))
            }
            None => policy,
        };
        quote! {
            fn snapshot_policy() -> #p::SnapshotPolicy {
                #policy
            }
        }
    });
    let upcast = input
        .snapshot
        .as_ref()
        .and_then(Snapshot::chain)
        .map(|chain| upcast_snapshot(chain, schema_version, ident));
    let event_checks = input
        .snapshot
        .iter()
        .flat_map(Snapshot::event_names)
        .map(|n| check_event_name(event, n));
    // Spanned on the type, so that a missing serde impl is reported there.
    let serde_check = quote_spanned! {ident.span()=>
        fn to_snapshot(&self) -> ::eventsource::__private::serde_json::Result<::eventsource::__private::String> {
            ::eventsource::__private::to_snapshot_json(self)
        }

        fn from_snapshot(__eventsource_json: &str) -> ::eventsource::__private::serde_json::Result<Self> {
            ::eventsource::__private::from_snapshot_json(__eventsource_json)
        }
    };
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #p::Aggregate for #ident {
                type Event = #event;
                const TYPE: &'static str = #name;
                const SCHEMA_VERSION: u32 = #schema_version;

                fn apply_event(&mut self, __eventsource_event: &Self::Event) {
                    <#event as #p::Dispatch<Self>>::dispatch(__eventsource_event, self)
                }

                #serde_check

                #upcast

                #policy
            }

            #(#event_checks)*
        };
    }
}

/// `Aggregate::upcast_snapshot` from `upcast(...)` (steps on the JSON value) or
/// `upcast_from(...)` (types joined by `From`).
fn upcast_snapshot(chain: &Chain, current: u32, ident: &syn::Ident) -> TokenStream {
    let p = quote!(::eventsource::__private);
    let first = chain.first();
    let ordered = chain.ordered();
    let body = if ordered.iter().all(|s| matches!(s.target, Target::Fn(_))) {
        let steps = ordered.iter().map(|step| {
            let from = step.version;
            let Target::Fn(f) = &step.target else {
                unreachable!()
            };
            let call = quote_spanned! {f.span()=>
                #p::upcast_snapshot_step(__eventsource_value, #from, &#f)?
            };
            quote! {
                if __eventsource_schema <= #from {
                    __eventsource_value = #call;
                }
            }
        });
        quote! {
            let __eventsource_upcast = || -> #p::Result<Self, #p::BoxError> {
                let mut __eventsource_value = #p::snapshot_start(__eventsource_json)?;
                #(#steps)*
                #p::snapshot_from_value::<Self>(__eventsource_value)
            };
            ::core::option::Option::Some(__eventsource_upcast())
        }
    } else {
        let arms = ordered.iter().enumerate().map(|(i, step)| {
            let from = step.version;
            let Target::Type(stored) = &step.target else {
                unreachable!()
            };
            let conversions = ordered[i + 1..]
                .iter()
                .filter_map(|s| match &s.target {
                    Target::Type(t) => Some(quote!(#t)),
                    Target::Fn(_) => None,
                })
                .chain(std::iter::once(quote!(#ident)))
                .map(|next| {
                    quote_spanned! {next.span()=>
                        let __eventsource_value: #next = ::eventsource::__private::upcast_typed(__eventsource_value);
                    }
                });
            quote! {
                #from => #p::snapshot_typed::<#stored>(__eventsource_json).map(|__eventsource_value| {
                    #(#conversions)*
                    __eventsource_value
                }),
            }
        });
        quote! {
            ::core::option::Option::Some(match __eventsource_schema {
                #(#arms)*
                _ => return ::core::option::Option::None,
            })
        }
    };
    quote! {
        fn upcast_snapshot(
            __eventsource_schema: u32,
            __eventsource_json: &str,
        ) -> ::core::option::Option<#p::Result<Self, #p::BoxError>> {
            if !(#first..#current).contains(&__eventsource_schema) {
                return ::core::option::Option::None;
            }
            #body
        }
    }
}

/// `#[snapshot(on(Name))]`: a const assertion that the event enum has an event stored
/// as `Name`, evaluated at compile time and reported on the name with the valid names.
fn check_event_name(event: &Path, n: &EventName) -> TokenStream {
    let value = &n.value;
    let enum_name = event.to_token_stream().to_string().replace(' ', "");
    let prefix = format!("#[snapshot(on(...))]: `{value}` is not an event of `{enum_name}`");
    quote_spanned! {n.span=>
        const _: () = {
            const EVENT_TYPES: &[&str] = <#event as ::eventsource::__private::DomainEvent>::EVENT_TYPES;
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
pub fn fallback(input: &Input<'_>) -> TokenStream {
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
            impl ::eventsource::__private::Aggregate for #ident {
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
