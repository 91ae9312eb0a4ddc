//! Whatever the snapshots table holds, a load returns the right state: a snapshot row
//! no store would write is ignored and the events are replayed. Never an error, never a
//! panic, never a wrong state, and never a hang.
//!
//! Each case saves an aggregate of ten events, takes a snapshot, corrupts its row with
//! direct SQL, then loads twice through a repository with the snapshot store and
//! compares with a repository without one (a full replay). Every case runs; the failure
//! lists all that broke the rule.
//!
//! The PostgreSQL half needs `DATABASE_URL`, e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable`.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use eventsource::SqliteSnapshotStore;
use eventsource::prelude::*;
use eventsource::{PostgresEventStore, PostgresSnapshotStore, SqliteEventStore};
use eventsource_tests::TempDir;
use eventsource_tests::conformance::repository::{Added, Multiplied, Tally};
use eventsource_tests::fixtures::database_url;
use uuid::Uuid;

/// How long one load may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// Events per aggregate.
const EVENTS: u64 = 10;

/// One corruption: what it is, the `SET` clause of an `UPDATE` of the snapshot's row
/// (`$3`/`?3` is `arg`, when given).
struct Case {
    name: &'static str,
    set: &'static str,
    arg: Option<String>,
}

fn case(name: &'static str, set: &'static str) -> Case {
    Case {
        name,
        set,
        arg: None,
    }
}

fn case_with(name: &'static str, set: &'static str, arg: String) -> Case {
    Case {
        name,
        set,
        arg: Some(arg),
    }
}

/// `depth` nested arrays.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// A state of about 5 MB with the right fields (so it decodes, to the right state)
/// and a long extra one.
fn big_pad() -> String {
    "x".repeat(5 * 1024 * 1024)
}

/// 5 MB of JSON of the wrong shape.
fn big_array() -> String {
    let mut s = String::with_capacity(5 * 1024 * 1024 + 16);
    s.push('[');
    while s.len() < 5 * 1024 * 1024 {
        s.push_str("123456789,");
    }
    s.push_str("0]");
    s
}

/// Hex of bytes, for `decode(.., 'hex')` and `unhex(..)`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A zstd frame of `text`, with its content checksum, as the stores write it.
fn frame(text: &[u8]) -> Vec<u8> {
    let mut compressor = zstd::bulk::Compressor::new(3).expect("a compressor");
    compressor.include_checksum(true).expect("checksum");
    compressor.compress(text).expect("compress")
}

/// Compressed states that cannot be used, as `(name, hex of state_zstd)`: a reader
/// that cannot decompress replays.
fn compressed_cases() -> Vec<(&'static str, String)> {
    let right_shape = br#"{"value":1,"applied":10,"pad":"0123456789abcdef0123456789abcdef"}"#;
    let whole = frame(right_shape);
    let mut flipped = whole.clone();
    // A byte of the compressed content: the checksum no longer matches.
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x5a;
    let mut garbage = Vec::with_capacity(1 << 20);
    let mut x: u32 = 0x9e37_79b9;
    while garbage.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.extend_from_slice(&x.to_le_bytes());
    }
    vec![
        ("state_zstd garbage", "deadbeef00112233".to_owned()),
        ("state_zstd empty", String::new()),
        ("state_zstd 1 MB of garbage", hex(&garbage)),
        (
            "state_zstd a truncated frame",
            hex(&whole[..whole.len() / 2]),
        ),
        (
            "state_zstd a frame without its checksum",
            hex(&whole[..whole.len() - 4]),
        ),
        ("state_zstd a frame with a flipped byte", hex(&flipped)),
        (
            "state_zstd a zstd magic number alone",
            hex(&[0x28, 0xb5, 0x2f, 0xfd]),
        ),
        (
            "state_zstd a frame of the wrong shape",
            hex(&frame(br#"{"value":"not a number","applied":true}"#)),
        ),
        (
            "state_zstd a frame of invalid UTF-8",
            hex(&frame(&[0xff, 0xfe, 0x7b, 0x7d])),
        ),
        ("state_zstd a frame of nothing", hex(&frame(b""))),
        ("state_zstd a frame of JSON null", hex(&frame(b"null"))),
        (
            "state_zstd two frames, the second garbage",
            hex(&[frame(right_shape), b"garbage!".to_vec()].concat()),
        ),
    ]
}

fn postgres_cases() -> Vec<Case> {
    let compressed = compressed_cases().into_iter().map(|(name, frame)| {
        case_with(name, "state = NULL, state_zstd = decode($3, 'hex')", frame)
    });
    let mut cases = vec![
        case(
            "state of the wrong shape",
            r#"state = '{"value":"not a number","applied":true}'"#,
        ),
        case("state null", "state = 'null'"),
        case(
            "state a JSON string holding the state",
            r#"state = (to_jsonb(state::text))::json"#,
        ),
        case("state a number", "state = '42'"),
        case("state an empty object", "state = '{}'"),
        case("state an empty array", "state = '[]'"),
        case(
            "state with an extra field",
            r#"state = (state::jsonb || '{"extra":[1,{"a":null}]}')::json"#,
        ),
        case(
            "state missing a field",
            "state = (state::jsonb - 'applied')::json",
        ),
        case(
            "state with a negative unsigned field",
            "state = (jsonb_set(state::jsonb, '{applied}', '-1'))::json",
        ),
        case(
            "state with an integer field out of range",
            "state = (jsonb_set(state::jsonb, '{value}', '1e400'))::json",
        ),
        case_with(
            "state of 10 000 nested arrays",
            "state = ($3::jsonb)::json",
            nested(10_000),
        ),
        case_with(
            "state with 10 000 nested arrays in a field",
            "state = (jsonb_set(state::jsonb, '{value}', $3::jsonb))::json",
            nested(10_000),
        ),
        case_with(
            "state of 5 MB that decodes",
            "state = (state::jsonb || jsonb_build_object('pad', $3::text))::json",
            big_pad(),
        ),
        case_with(
            "state of 5 MB of the wrong shape",
            "state = ($3::jsonb)::json",
            big_array(),
        ),
        case("version 0", "version = 0"),
        case("version -1", "version = -1"),
        case("version i64::MIN", "version = -9223372036854775808"),
        case("version beyond the stream's head", "version = 15"),
        case("version i64::MAX", "version = 9223372036854775807"),
        case(
            "version beyond the head and state null",
            "version = 11, state = 'null'",
        ),
        case("schema_version -1", "schema_version = -1"),
        case("schema_version 0", "schema_version = 0"),
        case("schema_version above the code's", "schema_version = 2"),
        case("schema_version i32::MAX", "schema_version = 2147483647"),
        case("schema_version i32::MIN", "schema_version = -2147483648"),
        case("created_at 'infinity'", "created_at = 'infinity'"),
        case("created_at '-infinity'", "created_at = '-infinity'"),
        case(
            "created_at in the year 294276",
            "created_at = '294276-01-01'::timestamptz",
        ),
        case(
            "created_at in 4713 BC",
            "created_at = '4713-01-01 00:00:00+00 BC'::timestamptz",
        ),
        case(
            "aggregate_type in upper case",
            "aggregate_type = upper(aggregate_type)",
        ),
        case(
            "aggregate_type with a trailing space",
            "aggregate_type = aggregate_type || ' '",
        ),
        case(
            "aggregate_id of another aggregate",
            "aggregate_id = gen_random_uuid()",
        ),
    ];
    cases.extend(compressed);
    cases
}

fn sqlite_cases() -> Vec<Case> {
    let compressed = compressed_cases()
        .into_iter()
        .map(|(name, frame)| case_with(name, "state = NULL, state_zstd = unhex(?3)", frame));
    let mut cases = vec![
        case("state not JSON", "state = '{not json'"),
        case("state empty text", "state = ''"),
        case(
            "state truncated",
            "state = substr(state, 1, length(state) - 3)",
        ),
        case("state a blob", "state = x'7b7d00ff'"),
        case("state an integer", "state = 42"),
        case(
            "state of the wrong shape",
            r#"state = '{"value":"not a number","applied":true}'"#,
        ),
        case("state null", "state = 'null'"),
        case(
            "state a JSON string holding the state",
            "state = json_quote(state)",
        ),
        case("state an empty object", "state = '{}'"),
        case(
            "state with an extra field",
            r#"state = json_set(state, '$.extra', json('[1,{"a":null}]'))"#,
        ),
        case(
            "state missing a field",
            "state = json_remove(state, '$.applied')",
        ),
        case(
            "state with a negative unsigned field",
            "state = json_set(state, '$.applied', -1)",
        ),
        case(
            "state with a duplicated field",
            r#"state = '{"value":1,"applied":10,"value":2}'"#,
        ),
        case(
            "state with a NUL escape",
            r#"state = '{"value":"\u0000","applied":10}'"#,
        ),
        case(
            "state with a lone surrogate",
            r#"state = '{"value":"\ud800","applied":10}'"#,
        ),
        case_with(
            "state of 10 000 nested arrays",
            "state = ?3",
            nested(10_000),
        ),
        case_with(
            "state of 100 000 unclosed arrays",
            "state = ?3",
            "[".repeat(100_000),
        ),
        case_with(
            "state of 5 MB that decodes",
            "state = json_set(state, '$.pad', ?3)",
            big_pad(),
        ),
        case_with(
            "state of 5 MB of the wrong shape",
            "state = ?3",
            big_array(),
        ),
        case("version 0", "version = 0"),
        case("version -1", "version = -1"),
        case("version i64::MIN", "version = -9223372036854775808"),
        case("version beyond the stream's head", "version = 15"),
        case("version i64::MAX", "version = 9223372036854775807"),
        case("version a real", "version = 5.5"),
        case("version a huge real", "version = 1e30"),
        case("version text", "version = 'ten'"),
        case("version a blob", "version = x'0a'"),
        case("schema_version -1", "schema_version = -1"),
        case("schema_version above the code's", "schema_version = 2"),
        case("schema_version i32::MAX", "schema_version = 2147483647"),
        case("schema_version above u32", "schema_version = 4294967297"),
        case("schema_version text", "schema_version = 'one'"),
        case("created_at garbage", "created_at = 'yesterday'"),
        case("created_at empty", "created_at = ''"),
        case("created_at 'infinity'", "created_at = 'infinity'"),
        case(
            "created_at in the year 294276",
            "created_at = '294276-01-01T00:00:00Z'",
        ),
        case(
            "created_at without a time zone",
            "created_at = '2026-01-01 00:00:00'",
        ),
        case("created_at an integer", "created_at = 0"),
        case("created_at a blob", "created_at = x'00'"),
        case(
            "aggregate_type in upper case",
            "aggregate_type = upper(aggregate_type)",
        ),
        case(
            "aggregate_id in upper case",
            "aggregate_id = upper(aggregate_id)",
        ),
        case(
            "aggregate_id without hyphens",
            "aggregate_id = replace(aggregate_id, '-', '')",
        ),
    ];
    cases.extend(compressed);
    cases
}

fn record(root: &mut AggregateRoot<Tally>) {
    for i in 0..EVENTS {
        if i % 3 == 2 {
            root.record(Multiplied { by: -2 });
        } else {
            root.record(Added { n: i as i64 + 1 });
        }
    }
}

/// What one load gave, or why it gave nothing.
async fn load_bounded(
    repo: &AggregateRepository<Tally>,
    id: Uuid,
) -> Result<AggregateRoot<Tally>, String> {
    let repo = repo.clone();
    // A task of its own: a panic in the load is reported as this case's failure.
    let task = tokio::spawn(async move { tokio::time::timeout(LOAD_TIMEOUT, repo.load(id)).await });
    match task.await {
        Ok(Ok(Ok(root))) => Ok(root),
        Ok(Ok(Err(e))) => Err(format!("load failed: {e}")),
        Ok(Err(_)) => Err(format!("load still running after {LOAD_TIMEOUT:?}")),
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(format!("load panicked: {message}"))
        }
        Err(e) => Err(format!("load task failed: {e}")),
    }
}

/// Runs every case; `corrupt` runs one case's `UPDATE` on the snapshot row of an
/// aggregate. Returns the failures.
async fn run<F, Fut, E>(
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
    cases: Vec<Case>,
    corrupt: F,
) -> Vec<String>
where
    F: Fn(Uuid, &'static str, Option<String>) -> Fut,
    Fut: Future<Output = Result<u64, E>>,
    E: Debug,
{
    assert!(cases.len() >= 12, "at least 12 kinds of corruption");
    let repo = Tally::repository(events.clone(), snapshots.clone());
    let replay_only = AggregateRepository::<Tally>::new(events.clone());
    let mut failures = Vec::new();
    for Case { name, set, arg } in cases {
        let mut root = repo.create_new(Uuid::new_v4());
        record(&mut root);
        repo.save(&mut root).await.expect("save");
        let id = root.id();
        repo.create_snapshot(&mut root)
            .await
            .unwrap_or_else(|e| panic!("{name}: create_snapshot: {e}"));
        match corrupt(id, set, arg).await {
            Ok(1) => {}
            other => panic!("{name}: the UPDATE changed one row: {other:?}"),
        }
        let want = replay_only.load(id).await.expect("full replay");
        assert_eq!(
            want.state(),
            root.state(),
            "{name}: the full replay is right"
        );
        for attempt in ["first", "second"] {
            match load_bounded(&repo, id).await {
                Ok(got) if got.state() == want.state() && got.version() == EVENTS => {}
                Ok(got) => failures.push(format!(
                    "{name} ({attempt} load): wrong aggregate: version {} state {:?}, \
                     expected version {EVENTS} state {:?}",
                    got.version(),
                    got.state(),
                    want.state()
                )),
                Err(e) => failures.push(format!("{name} ({attempt} load): {e}")),
            }
        }
    }
    failures
}

fn assert_no_failures(backend: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{backend}: {} loads broke the rule:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_corrupt_snapshot_rows_are_replayed() {
    let Some(url) = database_url() else { return };
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    let pool = store.pool().clone();
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(PostgresSnapshotStore::new(pool.clone()));
    let failures = run(events, snapshots, postgres_cases(), |id, set, arg| {
        let pool = pool.clone();
        async move {
            let sql = format!(
                "UPDATE snapshots SET {set} WHERE aggregate_id = $1 AND aggregate_type = $2"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(Tally::TYPE);
            if let Some(arg) = arg {
                query = query.bind(arg);
            }
            query.execute(&pool).await.map(|done| done.rows_affected())
        }
    })
    .await;
    store.close().await;
    assert_no_failures("PostgreSQL", &failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_corrupt_snapshot_rows_are_replayed() {
    let dir = TempDir::new().expect("a temporary directory");
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .expect("open a SQLite file");
    let pool = store.pool().clone();
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(SqliteSnapshotStore::new(pool.clone()));
    let failures = run(events, snapshots, sqlite_cases(), |id, set, arg| {
        let pool = pool.clone();
        async move {
            let sql = format!(
                "UPDATE snapshots SET {set} WHERE aggregate_id = ?1 AND aggregate_type = ?2"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.to_string())
                .bind(Tally::TYPE);
            if let Some(arg) = arg {
                query = query.bind(arg);
            }
            query.execute(&pool).await.map(|done| done.rows_affected())
        }
    })
    .await;
    store.close().await;
    assert_no_failures("SQLite", &failures);
}
