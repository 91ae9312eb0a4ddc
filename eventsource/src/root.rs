//! [`AggregateRoot`]: an aggregate's identity, version, state and uncommitted events.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::aggregate::{Aggregate, IntoEvents};
use crate::error::{Error, Result};
use crate::event::{Decoded, DomainEvent, EventMetadata};

/// One aggregate instance: its id, the version of its last event, its state and the
/// events recorded since it was loaded or saved.
///
/// Commands are functions of the state that return events; [`execute`](Self::execute)
/// applies those events at once and keeps them until the repository saves them.
pub struct AggregateRoot<A: Aggregate> {
    id: Uuid,
    version: u64,
    state: A,
    uncommitted: Vec<Uncommitted<A::Event>>,
    metadata: EventMetadata,
    history: LoadHistory,
}

/// An event recorded by a command and not yet saved.
#[derive(Clone, Debug)]
pub struct Uncommitted<E> {
    /// The event itself.
    pub event: E,
    /// Its id, fixed when it was recorded so a retried save keeps it.
    pub event_id: Uuid,
    /// When it was recorded.
    pub occurred_at: DateTime<Utc>,
    /// Metadata in force when it was recorded.
    pub metadata: EventMetadata,
}

/// What the repository learnt about an aggregate when it loaded it: the snapshot it
/// started from, and what the load cost. Snapshot strategies decide from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadHistory {
    /// Version of the newest snapshot known to exist for this aggregate.
    pub snapshot_version: Option<u64>,
    /// When that snapshot was taken.
    pub snapshot_at: Option<DateTime<Utc>>,
    /// Whether the last load started from a snapshot.
    pub loaded_from_snapshot: bool,
    /// Events replayed by the last load.
    pub events_replayed: u64,
    /// Time the last load took.
    pub load_time: Duration,
    /// Why the last load did not start from a snapshot, when it asked a snapshot store
    /// (the `reason` of the `eventsource_snapshot_misses_total` metric).
    pub snapshot_miss: Option<crate::metrics::SnapshotMiss>,
}

impl<A: Aggregate> AggregateRoot<A> {
    /// A new aggregate at version 0 with the default state.
    pub fn new(id: Uuid) -> Self {
        Self::from_parts(id, 0, A::default())
    }

    /// An aggregate with a given state and version (as restored from a snapshot).
    pub(crate) fn from_parts(id: Uuid, version: u64, state: A) -> Self {
        AggregateRoot {
            id,
            version,
            state,
            uncommitted: Vec::new(),
            metadata: EventMetadata::default(),
            history: LoadHistory::default(),
        }
    }

    /// The aggregate's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The version of the last event applied (0 for a new aggregate), including
    /// uncommitted events.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The version as stored: [`version`](Self::version) less the uncommitted events.
    pub fn committed_version(&self) -> u64 {
        self.version - self.uncommitted.len() as u64
    }

    /// The current state.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Consumes the root and returns its state.
    pub fn into_state(self) -> A {
        self.state
    }

    /// Events recorded and not yet saved.
    pub fn uncommitted(&self) -> &[Uncommitted<A::Event>] {
        &self.uncommitted
    }

    /// `true` when there are events to save.
    pub fn has_changes(&self) -> bool {
        !self.uncommitted.is_empty()
    }

    /// What the last load cost and which snapshot it used.
    pub fn load_history(&self) -> &LoadHistory {
        &self.history
    }

    pub(crate) fn history_mut(&mut self) -> &mut LoadHistory {
        &mut self.history
    }

    /// Sets the correlation id stored with the events recorded from now on.
    pub fn set_correlation_id(&mut self, id: Option<Uuid>) {
        self.metadata.correlation_id = id;
    }

    /// Sets the causation id stored with the events recorded from now on.
    pub fn set_causation_id(&mut self, id: Option<Uuid>) {
        self.metadata.causation_id = id;
    }

    /// Adds a free metadata entry stored with the events recorded from now on.
    pub fn insert_metadata(&mut self, key: impl Into<String>, value: serde_json::Value) {
        self.metadata.extra.insert(key.into(), value);
    }

    /// Runs a command against the state and records the events it returns.
    ///
    /// The command sees the current state and decides; each event it returns is applied
    /// at once, in order. If the command fails nothing is recorded.
    ///
    /// ```
    /// # use eventsource::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { amount: u64 }
    /// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
    /// # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
    /// # #[aggregate(name = "Account", event = AccountEvent)]
    /// # pub struct Account { balance: u64 }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount; } }
    /// impl Account {
    ///     fn deposit(&self, amount: u64) -> Result<AccountEvent, String> {
    ///         if amount == 0 {
    ///             return Err("nothing to deposit".into());
    ///         }
    ///         Ok(Deposited { amount }.into())
    ///     }
    /// }
    ///
    /// let mut account = AggregateRoot::<Account>::new(uuid::Uuid::new_v4());
    /// account.execute(|a| a.deposit(10))?;
    /// assert!(account.execute(|a| a.deposit(0)).is_err());
    /// assert_eq!(account.version(), 1);
    /// assert_eq!(account.state().balance, 10);
    /// # Ok::<(), String>(())
    /// ```
    pub fn execute<T, E, F>(&mut self, command: F) -> Result<(), E>
    where
        F: FnOnce(&A) -> Result<T, E>,
        T: IntoEvents<A::Event>,
    {
        let mut events = Vec::new();
        command(&self.state)?.into_events(&mut events);
        for event in events {
            self.record(event);
        }
        Ok(())
    }

    /// Records one event: applies it and keeps it for the next save.
    pub fn record(&mut self, event: impl Into<A::Event>) {
        let event = event.into();
        self.state.apply_event(&event);
        self.version += 1;
        self.uncommitted.push(Uncommitted {
            event,
            event_id: Uuid::new_v4(),
            occurred_at: Utc::now(),
            metadata: self.metadata.clone(),
        });
    }

    /// Records one event with a given id and metadata (a command run's).
    pub(crate) fn record_with(
        &mut self,
        event: A::Event,
        event_id: Uuid,
        metadata: &EventMetadata,
    ) {
        self.state.apply_event(&event);
        self.version += 1;
        self.uncommitted.push(Uncommitted {
            event,
            event_id,
            occurred_at: Utc::now(),
            metadata: metadata.clone(),
        });
    }

    /// Applies an event read from the store. Its version must be the next one.
    /// Applies the events a stored event at `version` decoded to (one, or after an
    /// upcast none or several).
    pub(crate) fn apply_stored(&mut self, version: u64, events: Decoded<A::Event>) -> Result<()> {
        let expected = self.version + 1;
        if version != expected {
            return Err(Error::VersionMismatch {
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: self.id,
                expected,
                actual: version,
            });
        }
        for event in events {
            self.state.apply_event(&event);
        }
        self.version = version;
        Ok(())
    }

    /// Forgets the uncommitted events once the store has them.
    pub(crate) fn mark_committed(&mut self) {
        self.uncommitted.clear();
    }

    /// The event type names of the uncommitted events.
    pub(crate) fn uncommitted_types(&self) -> Vec<&'static str> {
        self.uncommitted
            .iter()
            .map(|u| u.event.event_type())
            .collect()
    }
}

impl<A: Aggregate + fmt::Debug> fmt::Debug for AggregateRoot<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateRoot")
            .field("type", &A::TYPE)
            .field("id", &self.id)
            .field("version", &self.version)
            .field("uncommitted", &self.uncommitted.len())
            .field("state", &self.state)
            .finish()
    }
}

impl<A: Aggregate> Clone for AggregateRoot<A> {
    fn clone(&self) -> Self {
        AggregateRoot {
            id: self.id,
            version: self.version,
            state: self.state.clone(),
            uncommitted: self.uncommitted.clone(),
            metadata: self.metadata.clone(),
            history: self.history,
        }
    }
}
