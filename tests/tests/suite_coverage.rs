//! Every function of the conformance suite runs on every backend: a suite function that
//! `conformance_tests!` does not list (or lists under an arm that passes its store
//! otherwise), or a backend test file that does not call the macro, fails here instead
//! of silently testing nothing.

use std::collections::BTreeSet;
use std::path::Path;

/// How a suite function takes its store, and so which arms of `conformance_tests!` may
/// list it: `Arc<dyn ...>` stores, any `S: SuiteStore`, `S: AdminSuiteStore` (listed
/// under `@admin_store`), or `S: SqlSuiteStore` (listed
/// under `@sql_store`, run on the SQL backends only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Takes {
    Dyn,
    Store,
    SqlStore,
    AdminStore,
}

/// `(module, function, how it takes its store)` of every suite function: a
/// `pub async fn` of `src/conformance/<module>.rs` taking a store (`Arc<dyn ...>`, or a
/// generic `S: SuiteStore` / `S: SqlSuiteStore`).
fn suite_functions(dir: &Path) -> BTreeSet<(String, String, Takes)> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("read src/conformance") {
        let path = entry.expect("a directory entry").path();
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        if module == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a suite file");
        for (at, _) in text.match_indices("pub async fn ") {
            let rest = &text[at + "pub async fn ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let params = &rest[..rest.find(')').unwrap_or(rest.len())];
            let takes = if params.contains("Arc<dyn") {
                Takes::Dyn
            } else if params.contains("S: AdminSuiteStore>") {
                Takes::AdminStore
            } else if params.contains("S: SqlSuiteStore>") {
                Takes::SqlStore
            } else if params.contains("S: SuiteStore>") {
                Takes::Store
            } else {
                continue;
            };
            found.insert((module.clone(), name, takes));
        }
    }
    found
}

/// `(module, function, how the arm passes the store)` of every name listed in
/// `conformance_tests!`.
fn listed_functions(lib: &str) -> BTreeSet<(String, String, Takes)> {
    let mut listed = BTreeSet::new();
    let marker = "$crate::conformance_tests!(@";
    for (at, _) in lib.match_indices(marker) {
        let rest = &lib[at + marker.len()..];
        let head = &rest[..rest.find(';').expect("a `;` after the fixture")];
        let words: Vec<&str> = head.split_whitespace().collect();
        let (module, takes) = match words.as_slice() {
            ["events", _] | ["both", _] => ("event_store", Takes::Dyn),
            ["snapshots", _] => ("snapshot_store", Takes::Dyn),
            ["repository", _] => ("repository", Takes::Dyn),
            ["feed", _] => ("feed", Takes::Dyn),
            ["with", module, _] => (*module, Takes::Dyn),
            ["store", module, _] => (*module, Takes::Store),
            ["sql_store", module, _] => (*module, Takes::SqlStore),
            ["admin_store", module, _] => (*module, Takes::AdminStore),
            other => panic!("an arm this test does not know: {other:?}"),
        };
        let names = &rest[head.len() + 1..rest.find(')').expect("the list's end")];
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            listed.insert((module.to_owned(), name.to_owned(), takes));
        }
    }
    listed
}

#[test]
fn every_suite_function_is_listed_once_under_its_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("read src/lib.rs");
    let suite = suite_functions(&root.join("src/conformance"));
    let listed = listed_functions(&lib);
    assert!(suite.len() > 20, "the suite was found: {suite:?}");
    for takes in [Takes::Store, Takes::SqlStore, Takes::AdminStore] {
        assert!(
            suite.iter().any(|(_, _, t)| *t == takes),
            "the suite functions taking {takes:?} were found: {suite:?}"
        );
    }
    let missing: Vec<_> = suite.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&suite).collect();
    assert!(
        missing.is_empty(),
        "suite functions that conformance_tests! does not run: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "names in conformance_tests! that are not suite functions: {unknown:?}"
    );
}

#[test]
fn every_backend_runs_the_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for backend in ["memory", "sqlite_memory", "sqlite_file", "postgres"] {
        let text = std::fs::read_to_string(root.join(format!("tests/{backend}.rs")))
            .expect("read a backend's test file");
        assert!(
            text.contains(&format!(
                "eventsource_tests::conformance_tests!(eventsource_tests::fixtures::{backend});"
            )),
            "tests/{backend}.rs runs the conformance suite on its own fixture"
        );
        // The subscription suite, with the SQL read-model tests where there is SQL.
        let arm = if backend == "memory" {
            "subscriptions"
        } else {
            "sql_subscriptions"
        };
        assert!(
            text.contains(&format!(
                "eventsource_tests::conformance_tests!({arm} eventsource_tests::fixtures::{backend}_store);"
            )),
            "tests/{backend}.rs runs the subscription suite ({arm}) on its own store"
        );
        assert!(
            text.contains(&format!(
                "eventsource_tests::conformance_tests!(admin eventsource_tests::fixtures::{backend}_store);"
            )),
            "tests/{backend}.rs runs the admin suite on its own store"
        );
    }
}
