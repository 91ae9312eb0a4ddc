//! `AggregateRepository::execute` and friends on every backend: refusals, conflicts and
//! their retries, async commands, per-command metadata and idempotent command ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use eventsource::command::{Command, CommandError, CommandOptions, ConflictRetry};
use eventsource::prelude::*;
use eventsource::{Error, EventStoreExt};
use eventsource_tests::Stores;
use eventsource_tests::fixtures;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    pub cents: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn {
    pub cents: u64,
}

#[derive(DomainEvent, Clone, Debug, PartialEq)]
pub enum AccountEvent {
    Deposited(Deposited),
    Withdrawn(Withdrawn),
}

#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "CommandAccount", event = AccountEvent)]
pub struct Account {
    pub cents: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.cents += e.cents;
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.cents -= e.cents;
    }
}

impl Account {
    fn withdraw(&self, cents: u64) -> Result<Withdrawn, String> {
        if cents > self.cents {
            return Err(format!("balance {} is below {cents}", self.cents));
        }
        Ok(Withdrawn { cents })
    }
}

fn deposit(cents: u64) -> impl Fn(&Account) -> Result<Deposited, String> + Send + Sync {
    move |_| Ok(Deposited { cents })
}

fn repo(stores: &Stores, retry: ConflictRetry) -> AggregateRepository<Account> {
    AggregateRepository::builder(stores.events.clone())
        .conflict_retry(retry)
        .build()
        .expect("repository")
}

async fn refusals_and_missing_aggregates(stores: &Stores) {
    let repo = repo(stores, ConflictRetry::default());
    let id = Uuid::new_v4();
    match repo.execute(id, deposit(5)).await {
        Err(CommandError::Store(Error::NotFound { aggregate_id, .. })) => {
            assert_eq!(aggregate_id, id)
        }
        other => panic!("execute on a missing aggregate: {other:?}"),
    }
    let done = repo.execute_new(id, deposit(100)).await.expect("create");
    assert_eq!((done.root.version(), done.attempts), (1, 1));
    assert_eq!(
        done.events,
        vec![AccountEvent::Deposited(Deposited { cents: 100 })]
    );

    match repo.execute_new(id, deposit(1)).await {
        Err(CommandError::Store(e @ Error::Conflict { .. })) => {
            assert!(e.to_string().contains("already exists"), "{e}");
        }
        other => panic!("execute_new on an existing aggregate: {other:?}"),
    }
    match repo.execute(id, |a: &Account| a.withdraw(500)).await {
        Err(CommandError::Rejected(why)) => assert_eq!(why, "balance 100 is below 500"),
        other => panic!("a refused command: {other:?}"),
    }
    // Neither the refusal nor the failed creation wrote anything.
    assert_eq!(repo.load(id).await.expect("load").version(), 1);

    // A command returning no event saves nothing and succeeds.
    let none = repo
        .execute(id, |_: &Account| Ok::<_, String>(()))
        .await
        .expect("no events");
    assert_eq!((none.root.version(), none.events.len()), (1, 0));

    let created = repo
        .execute_or_create(Uuid::new_v4(), deposit(7), CommandOptions::new())
        .await
        .expect("execute_or_create");
    assert_eq!(created.root.state().cents, 7);
}

/// A command that lets another writer append to its aggregate while it decides, the
/// first `interfere` times it runs: a deterministic conflict.
struct Interfering {
    id: Uuid,
    other: AggregateRepository<Account>,
    interfere: u32,
    runs: AtomicU32,
}

#[eventsource::async_trait]
impl Command<Account> for Interfering {
    type Events = Withdrawn;
    type Error = String;

    async fn handle(&self, state: &Account) -> Result<Withdrawn, String> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        if run < self.interfere {
            self.other
                .execute(self.id, deposit(1))
                .await
                .map_err(|e| e.to_string())?;
        }
        state.withdraw(1)
    }
}

async fn conflicts_are_retried_on_a_fresh_load(stores: &Stores) {
    let id = Uuid::new_v4();
    {
        let other = repo(stores, ConflictRetry::none());
        other.execute_new(id, deposit(10)).await.expect("create");

        // Without retries the conflict comes back as such, nothing written.
        let once = repo(stores, ConflictRetry::none());
        let command = Interfering {
            id,
            other: other.clone(),
            interfere: 1,
            runs: AtomicU32::new(0),
        };
        match once.execute(id, command).await {
            Err(CommandError::Conflict { attempts, source }) => {
                assert_eq!(attempts, 1);
                assert!(matches!(source, Error::Conflict { .. }), "{source:?}");
            }
            other => panic!("a conflict without retries: {other:?}"),
        }
        assert_eq!(once.load(id).await.expect("load").state().cents, 11);

        // With retries it runs again on the state the other writer left.
        let retrying = repo(stores, ConflictRetry::default());
        let command = Interfering {
            id,
            other: other.clone(),
            interfere: 3,
            runs: AtomicU32::new(0),
        };
        let done = retrying.execute(id, command).await.expect("retried");
        assert_eq!(done.attempts, 4);
        assert_eq!(done.root.state().cents, 11 + 3 - 1);
        assert_eq!(
            retrying.load(id).await.expect("load").version(),
            1 + 1 + 3 + 1
        );

        // A policy that gives up before the interference ends.
        let short = repo(
            stores,
            ConflictRetry {
                max_attempts: 2,
                ..ConflictRetry::default()
            },
        );
        let command = Interfering {
            id,
            other,
            interfere: 5,
            runs: AtomicU32::new(0),
        };
        match short.execute(id, command).await {
            Err(CommandError::Conflict { attempts, .. }) => assert_eq!(attempts, 2),
            other => panic!("retries exhausted: {other:?}"),
        }
    }
}

async fn concurrent_writers_on_a_hot_aggregate(stores: &Stores) {
    let repo = repo(
        stores,
        ConflictRetry {
            max_attempts: 1_000,
            ..ConflictRetry::default()
        },
    );
    let id = Uuid::new_v4();
    repo.execute_new(id, deposit(0)).await.expect("create");
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            let mut sum = 0;
            for i in 0..10u64 {
                let cents = task * 100 + i;
                repo.execute(id, deposit(cents)).await.expect("deposit");
                sum += cents;
            }
            sum
        }));
    }
    let mut expected = 0;
    for t in tasks {
        expected += t.await.expect("task");
    }
    let loaded = repo.load(id).await.expect("load");
    assert_eq!(loaded.state().cents, expected, "every deposit counted once");
    assert_eq!(loaded.version(), 1 + 160);
}

/// An async command that asks a service before deciding.
struct Transfer {
    limits: Arc<tokio::sync::Mutex<u64>>,
    cents: u64,
}

#[eventsource::async_trait]
impl Command<Account> for Transfer {
    type Events = Vec<AccountEvent>;
    type Error = String;

    async fn handle(&self, state: &Account) -> Result<Vec<AccountEvent>, String> {
        let limit = *self.limits.lock().await;
        tokio::task::yield_now().await;
        if self.cents > limit {
            return Err(format!("{} is over the limit {limit}", self.cents));
        }
        Ok(vec![state.withdraw(self.cents)?.into()])
    }
}

async fn async_commands_and_metadata(stores: &Stores) {
    let repo = repo(stores, ConflictRetry::default());
    let id = Uuid::new_v4();
    repo.execute_new(id, deposit(100)).await.expect("create");
    let limits = Arc::new(tokio::sync::Mutex::new(50));
    let refused = repo
        .execute(
            id,
            Transfer {
                limits: limits.clone(),
                cents: 60,
            },
        )
        .await;
    assert!(
        matches!(refused, Err(CommandError::Rejected(ref w)) if w == "60 is over the limit 50")
    );

    let correlation = Uuid::new_v4();
    let causation = Uuid::new_v4();
    let options = CommandOptions::new()
        .correlation_id(correlation)
        .causation_id(causation)
        .metadata("user", serde_json::json!("ada"));
    repo.execute_with(id, Transfer { limits, cents: 40 }, options)
        .await
        .expect("transfer");
    let stored = stores
        .events
        .load_stream("CommandAccount", id, 1)
        .await
        .expect("read");
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0].metadata.correlation_id, None,
        "metadata is per command"
    );
    let meta = &stored[1].metadata;
    assert_eq!(meta.correlation_id, Some(correlation));
    assert_eq!(meta.causation_id, Some(causation));
    assert_eq!(meta.extra["user"], serde_json::json!("ada"));
}

async fn command_ids_append_once(stores: &Stores) {
    let repo = repo(
        stores,
        ConflictRetry {
            max_attempts: 1_000,
            ..ConflictRetry::default()
        },
    );
    let id = Uuid::new_v4();
    repo.execute_new(id, deposit(100)).await.expect("create");
    let command_id = Uuid::new_v4();
    let options = CommandOptions::new().command_id(command_id);
    let first = repo
        .execute_with(id, |a: &Account| a.withdraw(30), options.clone())
        .await
        .expect("first run");
    assert!(!first.already_applied);
    // The second run would now decide differently (or be refused): it is not run.
    let second = repo
        .execute_with(id, |a: &Account| a.withdraw(80), options.clone())
        .await
        .expect("second run");
    assert!(second.already_applied);
    assert_eq!(
        second.events, first.events,
        "it reports what the first run did"
    );
    assert_eq!(second.root.version(), 2);
    assert_eq!(repo.load(id).await.expect("load").state().cents, 70);

    // The same command id on another aggregate is a mistake, said as such.
    let other = Uuid::new_v4();
    repo.execute_new(other, deposit(1))
        .await
        .expect("create other");
    match repo.execute_with(other, deposit(1), options).await {
        Err(CommandError::Store(Error::InvalidInput { field, .. })) => {
            assert_eq!(field, "command_id")
        }
        r => panic!("a command id reused on another aggregate: {r:?}"),
    }

    // Eight tasks running one command id at once: one deposit.
    let command_id = Uuid::new_v4();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            repo.execute_with(
                id,
                deposit(1_000),
                CommandOptions::new().command_id(command_id),
            )
            .await
            .expect("concurrent run")
            .already_applied
        }));
    }
    let mut fresh = 0;
    for t in tasks {
        if !t.await.expect("task") {
            fresh += 1;
        }
    }
    assert!(fresh >= 1, "one run appended");
    let loaded = repo.load(id).await.expect("load");
    assert_eq!(loaded.state().cents, 1_070, "the deposit counted once");
    assert_eq!(loaded.version(), 3);
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let stores = super::fixtures::memory().await.expect("memory");
                super::$name(&stores).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let stores = super::fixtures::sqlite_file().await.expect("sqlite");
                super::$name(&stores).await;
                stores.close().await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(stores) = super::fixtures::postgres().await else { return };
                super::$name(&stores).await;
                stores.close().await;
            })*
        }
    };
}

on_every_backend!(
    refusals_and_missing_aggregates,
    conflicts_are_retried_on_a_fresh_load,
    concurrent_writers_on_a_hot_aggregate,
    async_commands_and_metadata,
    command_ids_append_once,
);
