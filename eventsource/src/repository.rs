//! [`AggregateRepository`]: loads and saves aggregates, taking and using snapshots.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tracing::{Instrument, Span, field};
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::error::{Error, Result};
use crate::event::{DomainEvent, NewEvent};
use crate::load::{Loaded, Loader};
use crate::root::AggregateRoot;
use crate::snapshot::background::BackgroundWriter;
use crate::snapshot::{
    EveryNEvents, Snapshot, SnapshotContext, SnapshotMode, SnapshotPolicy, SnapshotStore,
    SnapshotStrategy,
};
use crate::store::{EventStore, ExpectedVersion};

/// The repository's source of the current time (see [`RepositoryBuilder::clock`]).
type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Default bound on background snapshot writes running at once.
pub const DEFAULT_MAX_BACKGROUND_SNAPSHOTS: usize = 4;

/// Loads and saves aggregates of type `A`.
///
/// Loading starts from the aggregate's snapshot when a usable one exists and replays
/// only the events after it; saving appends the new events with optimistic concurrency,
/// then takes a snapshot when the policy asks for one. Clones share the stores and the
/// background snapshot queue.
pub struct AggregateRepository<A: Aggregate> {
    events: Arc<dyn EventStore>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    policy: SnapshotPolicy,
    background: Option<BackgroundWriter>,
    clock: Clock,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for AggregateRepository<A> {
    fn clone(&self) -> Self {
        AggregateRepository {
            events: Arc::clone(&self.events),
            snapshots: self.snapshots.clone(),
            policy: self.policy.clone(),
            background: self.background.clone(),
            clock: Arc::clone(&self.clock),
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> fmt::Debug for AggregateRepository<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateRepository")
            .field("aggregate_type", &A::TYPE)
            .field("event_store", &self.events)
            .field("snapshot_store", &self.snapshots)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Builds an [`AggregateRepository`], overriding the aggregate's declared policy if asked.
#[must_use]
pub struct RepositoryBuilder<A: Aggregate> {
    events: Arc<dyn EventStore>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    policy: SnapshotPolicy,
    max_background: usize,
    clock: Clock,
    invalid: Option<Error>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> RepositoryBuilder<A> {
    /// Snapshots go to this store.
    pub fn snapshot_store(mut self, store: Arc<dyn SnapshotStore>) -> Self {
        self.snapshots = Some(store);
        self
    }

    /// Snapshots go to this store, or nowhere.
    pub fn snapshot_store_opt(mut self, store: Option<Arc<dyn SnapshotStore>>) -> Self {
        self.snapshots = store;
        self
    }

    /// Snapshot every `n` events (replaces the declared strategy). `0` is refused by
    /// [`build`](Self::build).
    pub fn threshold(mut self, n: u64) -> Self {
        match EveryNEvents::new(n) {
            Some(every) => self.policy.strategy = Arc::new(every),
            None => {
                self.invalid = Some(Error::invalid_input(
                    "snapshot threshold must be at least 1; use `SnapshotMode::Manual` or the `Never` strategy to disable automatic snapshots",
                ))
            }
        }
        self
    }

    /// Decide with this strategy (replaces the declared one).
    pub fn strategy(mut self, strategy: impl SnapshotStrategy + 'static) -> Self {
        self.policy.strategy = Arc::new(strategy);
        self
    }

    /// Write snapshots in this mode (replaces the declared one).
    pub fn mode(mut self, mode: SnapshotMode) -> Self {
        self.policy.mode = mode;
        self
    }

    /// Replaces the whole policy.
    pub fn policy(mut self, policy: SnapshotPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// At most `n` background snapshot writes at once (default
    /// [`DEFAULT_MAX_BACKGROUND_SNAPSHOTS`]). `0` is refused by [`build`](Self::build).
    pub fn max_background_snapshots(mut self, n: usize) -> Self {
        if n == 0 {
            self.invalid = Some(Error::invalid_input(
                "max_background_snapshots must be at least 1",
            ));
        }
        self.max_background = n;
        self
    }

    /// Reads the current time from `clock` instead of the system clock: the `now` that
    /// snapshot strategies decide with, and the time snapshots are stamped with. For
    /// tests of time-based policies.
    pub fn clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The repository, or the first invalid setting.
    pub fn build(self) -> Result<AggregateRepository<A>> {
        if let Some(error) = self.invalid {
            return Err(error);
        }
        let mut repo = AggregateRepository::from_parts(
            self.events,
            self.snapshots,
            self.policy,
            self.max_background,
        );
        repo.clock = self.clock;
        Ok(repo)
    }
}

impl<A: Aggregate> AggregateRepository<A> {
    /// A builder with the policy declared by the aggregate's `#[snapshot(...)]`.
    pub fn builder(event_store: Arc<dyn EventStore>) -> RepositoryBuilder<A> {
        RepositoryBuilder {
            events: event_store,
            snapshots: None,
            policy: A::snapshot_policy(),
            max_background: DEFAULT_MAX_BACKGROUND_SNAPSHOTS,
            clock: Arc::new(Utc::now),
            invalid: None,
            _aggregate: PhantomData,
        }
    }

    /// A repository with the declared policy and no snapshot store.
    pub fn new(event_store: Arc<dyn EventStore>) -> Self {
        Self::with_stores(event_store, None)
    }

    /// A repository with the declared policy and these stores.
    pub fn with_stores(
        event_store: Arc<dyn EventStore>,
        snapshot_store: Option<Arc<dyn SnapshotStore>>,
    ) -> Self {
        Self::from_parts(
            event_store,
            snapshot_store,
            A::snapshot_policy(),
            DEFAULT_MAX_BACKGROUND_SNAPSHOTS,
        )
    }

    pub(crate) fn from_parts(
        events: Arc<dyn EventStore>,
        snapshots: Option<Arc<dyn SnapshotStore>>,
        policy: SnapshotPolicy,
        max_background: usize,
    ) -> Self {
        let background = match (&snapshots, policy.mode) {
            (Some(store), SnapshotMode::Background) => {
                Some(BackgroundWriter::new(Arc::clone(store), max_background))
            }
            _ => None,
        };
        AggregateRepository {
            events,
            snapshots,
            policy,
            background,
            clock: Arc::new(Utc::now),
            _aggregate: PhantomData,
        }
    }

    /// The event store.
    pub fn event_store(&self) -> &Arc<dyn EventStore> {
        &self.events
    }

    /// The snapshot store, if any.
    pub fn snapshot_store(&self) -> Option<&Arc<dyn SnapshotStore>> {
        self.snapshots.as_ref()
    }

    /// `true` when the repository has a snapshot store.
    pub fn has_snapshot_support(&self) -> bool {
        self.snapshots.is_some()
    }

    /// The policy in effect (declared, or overridden by the builder).
    pub fn snapshot_policy(&self) -> &SnapshotPolicy {
        &self.policy
    }

    /// The every-N threshold of the policy in effect, if it has one.
    pub fn snapshot_threshold(&self) -> Option<u64> {
        self.policy.strategy.threshold()
    }

    /// The snapshot mode in effect.
    pub fn snapshot_mode(&self) -> SnapshotMode {
        self.policy.mode
    }

    /// A new aggregate at version 0; nothing is stored until it is saved.
    pub fn create_new(&self, id: Uuid) -> AggregateRoot<A> {
        AggregateRoot::new(id)
    }

    /// `true` if the aggregate has at least one stored event.
    pub async fn exists(&self, id: Uuid) -> Result<bool> {
        Ok(self.events.stream_version(A::TYPE, id).await?.is_some())
    }

    /// Loads the aggregate, or returns [`Error::NotFound`] if it has no events.
    pub async fn load(&self, id: Uuid) -> Result<AggregateRoot<A>> {
        let root = self.load_or_create(id).await?;
        if root.version() == 0 {
            return Err(Error::NotFound {
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: id,
            });
        }
        Ok(root)
    }

    /// Loads the aggregate, or returns a new one at version 0 if it has no events.
    pub async fn load_or_create(&self, id: Uuid) -> Result<AggregateRoot<A>> {
        let span = tracing::info_span!(
            "eventsource.load",
            aggregate_type = A::TYPE,
            aggregate_id = %id,
            version = field::Empty,
            snapshot_used = field::Empty,
            events_replayed = field::Empty,
        );
        async move {
            let started = Instant::now();
            let mut use_snapshot = true;
            let mut root = loop {
                match self.read(id, use_snapshot).await? {
                    Loaded::Root(root) => break root,
                    Loaded::SnapshotAhead(version) => {
                        tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id,
                            snapshot_version = version,
                            "snapshot is beyond the stream's last event; replaying all events");
                        use_snapshot = false;
                    }
                }
            };
            root.history_mut().load_time = started.elapsed();
            let span = Span::current();
            span.record("version", root.version());
            span.record("snapshot_used", root.load_history().loaded_from_snapshot);
            span.record("events_replayed", root.load_history().events_replayed);
            Ok(root)
        }
        .instrument(span)
        .await
    }

    /// Reads the aggregate, starting from its snapshot if `use_snapshot` and there is a
    /// usable one.
    async fn read(&self, id: Uuid, use_snapshot: bool) -> Result<Loaded<A>> {
        let mut loader = Loader::<A>::new(id);
        let snapshots = self.snapshots.as_deref().filter(|_| use_snapshot);
        let read = self
            .events
            .read_aggregate(snapshots, A::TYPE, id, &mut loader)
            .await;
        loader.finish(read)
    }

    /// Stores the aggregate's uncommitted events, then takes a snapshot if the policy
    /// asks for one.
    ///
    /// The append expects the stream to be at the version the aggregate was loaded at: if
    /// another writer got there first this returns [`Error::Conflict`], nothing is written
    /// and the events stay uncommitted. A failing snapshot never fails the save.
    pub async fn save(&self, root: &mut AggregateRoot<A>) -> Result<()> {
        if !root.has_changes() {
            return Ok(());
        }
        let before = root.committed_version();
        let span = tracing::info_span!(
            "eventsource.save",
            aggregate_type = A::TYPE,
            aggregate_id = %root.id(),
            version_before = before,
            version = root.version(),
            events = root.uncommitted().len(),
            snapshot = field::Empty,
        );
        async move {
            let new_events = self.encode(root)?;
            let version = self
                .events
                .append(
                    A::TYPE,
                    root.id(),
                    ExpectedVersion::Exact(before),
                    &new_events,
                )
                .await?;
            debug_assert_eq!(version, root.version());
            // The strategies see the saved event types; without automatic snapshots no
            // one does, and the save skips collecting them.
            let automatic = self.snapshots.is_some() && self.policy.mode != SnapshotMode::Manual;
            let types = if automatic {
                root.uncommitted_types()
            } else {
                Vec::new()
            };
            root.mark_committed();
            self.after_save(root, before, &types).await;
            Ok(())
        }
        .instrument(span)
        .await
    }

    fn encode(&self, root: &AggregateRoot<A>) -> Result<Vec<NewEvent>> {
        root.uncommitted()
            .iter()
            .map(|u| {
                let payload = u.event.to_payload().map_err(|source| Error::Encode {
                    aggregate_type: A::TYPE.to_owned(),
                    what: u.event.event_type().to_owned(),
                    source,
                })?;
                Ok(NewEvent {
                    event_id: u.event_id,
                    event_type: u.event.event_type().to_owned(),
                    event_version: u.event.event_version(),
                    payload,
                    metadata: u.metadata.clone(),
                    occurred_at: u.occurred_at,
                })
            })
            .collect()
    }

    async fn after_save(&self, root: &mut AggregateRoot<A>, before: u64, types: &[&'static str]) {
        let Some(store) = &self.snapshots else {
            return;
        };
        if self.policy.mode == SnapshotMode::Manual {
            return;
        }
        let now = (self.clock)();
        let history = *root.load_history();
        let ctx = SnapshotContext {
            aggregate_type: A::TYPE,
            aggregate_id: root.id(),
            version_before: before,
            version_after: root.version(),
            last_snapshot_version: history.snapshot_version,
            last_snapshot_at: history.snapshot_at,
            event_types: types,
            load: &history,
            now,
        };
        if !self.policy.strategy.should_snapshot(&ctx) {
            return;
        }
        let snapshot = match self.capture(root, now) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %root.id(), %error,
                    "cannot serialize the state for a snapshot; the save stands");
                return;
            }
        };
        Span::current().record("snapshot", self.policy.mode.as_str());
        let (version, created_at) = (snapshot.version, snapshot.created_at);
        let written = match &self.background {
            Some(background) => background.schedule(snapshot),
            None => match store.save(&snapshot).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %root.id(),
                        version, %error, "snapshot write failed; the save stands");
                    false
                }
            },
        };
        if written {
            let history = root.history_mut();
            history.snapshot_version = Some(version);
            history.snapshot_at = Some(created_at);
        }
    }

    fn capture(&self, root: &AggregateRoot<A>, now: DateTime<Utc>) -> Result<Snapshot> {
        let state = root.state().to_snapshot().map_err(|source| Error::Encode {
            aggregate_type: A::TYPE.to_owned(),
            what: "state".to_owned(),
            source,
        })?;
        Ok(Snapshot {
            aggregate_id: root.id(),
            aggregate_type: A::TYPE.to_owned(),
            version: root.version(),
            schema_version: A::SCHEMA_VERSION,
            state,
            created_at: now,
        })
    }

    /// Takes a snapshot of a saved aggregate now, whatever the mode and strategy, and
    /// writes it before returning.
    ///
    /// Errors: [`Error::NoSnapshotStore`] without a snapshot store, and
    /// [`Error::InvalidInput`] for an aggregate with unsaved events or no events at all
    /// (a snapshot must describe stored events only).
    pub async fn create_snapshot(&self, root: &mut AggregateRoot<A>) -> Result<Snapshot> {
        let Some(store) = &self.snapshots else {
            return Err(Error::NoSnapshotStore {
                aggregate_type: A::TYPE.to_owned(),
            });
        };
        if root.has_changes() {
            return Err(Error::invalid_input(format!(
                "{}/{} has {} unsaved events; save it before taking a snapshot",
                A::TYPE,
                root.id(),
                root.uncommitted().len()
            )));
        }
        if root.version() == 0 {
            return Err(Error::invalid_input(format!(
                "{}/{} has no events; there is nothing to snapshot",
                A::TYPE,
                root.id()
            )));
        }
        let snapshot = self.capture(root, (self.clock)())?;
        let span = tracing::info_span!("eventsource.create_snapshot", aggregate_type = A::TYPE,
            aggregate_id = %root.id(), version = snapshot.version);
        store.save(&snapshot).instrument(span).await?;
        let history = root.history_mut();
        history.snapshot_version = Some(snapshot.version);
        history.snapshot_at = Some(snapshot.created_at);
        Ok(snapshot)
    }

    /// Snapshots queued or being written in background mode.
    pub fn pending_snapshot_count(&self) -> usize {
        self.background
            .as_ref()
            .map_or(0, BackgroundWriter::pending)
    }

    /// Waits for every background snapshot queued so far (and any queued meanwhile);
    /// returns how many were pending when called.
    pub async fn await_pending_snapshots(&self) -> usize {
        match &self.background {
            Some(background) => background.wait_idle().await,
            None => 0,
        }
    }
}
