//! Appends single events to one PostgreSQL stream from several tasks of one process,
//! each at the version it last read, and reports every attempt's outcome.
//!
//! Used by the four-process test. Reads `DATABASE_URL`, `APPEND_AGGREGATE_TYPE`,
//! `APPEND_AGGREGATE_ID`, `APPEND_TASKS` (tasks in this process) and `APPEND_ATTEMPTS`
//! (appends each task tries) from the environment; prints `ready`, waits for a line on
//! stdin, then, once every task is done, prints one line per attempt: `ok <version>
//! <event id>` for a version won, `conflict <event id>` for one lost. Any other error
//! ends the process with a failure.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use eventsource::{Error, EventStore, ExpectedVersion, PostgresEventStore};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn number(name: &str) -> Result<usize, String> {
    var(name)?.parse().map_err(|e| format!("{name}: {e}"))
}

async fn task(
    store: PostgresEventStore,
    aggregate_type: String,
    id: Uuid,
    attempts: usize,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::with_capacity(attempts);
    for _ in 0..attempts {
        let head = store
            .stream_version(&aggregate_type, id)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        let event = eventsource_tests::event("Appended");
        match store
            .append(
                &aggregate_type,
                id,
                ExpectedVersion::Exact(head),
                std::slice::from_ref(&event),
            )
            .await
        {
            Ok(version) => lines.push(format!("ok {version} {}", event.event_id)),
            Err(Error::Conflict { .. }) => lines.push(format!("conflict {}", event.event_id)),
            Err(other) => return Err(format!("append at {head}: {other}")),
        }
    }
    Ok(lines)
}

async fn run() -> Result<(), String> {
    let url = var("DATABASE_URL")?;
    let aggregate_type = var("APPEND_AGGREGATE_TYPE")?;
    let id = Uuid::parse_str(&var("APPEND_AGGREGATE_ID")?).map_err(|e| e.to_string())?;
    let tasks = number("APPEND_TASKS")?;
    let attempts = number("APPEND_ATTEMPTS")?;
    let options = PgConnectOptions::from_str(&url).map_err(|e| e.to_string())?;
    // Fewer connections than tasks: four processes stay well under the server's limit.
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| e.to_string())?;
    let store = PostgresEventStore::new(pool);

    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready")
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    let mut go = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut go)
        .map_err(|e| e.to_string())?;

    let handles: Vec<_> = (0..tasks)
        .map(|_| tokio::spawn(task(store.clone(), aggregate_type.clone(), id, attempts)))
        .collect();
    let mut lines = Vec::new();
    for handle in handles {
        lines.extend(handle.await.map_err(|e| e.to_string())??);
    }
    for line in lines {
        writeln!(stdout, "{line}").map_err(|e| e.to_string())?;
    }
    stdout.flush().map_err(|e| e.to_string())?;
    store.close().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("append-tasks-worker: {message}");
            ExitCode::FAILURE
        }
    }
}
