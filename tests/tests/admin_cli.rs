//! The admin command line end to end: the `admin` example (an application's binary
//! embedding `eventsource::cli` with two aggregate types) run as a process against a
//! fresh PostgreSQL database holding thousands of aggregates, its output and its effects
//! checked.
//!
//! The test builds the example with the cargo that runs it. Needs `DATABASE_URL`, e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable`; without it
//! the test says so and passes, unless `CI` is set, where it fails.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use eventsource_tests::fixtures::FreshDatabase;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Orders with a short history, and with a long one.
const SHORT_ORDERS: i64 = 2_950;
const LONG_ORDERS: i64 = 50;
const LONG_HISTORY: i64 = 300;
/// Accounts, each with a long history.
const ACCOUNTS: i64 = 20;
const ACCOUNT_HISTORY: i64 = 600;

/// Builds the `admin` example and returns its path.
fn admin_binary() -> PathBuf {
    // The test binary is <target>/<profile>/deps/admin_cli-<hash>.
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the profile directory");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut build = Command::new(env!("CARGO"));
    build.args([
        "build",
        "-q",
        "-p",
        "eventsource-examples",
        "--example",
        "admin",
    ]);
    if release {
        build.arg("--release");
    }
    let target_dir = profile_dir.parent().expect("the target directory");
    let status = build
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "the admin example builds");
    profile_dir
        .join("examples")
        .join(format!("admin{}", std::env::consts::EXE_SUFFIX))
}

/// Runs the admin binary with `args` against `url`, its input not a terminal.
fn run(binary: &PathBuf, url: &str, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("CI")
        .stdin(Stdio::null())
        .output()
        .expect("run the admin binary")
}

/// The JSON documents of an output, one per line.
fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a JSON line: {l:?}: {e}")))
        .collect()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn succeeded(out: Output) -> Output {
    assert!(
        out.status.success(),
        "the command succeeds: {}",
        describe(&out)
    );
    out
}

/// Writes `aggregates` streams of `history` events of one type in one statement.
async fn seed(
    pool: &PgPool,
    aggregate_type: &str,
    event_type: &str,
    payload: &str,
    aggregates: i64,
    history: i64,
) {
    sqlx::query(
        "WITH a AS MATERIALIZED (SELECT gen_random_uuid() AS id FROM generate_series(1, $4)) \
         INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
         event_version, payload, metadata, occurred_at) \
         SELECT gen_random_uuid(), a.id, $1, v, $2, 1, $3::json, '{}', now() \
         FROM a, generate_series(1, $5) v ORDER BY a.id, v",
    )
    .bind(aggregate_type)
    .bind(event_type)
    .bind(payload)
    .bind(aggregates)
    .bind(history)
    .execute(pool)
    .await
    .expect("seed events");
}

async fn snapshot_count(pool: &PgPool, aggregate_type: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM snapshots WHERE aggregate_type = $1")
        .bind(aggregate_type)
        .fetch_one(pool)
        .await
        .expect("count snapshots")
}

/// The `status --json` document of one aggregate type.
fn status_of<'a>(lines: &'a [Value], aggregate_type: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["aggregate_type"] == aggregate_type)
        .unwrap_or_else(|| panic!("a status line for {aggregate_type}: {lines:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_reports_backfills_verifies_and_invalidates() {
    let Some(db) = FreshDatabase::create("admin_cli").await else {
        return;
    };
    let url = db.url().to_owned();
    let admin = admin_binary();

    succeeded(run(&admin, &url, &["migrate"]));
    let pool = PgPool::connect(&url).await.expect("connect");
    seed(
        &pool,
        "Order",
        "ItemAdded",
        r#"{"cents":250}"#,
        SHORT_ORDERS,
        3,
    )
    .await;
    seed(
        &pool,
        "Order",
        "ItemAdded",
        r#"{"cents":100}"#,
        LONG_ORDERS,
        LONG_HISTORY,
    )
    .await;
    seed(
        &pool,
        "Account",
        "Deposited",
        r#"{"cents":7}"#,
        ACCOUNTS,
        ACCOUNT_HISTORY,
    )
    .await;

    // The coverage report.
    let status = json_lines(&succeeded(run(&admin, &url, &["status", "--json"])));
    assert_eq!(status.len(), 2, "one line per aggregate type: {status:?}");
    let order = status_of(&status, "Order");
    assert_eq!(order["aggregates"], SHORT_ORDERS + LONG_ORDERS);
    assert_eq!(order["with_snapshot"], 0);
    assert_eq!(order["without_snapshot"], SHORT_ORDERS + LONG_ORDERS);
    assert_eq!(order["stale"], LONG_ORDERS, "stale past 100 events");
    assert_eq!(order["max_events_since_snapshot"], LONG_HISTORY);
    assert_eq!(
        order["events_since_snapshots"],
        SHORT_ORDERS * 3 + LONG_ORDERS * LONG_HISTORY
    );
    assert_eq!(status_of(&status, "Account")["stale"], ACCOUNTS);
    let human = succeeded(run(&admin, &url, &["status"]));
    let table = String::from_utf8_lossy(&human.stdout);
    assert!(table.starts_with("type"), "a table for people: {table}");
    assert!(table.contains("Order"), "{table}");

    // Backfill: the long histories get snapshots, the short ones do not.
    let backfill = json_lines(&succeeded(run(
        &admin,
        &url,
        &[
            "snapshots",
            "backfill",
            "Order",
            "--min-events",
            "100",
            "--concurrency",
            "4",
            "--json",
        ],
    )));
    assert_eq!(backfill.len(), 1, "{backfill:?}");
    assert_eq!(backfill[0]["total"], LONG_ORDERS);
    assert_eq!(backfill[0]["snapshotted"], LONG_ORDERS);
    assert_eq!(backfill[0]["failures"], Value::Array(vec![]));
    assert_eq!(snapshot_count(&pool, "Order").await, LONG_ORDERS);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT version FROM snapshots WHERE aggregate_type = 'Order'")
            .fetch_all(&pool)
            .await
            .expect("snapshot versions");
    assert_eq!(versions, [LONG_HISTORY], "each at its stream's last event");
    let again = json_lines(&succeeded(run(
        &admin,
        &url,
        &[
            "snapshots",
            "backfill",
            "Order",
            "--min-events",
            "100",
            "--json",
        ],
    )));
    assert_eq!(
        again[0]["total"], 0,
        "a second run finds nothing behind: {again:?}"
    );
    let accounts = json_lines(&succeeded(run(
        &admin,
        &url,
        &[
            "snapshots",
            "backfill",
            "Account",
            "--min-events",
            "500",
            "--concurrency",
            "16",
            "--json",
        ],
    )));
    assert_eq!(accounts[0]["snapshotted"], ACCOUNTS);
    let status = json_lines(&succeeded(run(&admin, &url, &["status", "--json"])));
    let order = status_of(&status, "Order");
    assert_eq!(
        (order["with_snapshot"].clone(), order["stale"].clone()),
        (LONG_ORDERS.into(), 0.into())
    );
    assert_eq!(order["schema_versions"][0]["schema_version"], 1);
    assert_eq!(order["schema_versions"][0]["snapshots"], LONG_ORDERS);
    assert_eq!(
        status_of(&status, "Account")["schema_versions"][0]["schema_version"],
        2
    );

    // Verify: clean, then one snapshot changed to another valid state is found.
    succeeded(run(
        &admin,
        &url,
        &["snapshots", "verify", "Order", "--json"],
    ));
    let corrupted: Uuid = sqlx::query_scalar(
        "UPDATE snapshots SET state = '{\"items\":1,\"total_cents\":100,\"placed\":false}' \
         WHERE id = (SELECT id FROM snapshots WHERE aggregate_type = 'Order' \
                     ORDER BY aggregate_id, version DESC LIMIT 1) \
         RETURNING aggregate_id",
    )
    .fetch_one(&pool)
    .await
    .expect("corrupt one snapshot");
    let verify = run(&admin, &url, &["snapshots", "verify", "Order", "--json"]);
    assert_eq!(
        verify.status.code(),
        Some(1),
        "a finding fails the command: {}",
        describe(&verify)
    );
    let report = &json_lines(&verify)[0];
    assert_eq!(report["checked"], LONG_ORDERS);
    assert_eq!(report["matching"], LONG_ORDERS - 1);
    let differing = report["differing"].as_array().expect("differing");
    assert_eq!(differing.len(), 1, "{report}");
    assert_eq!(differing[0]["aggregate_id"], corrupted.to_string());
    assert_eq!(differing[0]["path"], "/items");
    assert_eq!(
        (
            differing[0]["snapshot"].clone(),
            differing[0]["replayed"].clone()
        ),
        (1.into(), LONG_HISTORY.into())
    );
    let human = run(&admin, &url, &["snapshots", "verify", "Order"]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains(&corrupted.to_string()),
        "the table names it: {}",
        describe(&human)
    );

    // Invalidating every snapshot of a type is refused without --yes on a non-terminal.
    let refused = run(&admin, &url, &["snapshots", "invalidate", "Order"]);
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--yes"),
        "the message says to pass --yes: {}",
        describe(&refused)
    );
    assert_eq!(
        snapshot_count(&pool, "Order").await,
        LONG_ORDERS,
        "nothing deleted"
    );
    let bounded = json_lines(&succeeded(run(
        &admin,
        &url,
        &[
            "snapshots",
            "invalidate",
            "Account",
            "--below-schema",
            "2",
            "--json",
        ],
    )));
    assert_eq!(
        bounded[0]["deleted"], 0,
        "a schema bound needs no confirmation"
    );
    let deleted = json_lines(&succeeded(run(
        &admin,
        &url,
        &["snapshots", "invalidate", "Order", "--yes", "--json"],
    )));
    assert_eq!(deleted[0]["deleted"], LONG_ORDERS);
    assert_eq!(snapshot_count(&pool, "Order").await, 0);
    assert_eq!(snapshot_count(&pool, "Account").await, ACCOUNTS);

    // The feed, from a checkpoint, bounded.
    let tail = json_lines(&succeeded(run(
        &admin,
        &url,
        &["events", "tail", "--limit", "5", "--json"],
    )));
    assert_eq!(tail.len(), 5);
    let from = tail[2]["checkpoint"]
        .as_str()
        .expect("a checkpoint")
        .to_owned();
    let rest = json_lines(&succeeded(run(
        &admin,
        &url,
        &["events", "tail", "--from", &from, "--limit", "2", "--json"],
    )));
    assert_eq!(
        (rest[0]["event_id"].clone(), rest[1]["event_id"].clone()),
        (tail[3]["event_id"].clone(), tail[4]["event_id"].clone()),
        "--from goes on after the checkpoint"
    );

    // Subscriptions: none yet; a reset is dangerous and refused without --yes.
    let list = succeeded(run(&admin, &url, &["subscriptions", "list", "--json"]));
    assert!(json_lines(&list).is_empty());
    let reset = run(&admin, &url, &["subscriptions", "reset", "projector"]);
    assert!(!reset.status.success(), "{}", describe(&reset));
    assert!(String::from_utf8_lossy(&reset.stderr).contains("--yes"));

    // Bad arguments get clap's usage error.
    for args in [
        &["snapshots", "backfill", "Order", "--min-events", "many"][..],
        &["snapshots", "backfill", "Shipment"],
        &["snapshots", "frobnicate"],
        &["events", "tail", "--from", "nowhere"],
    ] {
        let bad = run(&admin, &url, args);
        assert_eq!(bad.status.code(), Some(2), "{args:?}: {}", describe(&bad));
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            stderr.starts_with("error:") && stderr.contains("--help"),
            "clap's message: {}",
            describe(&bad)
        );
    }

    pool.close().await;
    db.drop_database().await;
}
