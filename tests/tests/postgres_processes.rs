//! Two OS processes append to one PostgreSQL stream at once: exactly one wins each
//! version, and the stream has no gap.
//!
//! Each process is the `append-worker` binary of this crate. Both report "ready", then
//! both are released together, and each appends until it has won its share of versions.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use eventsource::{EventStoreExt, PostgresEventStore};
use eventsource_tests::fixtures::database_url;
use eventsource_tests::unique_type;
use uuid::Uuid;

const EACH: usize = 25;

fn spawn_worker(
    url: &str,
    aggregate_type: &str,
    id: Uuid,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_append-worker"))
        .env("DATABASE_URL", url)
        .env("APPEND_AGGREGATE_TYPE", aggregate_type)
        .env("APPEND_AGGREGATE_ID", id.to_string())
        .env("APPEND_COUNT", EACH.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the append worker");
    let mut out = BufReader::new(child.stdout.take().expect("worker stdout"));
    let mut line = String::new();
    out.read_line(&mut line)
        .expect("read the worker's first line");
    assert_eq!(line.trim(), "ready", "the worker starts with `ready`");
    (child, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_append_to_one_stream() {
    let Some(url) = database_url() else { return };
    // Create the tables before the workers race to.
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    let ty = unique_type("TwoProcesses");
    let id = Uuid::new_v4();

    let mut workers = vec![spawn_worker(&url, &ty, id), spawn_worker(&url, &ty, id)];
    for (child, _) in &mut workers {
        let stdin = child.stdin.as_mut().expect("worker stdin");
        stdin.write_all(b"go\n").expect("release the worker");
        stdin.flush().expect("flush");
    }

    let mut winners: BTreeMap<u64, (usize, Uuid)> = BTreeMap::new();
    for (worker, (mut child, out)) in workers.into_iter().enumerate() {
        let mut won = 0;
        for line in out.lines() {
            let line = line.expect("worker output");
            let (version, event_id) = line.split_once(' ').expect("`version event_id`");
            let version: u64 = version.parse().expect("a version");
            let event_id = Uuid::parse_str(event_id).expect("an event id");
            if let Some((other, _)) = winners.insert(version, (worker, event_id)) {
                panic!("version {version} was won by worker {other} and worker {worker}");
            }
            won += 1;
        }
        let status = child.wait().expect("wait for the worker");
        assert!(status.success(), "worker {worker} failed: {status}");
        assert_eq!(won, EACH, "worker {worker} won its share");
    }

    let total = 2 * EACH as u64;
    assert_eq!(
        winners.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "every version won exactly once"
    );
    let stored = store
        .load_stream(&ty, id, 1)
        .await
        .expect("read the stream");
    assert_eq!(stored.len() as u64, total, "no gap, nothing lost");
    for e in stored {
        assert_eq!(
            Some(e.event_id),
            winners.get(&e.version).map(|w| w.1),
            "version {} holds the winner's event",
            e.version
        );
    }
    store.close().await;
}
