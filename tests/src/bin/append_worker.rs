//! Appends events to one PostgreSQL stream, one at a time at the version it last read,
//! retrying on conflict, until it has won `APPEND_COUNT` versions.
//!
//! Used by the two-process test. Reads `DATABASE_URL`, `APPEND_AGGREGATE_TYPE`,
//! `APPEND_AGGREGATE_ID` and `APPEND_COUNT` from the environment; prints `ready`, waits
//! for a line on stdin, then prints `<version> <event id>` for every version it won.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use eventsource::{Error, EventStore, ExpectedVersion, PostgresEventStore};
use uuid::Uuid;

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

async fn run() -> Result<(), String> {
    let url = var("DATABASE_URL")?;
    let aggregate_type = var("APPEND_AGGREGATE_TYPE")?;
    let id = Uuid::parse_str(&var("APPEND_AGGREGATE_ID")?).map_err(|e| e.to_string())?;
    let count: usize = var("APPEND_COUNT")?
        .parse()
        .map_err(|e| format!("APPEND_COUNT: {e}"))?;
    let store = PostgresEventStore::connect(&url)
        .await
        .map_err(|e| e.to_string())?;

    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready")
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    let mut go = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut go)
        .map_err(|e| e.to_string())?;

    let mut won = 0;
    while won < count {
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
            Ok(version) => {
                writeln!(stdout, "{version} {}", event.event_id).map_err(|e| e.to_string())?;
                won += 1;
            }
            Err(Error::Conflict { .. }) => {}
            Err(other) => return Err(other.to_string()),
        }
    }
    stdout.flush().map_err(|e| e.to_string())?;
    store.close().await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("append-worker: {message}");
            ExitCode::FAILURE
        }
    }
}
