//! Four OS processes of sixteen tasks each append to one PostgreSQL aggregate, every
//! append at the version its task last read: each version is won exactly once, the
//! stream has no gap and no duplicate, every acknowledged event is stored at its
//! version, and every other attempt was answered `Conflict` (and wrote nothing).
//!
//! Each process is the `append-tasks-worker` binary of this crate. All report `ready`,
//! then all are released together; each prints the outcome of every attempt.
//!
//! Needs `DATABASE_URL`, e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable`.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource::{EventStoreExt, PostgresEventStore};
use eventsource_tests::fixtures::database_url;
use eventsource_tests::unique_type;
use uuid::Uuid;

const PROCESSES: usize = 4;
const TASKS: usize = 16;
const ATTEMPTS: usize = 8;
/// The whole test, from connecting to the last check.
const LIMIT: Duration = Duration::from_secs(120);

/// What one worker printed: the versions it won, the events it lost.
#[derive(Default)]
struct Report {
    won: Vec<(u64, Uuid)>,
    lost: Vec<Uuid>,
}

fn spawn_worker(url: &str, aggregate_type: &str, id: Uuid) -> Child {
    Command::new(env!("CARGO_BIN_EXE_append-tasks-worker"))
        .env("DATABASE_URL", url)
        .env("APPEND_AGGREGATE_TYPE", aggregate_type)
        .env("APPEND_AGGREGATE_ID", id.to_string())
        .env("APPEND_TASKS", TASKS.to_string())
        .env("APPEND_ATTEMPTS", ATTEMPTS.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the append-tasks worker")
}

/// Starts the workers, releases them together, and collects their reports.
async fn run_workers(
    url: String,
    ty: String,
    id: Uuid,
    children: Arc<Mutex<Vec<Child>>>,
) -> Vec<Report> {
    let mut outs = Vec::new();
    for _ in 0..PROCESSES {
        let mut child = spawn_worker(&url, &ty, id);
        outs.push(BufReader::new(child.stdout.take().expect("worker stdout")));
        children.lock().expect("children").push(child);
    }
    // Every worker connected and waiting.
    let mut readers = Vec::new();
    for mut out in outs {
        readers.push(tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            out.read_line(&mut line)
                .expect("read the worker's first line");
            assert_eq!(line.trim(), "ready", "the worker starts with `ready`");
            out
        }));
    }
    let mut ready = Vec::new();
    for r in readers {
        ready.push(r.await.expect("a worker did not get ready"));
    }
    for child in children.lock().expect("children").iter_mut() {
        let stdin = child.stdin.as_mut().expect("worker stdin");
        stdin.write_all(b"go\n").expect("release the worker");
        stdin.flush().expect("flush");
    }
    let mut reading = Vec::new();
    for (worker, out) in ready.into_iter().enumerate() {
        reading.push(tokio::task::spawn_blocking(move || {
            let mut report = Report::default();
            for line in out.lines() {
                let line = line.expect("worker output");
                let mut words = line.split(' ');
                match (words.next(), words.next(), words.next(), words.next()) {
                    (Some("ok"), Some(version), Some(event_id), None) => report.won.push((
                        version.parse().expect("a version"),
                        Uuid::parse_str(event_id).expect("an event id"),
                    )),
                    (Some("conflict"), Some(event_id), None, None) => report
                        .lost
                        .push(Uuid::parse_str(event_id).expect("an event id")),
                    _ => panic!("worker {worker}: unexpected line {line:?}"),
                }
            }
            report
        }));
    }
    let mut reports = Vec::new();
    for r in reading {
        reports.push(r.await.expect("reading a worker's output"));
    }
    let mut children = std::mem::take(&mut *children.lock().expect("children"));
    for (worker, child) in children.iter_mut().enumerate() {
        let status = tokio::task::block_in_place(|| child.wait()).expect("wait for the worker");
        assert!(
            status.success(),
            "worker {worker} failed (an attempt that was neither won nor a conflict?): {status}"
        );
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_sixteen_tasks_one_aggregate() {
    let Some(url) = database_url() else { return };
    // Create the tables before the workers race to.
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    let ty = unique_type("FourProcesses");
    let id = Uuid::new_v4();

    let children = Arc::new(Mutex::new(Vec::new()));
    let reports = match tokio::time::timeout(
        LIMIT,
        run_workers(url.clone(), ty.clone(), id, children.clone()),
    )
    .await
    {
        Ok(reports) => reports,
        Err(_) => {
            for child in children.lock().expect("children").iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            panic!("the workers did not finish within {LIMIT:?}");
        }
    };

    let mut winners: BTreeMap<u64, (usize, Uuid)> = BTreeMap::new();
    let mut losers: HashSet<Uuid> = HashSet::new();
    for (worker, report) in reports.iter().enumerate() {
        assert_eq!(
            report.won.len() + report.lost.len(),
            TASKS * ATTEMPTS,
            "worker {worker}: every attempt was won or answered Conflict"
        );
        for (version, event_id) in &report.won {
            if let Some((other, _)) = winners.insert(*version, (worker, *event_id)) {
                panic!("version {version} was won by worker {other} and worker {worker}");
            }
        }
        losers.extend(report.lost.iter().copied());
    }
    let total = winners.len() as u64;
    assert!(total > 0, "some attempt won");
    assert_eq!(
        winners.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "the versions won are 1..=n, each once"
    );
    eprintln!(
        "{} attempts: {total} won, {} conflicts",
        PROCESSES * TASKS * ATTEMPTS,
        losers.len()
    );

    let stored = tokio::time::timeout(LIMIT, store.load_stream(&ty, id, 1))
        .await
        .expect("read the stream in time")
        .expect("read the stream");
    let versions: Vec<u64> = stored.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=total).collect::<Vec<_>>(),
        "the stream holds exactly the versions won, without gaps"
    );
    let mut ids = HashSet::new();
    for e in &stored {
        assert!(ids.insert(e.event_id), "event {} stored twice", e.event_id);
        assert_eq!(
            Some(e.event_id),
            winners.get(&e.version).map(|w| w.1),
            "version {} holds the winner's event",
            e.version
        );
        assert!(
            !losers.contains(&e.event_id),
            "event {} was answered Conflict, yet it is stored",
            e.event_id
        );
    }
    store.close().await;
}
