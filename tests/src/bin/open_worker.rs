//! Opens one SQLite database file `OPEN_COUNT` times at once, each open with its own
//! pool, then closes them all.
//!
//! Used by the multi-process open test, which starts several of these on one fresh file.
//! Reads `SQLITE_PATH` and `OPEN_COUNT` from the environment; exits with status 0 when
//! every open succeeded, else prints the first error on stderr.

use std::process::ExitCode;

use eventsource::SqliteEventStore;

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

async fn run() -> Result<(), String> {
    let path = var("SQLITE_PATH")?;
    let count: usize = var("OPEN_COUNT")?
        .parse()
        .map_err(|e| format!("OPEN_COUNT: {e}"))?;
    let opens: Vec<_> = (0..count)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteEventStore::open(&path).await })
        })
        .collect();
    let mut first_error = None;
    for open in opens {
        match open.await.map_err(|e| e.to_string()) {
            Ok(Ok(store)) => store.close().await,
            Ok(Err(error)) => {
                first_error.get_or_insert(error.to_string());
            }
            Err(panic) => {
                first_error.get_or_insert(panic);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("open-worker: {message}");
            ExitCode::FAILURE
        }
    }
}
