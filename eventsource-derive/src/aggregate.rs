//! `#[derive(Aggregate)]`: parse `#[aggregate]` and `#[snapshot]`, check them, generate
//! the `Aggregate` impl.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, LitStr, Path};

use crate::attr::{self, Attr};
use crate::ctxt::{self, Ctxt};
use crate::symbol::{
    AGGREGATE, AGGREGATE_KEYS, EVENT, MODE, NAME, SCHEMA_VERSION, SNAPSHOT, SNAPSHOT_KEYS,
    THRESHOLD,
};

/// What `#[aggregate]` and `#[snapshot]` declare.
struct Input<'a> {
    input: &'a DeriveInput,
    name: String,
    event: Option<Path>,
    snapshot: Option<Snapshot>,
}

/// `#[snapshot(schema_version = N, threshold = N, mode = "...")]`.
struct Snapshot {
    span: Span,
    schema_version: Option<u32>,
    threshold: Option<(u64, Span)>,
    mode: Option<(Mode, Span)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Sync,
    Background,
    Manual,
}

pub fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let parsed = parse(&cx, input);
    check_event(&cx, &parsed);
    check_snapshot(&cx, &parsed);
    match cx.check() {
        Ok(()) => generate(&parsed),
        Err(error) => ctxt::with_fallback(error, TokenStream::new()),
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
                    meta.value()
                        .and_then(|v| v.parse::<Path>())
                        .map_err(|e| {
                            syn::Error::new(
                                e.span(),
                                "expected the event enum's type for `event` in #[aggregate(...)], e.g. `event = OrderEvent`",
                            )
                        })
                        .map(|p| event.set(&meta.path, p))
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

    Input {
        input,
        name: name
            .get()
            .map_or_else(|| input.ident.to_string(), |s| s.value()),
        event: event.get(),
        snapshot,
    }
}

fn parse_snapshot(cx: &Ctxt, a: &syn::Attribute) -> Snapshot {
    let mut schema_version = Attr::none(cx, "snapshot", SCHEMA_VERSION);
    let mut threshold = Attr::none(cx, "snapshot", THRESHOLD);
    let mut mode = Attr::none(cx, "snapshot", MODE);
    if let syn::Meta::Path(_) = a.meta {
        // `#[snapshot]` alone: every key takes its default.
    } else {
        let result = a.parse_nested_meta(|meta| {
            let outcome = if meta.path == SCHEMA_VERSION {
                attr::parse_positive(&meta, "snapshot", SCHEMA_VERSION, u64::from(u32::MAX))
                    .map(|v| schema_version.set(&meta.path, v as u32))
            } else if meta.path == THRESHOLD {
                attr::parse_positive(&meta, "snapshot", THRESHOLD, i64::MAX as u64)
                    .map(|v| threshold.set(&meta.path, (v, meta.path.span())))
            } else if meta.path == MODE {
                attr::parse_str(&meta, "snapshot", MODE).and_then(|s| {
                    let m = match s.value().as_str() {
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
                    mode.set(&meta.path, (m, s.span()));
                    Ok(())
                })
            } else {
                Err(attr::unknown_key(&meta, "snapshot", SNAPSHOT_KEYS))
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
    Snapshot {
        span: attr::attr_span(a),
        schema_version: schema_version.get(),
        threshold: threshold.get(),
        mode: mode.get(),
    }
}

/// Rule: the aggregate names its event enum.
fn check_event(cx: &Ctxt, input: &Input<'_>) {
    if input.event.is_none() {
        cx.error_spanned_by(
            &input.input.ident,
            "missing #[aggregate(event = ...)]: name the event enum this aggregate applies, e.g. #[aggregate(event = OrderEvent)]",
        );
    }
}

/// Rules of `#[snapshot]`: `schema_version` is required (snapshots outlive code changes,
/// so their shape must be versioned from the start), and `mode = "manual"` takes no
/// automatic trigger.
fn check_snapshot(cx: &Ctxt, input: &Input<'_>) {
    let Some(s) = &input.snapshot else { return };
    if s.schema_version.is_none() {
        cx.syn_error(syn::Error::new(
            s.span,
            "missing `schema_version` in #[snapshot(...)]: add `schema_version = 1` and increment it whenever the state's serialized shape changes",
        ));
    }
    if let (Some((Mode::Manual, mode_span)), Some((_, threshold_span))) = (s.mode, s.threshold) {
        let mut e = syn::Error::new(
            threshold_span,
            "`threshold` has no effect with mode = \"manual\": remove it, or use mode = \"sync\" or \"background\"",
        );
        e.combine(syn::Error::new(mode_span, "manual mode declared here"));
        cx.syn_error(e);
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
        let strategy = match s.threshold {
            Some((n, _)) => quote!(::eventsource::__private::EveryNEvents::__from_attribute(#n)),
            None => quote!(::eventsource::__private::Never),
        };
        let mode = match s.mode.map_or(Mode::Sync, |(m, _)| m) {
            Mode::Sync => quote!(Sync),
            Mode::Background => quote!(Background),
            Mode::Manual => quote!(Manual),
        };
        quote! {
            fn snapshot_policy() -> ::eventsource::SnapshotPolicy {
                ::eventsource::SnapshotPolicy::new(#strategy, ::eventsource::SnapshotMode::#mode)
            }
        }
    });
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
        };
    }
}
