//! Commands: load the aggregate, decide, save, and on a conflict do it all again.
//!
//! [`AggregateRepository::execute`](crate::AggregateRepository::execute) replaces the loop every application writes by hand:
//! it loads the aggregate, runs the [`Command`] against its state, saves the events it
//! returns, and when another writer got there first ([`Error::Conflict`]) loads again and
//! re-runs the command on the fresh state, up to the repository's [`ConflictRetry`]
//! policy, with jittered backoff. The outcome separates the command's own refusal
//! ([`CommandError::Rejected`]) from the store's errors.
//!
//! A command is a closure of the state (`|account: &Account| account.withdraw(30)`) or
//! any type implementing [`Command`], whose `handle` is `async` and may await other
//! services. Metadata belongs to the command run, not to a root: pass
//! [`CommandOptions`] with a correlation id, a causation id, free entries, and an optional
//! command id. Running the same command id twice appends once: the second run finds the
//! first run's events and reports them ([`Executed::already_applied`]).
//!
//! ```
//! use eventsource::command::{CommandError, CommandOptions};
//! use eventsource::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! pub struct Deposited { pub cents: u64 }
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! pub struct Withdrawn { pub cents: u64 }
//!
//! #[derive(DomainEvent, Clone, Debug)]
//! pub enum AccountEvent { Deposited(Deposited), Withdrawn(Withdrawn) }
//!
//! #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
//! #[aggregate(name = "Account", event = AccountEvent)]
//! pub struct Account { pub cents: u64 }
//!
//! impl Apply<Deposited> for Account {
//!     fn apply(&mut self, e: &Deposited) { self.cents += e.cents; }
//! }
//! impl Apply<Withdrawn> for Account {
//!     fn apply(&mut self, e: &Withdrawn) { self.cents -= e.cents; }
//! }
//!
//! impl Account {
//!     fn withdraw(&self, cents: u64) -> Result<Withdrawn, String> {
//!         if cents > self.cents {
//!             return Err(format!("balance {} is below {cents}", self.cents));
//!         }
//!         Ok(Withdrawn { cents })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let repo = AggregateRepository::<Account>::new(std::sync::Arc::new(InMemoryEventStore::new()));
//! let id = uuid::Uuid::new_v4();
//! repo.execute_new(id, |_: &Account| Ok::<_, String>(Deposited { cents: 100 })).await?;
//!
//! let done = repo.execute(id, |a: &Account| a.withdraw(30)).await?;
//! assert_eq!((done.root.version(), done.root.state().cents), (2, 70));
//!
//! match repo.execute(id, |a: &Account| a.withdraw(500)).await {
//!     Err(CommandError::Rejected(why)) => assert_eq!(why, "balance 70 is below 500"),
//!     other => panic!("{other:?}"),
//! }
//!
//! // The same command id twice: one withdrawal.
//! let once = CommandOptions::new().command_id(uuid::Uuid::new_v4());
//! repo.execute_with(id, |a: &Account| a.withdraw(10), once.clone()).await?;
//! let again = repo.execute_with(id, |a: &Account| a.withdraw(10), once).await?;
//! assert!(again.already_applied);
//! assert_eq!(repo.load(id).await?.state().cents, 60);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::aggregate::{Aggregate, IntoEvents};
use crate::error::Error;
use crate::event::EventMetadata;
use crate::root::AggregateRoot;

/// A decision about an aggregate: given its state, the events that happen (none, one or
/// several), or a refusal.
///
/// Closures `Fn(&A) -> Result<T, E>` are commands, where `T` is an event, an
/// `Option`, a `Vec` or an array of events, or `()`. Implement the trait on a type of
/// your own for a command that needs to await something (a price service, a uniqueness
/// check); it may run several times when writers conflict, so keep its effects in the
/// events it returns.
#[async_trait]
pub trait Command<A: Aggregate>: Send + Sync {
    /// What the command returns: events of `A`.
    type Events: IntoEvents<A::Event> + Send;
    /// Why the command refuses.
    type Error: Send;

    /// Decides from the current state.
    async fn handle(&self, state: &A) -> Result<Self::Events, Self::Error>;
}

#[async_trait]
impl<A, F, T, E> Command<A> for F
where
    A: Aggregate,
    F: Fn(&A) -> Result<T, E> + Send + Sync,
    T: IntoEvents<A::Event> + Send,
    E: Send,
{
    type Events = T;
    type Error = E;

    async fn handle(&self, state: &A) -> Result<T, E> {
        self(state)
    }
}

/// How [`AggregateRepository::execute`](crate::AggregateRepository::execute) retries a
/// command whose save conflicted with another writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictRetry {
    /// Runs in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the second run; it doubles at each run after that.
    pub initial_backoff: Duration,
    /// The longest wait between runs.
    pub max_backoff: Duration,
}

impl Default for ConflictRetry {
    /// 10 runs, waiting 1 ms doubling up to 100 ms, each wait jittered down by up to half.
    fn default() -> Self {
        ConflictRetry {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(100),
        }
    }
}

impl ConflictRetry {
    /// No retry: a conflict is returned at once.
    pub fn none() -> Self {
        ConflictRetry {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait after `failures` conflicts: exponential, jittered down by up to a half so
    /// that writers that collided do not collide again in step.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let fraction = f64::from(Uuid::new_v4().as_u128() as u16) / f64::from(u16::MAX);
        base.mul_f64(1.0 - fraction / 2.0)
    }
}

/// Metadata and identity of one command run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandOptions {
    pub(crate) metadata: EventMetadata,
    pub(crate) command_id: Option<Uuid>,
}

impl CommandOptions {
    /// No metadata, no command id.
    pub fn new() -> Self {
        Self::default()
    }

    /// The correlation id stored with the command's events.
    pub fn correlation_id(mut self, id: Uuid) -> Self {
        self.metadata.correlation_id = Some(id);
        self
    }

    /// The causation id stored with the command's events.
    pub fn causation_id(mut self, id: Uuid) -> Self {
        self.metadata.causation_id = Some(id);
        self
    }

    /// A free metadata entry stored with the command's events.
    pub fn metadata(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.metadata.extra.insert(key.into(), value);
        self
    }

    /// Makes the run idempotent: the events' ids derive from `id`, so a second run of the
    /// same command id finds the first run's events instead of appending again. The id
    /// is stored as the `command_id` metadata entry too.
    pub fn command_id(mut self, id: Uuid) -> Self {
        self.command_id = Some(id);
        self.metadata.extra.insert(
            "command_id".to_owned(),
            serde_json::Value::String(id.to_string()),
        );
        self
    }
}

/// The event id of the `index`-th event of command `command_id`.
pub(crate) fn event_id(command_id: Uuid, index: u64) -> Uuid {
    Uuid::new_v5(&command_id, &index.to_be_bytes())
}

/// What a command run did.
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    /// The aggregate after the command's events, saved.
    pub root: AggregateRoot<A>,
    /// The events the command appended (or, when `already_applied`, those the first run
    /// of its command id appended).
    pub events: Vec<A::Event>,
    /// How many times the command ran (1 without a conflict).
    pub attempts: u32,
    /// `true` when a run with the same command id had already appended its events, so
    /// this one appended nothing.
    pub already_applied: bool,
}

/// Why a command run failed: the command's own refusal, or the store's error.
#[derive(Debug)]
pub enum CommandError<E> {
    /// The command refused, with its own error. Nothing was written.
    Rejected(E),
    /// Every run conflicted with another writer, up to the retry policy's limit. Nothing
    /// was written. `source` is the last [`Error::Conflict`].
    Conflict {
        /// How many times the command ran.
        attempts: u32,
        /// The last conflict.
        source: Error,
    },
    /// The store failed, or the aggregate was not found ([`Error::NotFound`]) or already
    /// exists (an [`Error::Conflict`] expecting version 0, from
    /// [`execute_new`](crate::AggregateRepository::execute_new)).
    Store(Error),
}

impl<E> CommandError<E> {
    /// The store's error, if it is one.
    pub fn store_error(&self) -> Option<&Error> {
        match self {
            CommandError::Store(e) | CommandError::Conflict { source: e, .. } => Some(e),
            CommandError::Rejected(_) => None,
        }
    }
}

impl<E> From<Error> for CommandError<E> {
    fn from(e: Error) -> Self {
        CommandError::Store(e)
    }
}

impl<E: fmt::Display> fmt::Display for CommandError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Rejected(e) => write!(f, "command refused: {e}"),
            CommandError::Conflict { attempts, source } => {
                write!(f, "still conflicting after {attempts} runs: {source}")
            }
            CommandError::Store(e) => e.fmt(f),
        }
    }
}

/// Any command error that can be displayed makes a [`std::error::Error`], so that `?`
/// works in functions returning `Box<dyn Error>` even for `String` refusals.
impl<E: fmt::Debug + fmt::Display> std::error::Error for CommandError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CommandError::Rejected(_) => None,
            CommandError::Conflict { source, .. } => Some(source),
            CommandError::Store(e) => Some(e),
        }
    }
}
