//! The rules of `#[aggregate]` and `#[snapshot]` across keys.

use super::{Input, Mode, Snapshot};
use crate::internals::chain::Start;
use crate::internals::ctxt::Ctxt;

pub fn check(cx: &Ctxt, input: &Input<'_>) {
    if let Some(lit) = &input.name_lit
        && lit.value().trim().is_empty()
    {
        cx.error_spanned_by(lit, "aggregate name cannot be empty");
    }
    check_event(cx, input);
    if let Some(s) = &input.snapshot {
        check_snapshot(cx, s);
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

/// Rules of `#[snapshot]`:
/// - `schema_version` is required: snapshots outlive code changes, so their shape is
///   versioned from the start;
/// - `mode = "manual"` takes no automatic trigger (the repository never asks it);
/// - `never` takes no other trigger (it would contradict them);
/// - one upcast chain, obeying the chain rules, starting anywhere (older snapshots are
///   replayed past).
fn check_snapshot(cx: &Ctxt, s: &Snapshot) {
    if let (Some(_), Some(typed)) = (&s.upcast, &s.upcast_from) {
        cx.syn_error(syn::Error::new(
            typed.span,
            "#[snapshot(...)] has both `upcast` and `upcast_from`: a state's older schemas go through one chain; keep one of them",
        ));
    } else if let (Some(chain), Some(current)) = (s.chain(), s.schema_version) {
        chain.check(
            cx,
            "the snapshot state",
            "schema_version",
            current,
            Start::Anywhere,
        );
    }
    if s.schema_version.is_none() && !s.schema_version_written && !s.malformed {
        cx.syn_error(syn::Error::new(
            s.span,
            "missing `schema_version` in #[snapshot(...)]: add `schema_version = 1` and increment it whenever the state's serialized shape changes",
        ));
    }
    if let (Some((Mode::Manual, mode_span)), Some(first)) = (s.mode, s.triggers.first()) {
        let mut e = syn::Error::new(
            first.span,
            format!(
                "`{}` has no effect with mode = \"manual\": remove the automatic triggers, or use mode = \"sync\" or \"background\"",
                first.key
            ),
        );
        e.combine(syn::Error::new(mode_span, "manual mode declared here"));
        cx.syn_error(e);
    }
    if let (Some(never), Some(first)) = (s.never, s.triggers.first()) {
        let mut e = syn::Error::new(
            never,
            format!(
                "`never` contradicts the other triggers: remove `never`, or remove `{}` and the other triggers",
                first.key
            ),
        );
        e.combine(syn::Error::new(first.span, "trigger declared here"));
        cx.syn_error(e);
    }
}
