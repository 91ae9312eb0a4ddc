//! `repo.execute` against the hand-written load → command → save loop it replaces, on
//! PostgreSQL: one command at a time, and 16 writers on one hot aggregate.
//!
//! ```sh
//! cargo run -p eventsource-bench --release --bin commands -- postgres://postgres@127.0.0.1:5432/bench
//! ```
//!
//! Prints a Markdown table: medians over interleaved rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource::command::{CommandError, ConflictRetry};
use eventsource::prelude::*;
use eventsource::{Error, PostgresEventStore};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deposited {
    pub cents: u64,
}

#[derive(DomainEvent, Clone, Debug)]
pub enum AccountEvent {
    Deposited(Deposited),
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "BenchAccount", event = AccountEvent)]
pub struct Account {
    pub cents: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.cents += e.cents;
    }
}

impl Account {
    fn deposit(&self, cents: u64) -> Result<Deposited, String> {
        if cents == 0 {
            return Err("nothing to deposit".into());
        }
        Ok(Deposited { cents })
    }
}

/// The loop every application wrote before `execute`: load, run, save, and on a
/// conflict load and run again, with the same backoff as `execute`'s default.
async fn hand_written(repo: &AggregateRepository<Account>, id: Uuid, cents: u64) -> u32 {
    let policy = ConflictRetry::default();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut root = repo.load(id).await.expect("load");
        root.execute(|a| a.deposit(cents)).expect("command");
        match repo.save(&mut root).await {
            Ok(()) => return attempts,
            Err(Error::Conflict { .. }) if attempts < 1_000 => {
                let wait = policy
                    .initial_backoff
                    .saturating_mul(1 << (attempts - 1).min(20))
                    .min(policy.max_backoff);
                let jitter = f64::from(Uuid::new_v4().as_u128() as u16) / f64::from(u16::MAX);
                tokio::time::sleep(wait.mul_f64(1.0 - jitter / 2.0)).await;
            }
            Err(e) => panic!("save: {e}"),
        }
    }
}

async fn with_execute(repo: &AggregateRepository<Account>, id: Uuid, cents: u64) -> u32 {
    match repo.execute(id, |a: &Account| a.deposit(cents)).await {
        Ok(done) => done.attempts,
        Err(CommandError::Conflict { attempts, .. }) => panic!("gave up after {attempts}"),
        Err(e) => panic!("execute: {e}"),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .expect("a PostgreSQL URL as argument or DATABASE_URL");
    let store = PostgresEventStore::connect(&url).await.expect("connect");
    let repo = AggregateRepository::<Account>::builder(Arc::new(store.clone()))
        .conflict_retry(ConflictRetry {
            max_attempts: 1_000,
            ..ConflictRetry::default()
        })
        .build()
        .expect("repository");

    // One command at a time on an aggregate of 10 events: interleaved, 7 rounds of 200.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..8 {
        let id = Uuid::new_v4();
        repo.execute_new(id, |a: &Account| a.deposit(1))
            .await
            .expect("create");
        for _ in 0..9 {
            with_execute(&repo, id, 1).await;
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..400 {
            let started = Instant::now();
            if i % 2 == 0 {
                with_execute(&repo, id, 1).await;
                a.push(started.elapsed());
            } else {
                hand_written(&repo, id, 1).await;
                b.push(started.elapsed());
            }
        }
        if round > 0 {
            ours.push(median(a));
            theirs.push(median(b));
        }
    }
    let (ours, theirs) = (median(ours), median(theirs));

    // 16 writers, 25 deposits each, on one hot aggregate: wall time for all 400.
    let (mut hot_ours, mut hot_theirs) = (Vec::new(), Vec::new());
    let (mut tries_ours, mut tries_theirs) = (0u32, 0u32);
    for round in 0..10 {
        for variant in [round % 2, 1 - round % 2] {
            let id = Uuid::new_v4();
            repo.execute_new(id, |a: &Account| a.deposit(1))
                .await
                .expect("create");
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let repo = repo.clone();
                tasks.push(tokio::spawn(async move {
                    let mut tries = 0;
                    for _ in 0..25 {
                        tries += if variant == 0 {
                            with_execute(&repo, id, 1).await
                        } else {
                            hand_written(&repo, id, 1).await
                        };
                    }
                    tries
                }));
            }
            let mut tries = 0;
            for t in tasks {
                tries += t.await.expect("task");
            }
            let took = started.elapsed();
            let state = repo.load(id).await.expect("load");
            assert_eq!(state.state().cents, 401, "every deposit counted once");
            if variant == 0 {
                hot_ours.push(took);
                tries_ours += tries;
            } else {
                hot_theirs.push(took);
                tries_theirs += tries;
            }
        }
    }
    let (hot_ours, hot_theirs) = (median(hot_ours), median(hot_theirs));
    println!("| case | repo.execute | hand-written loop | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| one deposit on a 10-event aggregate, median of 7 round medians (200 each) | {:.3} ms | {:.3} ms | {:.3} |",
        ours.as_secs_f64() * 1e3,
        theirs.as_secs_f64() * 1e3,
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    println!(
        "| 16 writers × 25 deposits on one aggregate, median wall time of 10 runs | {:.0} ms ({} runs of commands) | {:.0} ms ({} runs) | {:.3} |",
        hot_ours.as_secs_f64() * 1e3,
        tries_ours,
        hot_theirs.as_secs_f64() * 1e3,
        tries_theirs,
        hot_ours.as_secs_f64() / hot_theirs.as_secs_f64()
    );
    store.close().await;
}
