//! Publishes a SQLite store's feed to JetStream as a subscription, to the end of the
//! feed, reporting every committed batch.
//!
//! Used by the killed-publisher test, which kills it mid-stream and starts it again.
//! Reads `EVENTS_DB` (the SQLite file), `NATS_URL`, `NATS_PREFIX`, `SUBSCRIPTION` and
//! `BATCH_SIZE` from the environment; prints `committed <position>` after each batch
//! commits, then `done <stored> <duplicates>`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use eventsource::feed::{Checkpoint, FeedEvent};
use eventsource::nats::JetStreamPublisher;
use eventsource::subscription::{Consumer, Subscription};
use eventsource::{BoxError, SqliteEventStore};

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// The publisher, saying when each batch committed.
struct Reporting(JetStreamPublisher);

#[eventsource::async_trait]
impl<C: Send + ?Sized> Consumer<C> for Reporting {
    fn event_types(&self) -> Option<Vec<String>> {
        <JetStreamPublisher as Consumer<C>>::event_types(&self.0)
    }

    async fn consume(&mut self, conn: &mut C, event: &FeedEvent) -> Result<(), BoxError> {
        self.0.consume(conn, event).await
    }

    async fn before_commit(&mut self, conn: &mut C) -> Result<(), BoxError> {
        <JetStreamPublisher as Consumer<C>>::before_commit(&mut self.0, conn).await
    }

    async fn committed(&mut self, checkpoint: Checkpoint) -> Result<(), BoxError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "committed {}", checkpoint.position())?;
        out.flush()?;
        Ok(())
    }
}

async fn run() -> Result<(), String> {
    let path = var("EVENTS_DB")?;
    let url = var("NATS_URL")?;
    let prefix = var("NATS_PREFIX")?;
    let name = var("SUBSCRIPTION")?;
    let batch: usize = var("BATCH_SIZE")?
        .parse()
        .map_err(|e| format!("BATCH_SIZE: {e}"))?;
    let store = SqliteEventStore::open(&path)
        .await
        .map_err(|e| e.to_string())?;
    let client = async_nats::connect(&url).await.map_err(|e| e.to_string())?;
    let context = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client);
    let publisher = JetStreamPublisher::new(context, prefix).map_err(|e| e.to_string())?;
    let Reporting(publisher) = Subscription::new(name, store.clone())
        .batch_size(batch)
        .catch_up_with(Reporting(publisher))
        .await
        .map_err(|e| e.to_string())?;
    let stats = publisher.stats();
    println!("done {} {}", stats.stored, stats.duplicates);
    store.close().await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("nats-publish-worker: {message}");
            ExitCode::FAILURE
        }
    }
}
