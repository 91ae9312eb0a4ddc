//! Many pools and processes opening one SQLite file at once: every open succeeds, and
//! the migrations are applied exactly once, in the history sqlx's migrator keeps.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use eventsource::migrations::MIGRATIONS_TABLE;
use eventsource::{Error, EventStore, EventStoreExt, ExpectedVersion, SqliteEventStore};
use eventsource_tests::{TempDir, events, unique_type};
use uuid::Uuid;

/// Far above what any of these tests needs: a hang fails the test instead of the run.
const DEADLINE: Duration = Duration::from_secs(180);

/// The migrations embedded in the crate, as sqlx's own migrator reads them.
fn sqlx_migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("../migrations/sqlite");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// The history table's rows: (version, checksum, installed_on, execution_time).
async fn history(pool: &sqlx::SqlitePool) -> Vec<(i64, Vec<u8>, String, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, checksum, CAST(installed_on AS TEXT), execution_time \
         FROM {MIGRATIONS_TABLE} ORDER BY version"
    )))
    .fetch_all(pool)
    .await
    .expect("read the migration history")
}

/// Each embedded migration is recorded exactly once, with sqlx's checksum.
async fn assert_migrated_once(pool: &sqlx::SqlitePool) {
    let recorded: Vec<(i64, Vec<u8>)> = history(pool)
        .await
        .into_iter()
        .map(|(version, checksum, _, _)| (version, checksum))
        .collect();
    let embedded: Vec<(i64, Vec<u8>)> = sqlx_migrator()
        .iter()
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect();
    assert_eq!(recorded, embedded);
}

/// An append and a read through the store work.
async fn assert_usable(store: &SqliteEventStore) {
    let ty = unique_type("Opened");
    let id = Uuid::new_v4();
    let version = store
        .append(&ty, id, ExpectedVersion::Exact(0), &events(3))
        .await
        .expect("append");
    assert_eq!(version, 3);
    let read = store.load_stream(&ty, id, 1).await.expect("read");
    assert_eq!(read.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_opens_in_one_process_all_succeed() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("fresh.db");
    let opened = tokio::time::timeout(DEADLINE, async {
        // 16 tasks, each opening the file 10 times at once: 160 pools.
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move {
                    let opens: Vec<_> = (0..10)
                        .map(|_| tokio::spawn(SqliteEventStore::open(path.clone())))
                        .collect();
                    let mut stores = Vec::new();
                    for open in opens {
                        stores.push(open.await.expect("open task"));
                    }
                    stores
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.extend(task.await.expect("task"));
        }
        results
    })
    .await
    .expect("160 opens finish within the deadline");

    let failures: Vec<String> = opened
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 160 opens failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    let stores: Vec<SqliteEventStore> = opened.into_iter().map(Result::unwrap).collect();
    assert_migrated_once(stores[0].pool()).await;
    assert_usable(&stores[0]).await;
    assert_usable(&stores[159]).await;
    for store in &stores {
        store.close().await;
    }
}

/// Waits for every child until the deadline, killing the ones still running then.
fn wait_all(mut children: Vec<Child>) -> Vec<Result<std::process::Output, String>> {
    let started = Instant::now();
    let mut done = Vec::new();
    while let Some(mut child) = children.pop() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => {
                    done.push(child.wait_with_output().map_err(|e| e.to_string()));
                    break;
                }
                Ok(None) if started.elapsed() > DEADLINE => {
                    let _ = child.kill();
                    let _ = child.wait();
                    done.push(Err("still running at the deadline".to_owned()));
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    done.push(Err(e.to_string()));
                    break;
                }
            }
        }
    }
    done
}

#[tokio::test]
async fn concurrent_first_opens_from_several_processes_all_succeed() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("fresh.db");
    let children: Vec<Child> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_open-worker"))
                .env("SQLITE_PATH", &path)
                .env("OPEN_COUNT", "20")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start open-worker")
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || wait_all(children))
        .await
        .expect("wait for the workers");
    for output in outputs {
        let output = output.expect("open-worker ran");
        assert!(
            output.status.success(),
            "open-worker failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let store = SqliteEventStore::open(&path)
        .await
        .expect("open afterwards");
    assert_migrated_once(store.pool()).await;
    assert_usable(&store).await;
    store.close().await;
}

/// A pool on a file, without the crate's own open.
async fn plain_pool(path: &Path) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    sqlx::SqlitePool::connect_with(options)
        .await
        .expect("plain pool")
}

#[tokio::test]
async fn a_database_migrated_by_sqlx_is_recognised_as_migrated() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("by-sqlx.db");
    let pool = plain_pool(&path).await;
    sqlx_migrator().run(&pool).await.expect("sqlx migrates");
    let before = history(&pool).await;
    pool.close().await;

    let store = SqliteEventStore::open(&path).await.expect("open");
    assert_eq!(history(store.pool()).await, before, "nothing applied again");
    assert_migrated_once(store.pool()).await;
    assert_usable(&store).await;
    store.close().await;
}

#[tokio::test]
async fn a_database_migrated_by_the_store_is_recognised_by_sqlx() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("by-store.db");
    let store = SqliteEventStore::open(&path).await.expect("open");
    let before = history(store.pool()).await;
    sqlx_migrator()
        .run(store.pool())
        .await
        .expect("sqlx finds nothing to do");
    assert_eq!(history(store.pool()).await, before, "nothing applied again");
    store.close().await;
}

#[tokio::test]
async fn a_changed_checksum_is_an_error_naming_the_version_and_the_path() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("tampered.db");
    let store = SqliteEventStore::open(&path).await.expect("open");
    let version = sqlx_migrator().iter().next().expect("a migration").version;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {MIGRATIONS_TABLE} SET checksum = x'00' WHERE version = ?1"
    )))
    .bind(version)
    .execute(store.pool())
    .await
    .expect("tamper with the checksum");
    store.close().await;

    let reopened = SqliteEventStore::open(&path).await;
    match reopened {
        Err(error @ Error::Backend { .. }) => {
            let message = error.to_string();
            assert!(message.contains(&version.to_string()), "{message}");
            assert!(message.contains("checksum"), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_open_that_fails_names_the_path() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("no-such-dir").join("x.db");
    let error = SqliteEventStore::open(&path)
        .await
        .expect_err("the directory does not exist");
    let message = error.to_string();
    assert!(
        message.contains(&format!("cannot open SQLite database `{}`", path.display())),
        "{message}"
    );
}
