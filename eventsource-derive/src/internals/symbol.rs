//! Attribute and key names, in one place.

use std::fmt;

use syn::{Ident, Path};

#[derive(Copy, Clone, PartialEq, Eq)]
pub struct Symbol(pub &'static str);

pub const AGGREGATE: Symbol = Symbol("aggregate");
pub const SNAPSHOT: Symbol = Symbol("snapshot");
pub const EVENT: Symbol = Symbol("event");

pub const NAME: Symbol = Symbol("name");
pub const VERSION: Symbol = Symbol("version");
pub const SCHEMA_VERSION: Symbol = Symbol("schema_version");
pub const THRESHOLD: Symbol = Symbol("threshold");
pub const MODE: Symbol = Symbol("mode");
pub const NEVER: Symbol = Symbol("never");
pub const TIMEOUT: Symbol = Symbol("timeout");
pub const ALIASES: Symbol = Symbol("aliases");
pub const UPCAST: Symbol = Symbol("upcast");
pub const UPCAST_FROM: Symbol = Symbol("upcast_from");
pub const KEEP: Symbol = Symbol("keep");
pub const COMPRESS_OVER: Symbol = Symbol("compress_over");

// Snapshot triggers.
pub const EVERY: Symbol = Symbol("every");
pub const AFTER: Symbol = Symbol("after");
pub const ON: Symbol = Symbol("on");
pub const REPLAYED_OVER: Symbol = Symbol("replayed_over");
pub const LOAD_SLOWER_THAN: Symbol = Symbol("load_slower_than");
pub const ANY: Symbol = Symbol("any");
pub const ALL: Symbol = Symbol("all");
pub const STRATEGY: Symbol = Symbol("strategy");

/// Keys accepted by `#[aggregate(...)]`.
pub const AGGREGATE_KEYS: &[Symbol] = &[NAME, EVENT];
/// Keys accepted at the top level of `#[snapshot(...)]`.
pub const SNAPSHOT_KEYS: &[Symbol] = &[
    SCHEMA_VERSION,
    MODE,
    EVERY,
    THRESHOLD,
    AFTER,
    ON,
    REPLAYED_OVER,
    LOAD_SLOWER_THAN,
    ANY,
    ALL,
    STRATEGY,
    NEVER,
    TIMEOUT,
    UPCAST,
    UPCAST_FROM,
    KEEP,
    COMPRESS_OVER,
];
/// Keys accepted inside `any(...)` and `all(...)`: the triggers.
pub const TRIGGER_KEYS: &[Symbol] = &[
    EVERY,
    THRESHOLD,
    AFTER,
    ON,
    REPLAYED_OVER,
    LOAD_SLOWER_THAN,
    ANY,
    ALL,
    STRATEGY,
];
/// Keys of `#[snapshot(...)]` that are not triggers, so only belong at its top level.
pub const TOP_LEVEL_ONLY: &[Symbol] = &[
    SCHEMA_VERSION,
    MODE,
    NEVER,
    TIMEOUT,
    UPCAST,
    UPCAST_FROM,
    KEEP,
    COMPRESS_OVER,
];
/// Words a user may reach for, and the key that means it.
pub const SYNONYMS: &[(&str, Symbol)] = &[
    ("or", ANY),
    ("and", ALL),
    ("every_n_events", EVERY),
    ("interval", AFTER),
    ("on_events", ON),
    ("events", ON),
    ("version", SCHEMA_VERSION),
    ("alias", ALIASES),
    ("renamed_from", ALIASES),
    ("upcasts", UPCAST),
    ("upcaster", UPCAST),
    ("migrate", UPCAST),
    ("history", KEEP),
    ("retain", KEEP),
    ("compress", COMPRESS_OVER),
    ("compression", COMPRESS_OVER),
    ("compress_above", COMPRESS_OVER),
];
/// Keys accepted by `#[event(...)]`.
pub const EVENT_KEYS: &[Symbol] = &[NAME, VERSION, ALIASES, UPCAST, UPCAST_FROM];

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for &Ident {
    fn eq(&self, word: &Symbol) -> bool {
        *self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// "`a`, `b` or `c`" for error messages.
pub fn list(keys: &[Symbol]) -> String {
    let names: Vec<String> = keys.iter().map(|k| format!("`{}`", k.0)).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {}", rest.join(", "), last),
    }
}
