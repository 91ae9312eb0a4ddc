//! Attribute and key names, in one place.

use std::fmt;

use syn::{Ident, Path};

#[derive(Copy, Clone)]
pub struct Symbol(pub &'static str);

pub const AGGREGATE: Symbol = Symbol("aggregate");
pub const SNAPSHOT: Symbol = Symbol("snapshot");
pub const EVENT: Symbol = Symbol("event");

pub const NAME: Symbol = Symbol("name");
pub const VERSION: Symbol = Symbol("version");
pub const SCHEMA_VERSION: Symbol = Symbol("schema_version");
pub const THRESHOLD: Symbol = Symbol("threshold");
pub const MODE: Symbol = Symbol("mode");

/// Keys accepted by `#[aggregate(...)]`.
pub const AGGREGATE_KEYS: &[Symbol] = &[NAME, EVENT];
/// Keys accepted by `#[snapshot(...)]`.
pub const SNAPSHOT_KEYS: &[Symbol] = &[SCHEMA_VERSION, THRESHOLD, MODE];
/// Keys accepted by `#[event(...)]`.
pub const EVENT_KEYS: &[Symbol] = &[NAME, VERSION];

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
