//! [`AggregateRepository`]: loads and saves aggregates, taking and using snapshots.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use tracing::{Instrument, Span, field};
use uuid::Uuid;

use crate::aggregate::{Aggregate, IntoEvents};
use crate::command::{Command, CommandError, CommandOptions, ConflictRetry, Executed};
use crate::error::{Error, Result};
use crate::event::{DomainEvent, NewEvent};
use crate::load::{Loaded, Loader, read_at};
use crate::metrics::SnapshotMiss;
use crate::root::AggregateRoot;
use crate::snapshot::background::BackgroundWriter;
use crate::snapshot::{
    EveryNEvents, Snapshot, SnapshotContext, SnapshotMode, SnapshotPolicy, SnapshotStore,
    SnapshotStrategy,
};
use crate::store::{EventStore, checks};
use crate::version::ExpectedVersion;

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
///
/// ```
/// # use eventsource::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
/// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
/// # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "Account", event = AccountEvent)]
/// # #[snapshot(schema_version = 1, threshold = 10, mode = "sync")]
/// # pub struct Account { pub cents: u64 }
/// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.cents += e.cents; } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
///
/// let repo = Account::repository(
///     Arc::new(InMemoryEventStore::new()),
///     Arc::new(InMemorySnapshotStore::new()),
/// );
/// let id = uuid::Uuid::new_v4();
/// repo.execute_new(id, |_: &Account| Ok::<_, String>(Deposited { cents: 5 })).await?;
/// for _ in 0..12 {
///     repo.execute(id, |_: &Account| Ok::<_, String>(Deposited { cents: 1 })).await?;
/// }
/// let account = repo.load(id).await?; // from the snapshot at version 10, then 3 events
/// assert_eq!((account.version(), account.state().cents), (13, 17));
/// assert!(account.load_history().loaded_from_snapshot);
/// # Ok(())
/// # }
/// ```
pub struct AggregateRepository<A: Aggregate> {
    events: Arc<dyn EventStore>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    policy: SnapshotPolicy,
    background: Option<BackgroundWriter>,
    clock: Clock,
    /// Aggregates whose state was refused as a snapshot: logged as an error the first
    /// time only, so a state that can never be stored does not flood the log.
    refused: Arc<Mutex<HashSet<Uuid>>>,
    retry: ConflictRetry,
    _aggregate: PhantomData<fn() -> A>,
}

/// Whether a command run may create the aggregate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    /// It must exist.
    Never,
    /// It must not exist.
    New,
    /// Either.
    IfMissing,
}

/// How many refused aggregates a repository remembers (to log each once).
const MAX_REMEMBERED_REFUSALS: usize = 10_000;

impl<A: Aggregate> Clone for AggregateRepository<A> {
    fn clone(&self) -> Self {
        AggregateRepository {
            events: Arc::clone(&self.events),
            snapshots: self.snapshots.clone(),
            policy: self.policy.clone(),
            background: self.background.clone(),
            clock: Arc::clone(&self.clock),
            refused: Arc::clone(&self.refused),
            retry: self.retry.clone(),
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
///
/// ```
/// # use eventsource::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
/// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
/// # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "Account", event = AccountEvent)]
/// # #[snapshot(schema_version = 1, threshold = 10, mode = "sync")]
/// # pub struct Account { pub cents: u64 }
/// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.cents += e.cents; } }
/// use std::sync::Arc;
/// use std::time::Duration;
/// use eventsource::command::ConflictRetry;
///
/// let repo = AggregateRepository::<Account>::builder(Arc::new(InMemoryEventStore::new()))
///     .snapshot_store(Arc::new(InMemorySnapshotStore::new()))
///     .threshold(500) // instead of the declared 10
///     .mode(SnapshotMode::Background)
///     .snapshot_timeout(Duration::from_millis(500))
///     .conflict_retry(ConflictRetry { max_attempts: 20, ..ConflictRetry::default() })
///     .build()?;
/// assert_eq!(repo.snapshot_policy().mode, SnapshotMode::Background);
/// # Ok::<(), eventsource::Error>(())
/// ```
#[must_use]
pub struct RepositoryBuilder<A: Aggregate> {
    events: Arc<dyn EventStore>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    policy: SnapshotPolicy,
    max_background: usize,
    clock: Clock,
    retry: ConflictRetry,
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
                self.invalid = Some(Error::invalid(
                    "threshold",
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
            self.invalid = Some(Error::invalid(
                "max_background_snapshots",
                "max_background_snapshots must be at least 1",
            ));
        }
        self.max_background = n;
        self
    }

    /// Keep the `keep` newest snapshots of each aggregate (replaces the declared
    /// `#[snapshot(keep = ...)]`, default 1): the history that
    /// [`load_at`](AggregateRepository::load_at) and
    /// [`load_as_of`](AggregateRepository::load_as_of) start from.
    pub fn snapshot_keep(mut self, keep: NonZeroU32) -> Self {
        self.policy.keep = keep;
        self
    }

    /// Store snapshot states longer than `bytes` of JSON compressed (replaces the
    /// declared `#[snapshot(compress_over = ...)]`; `None`, the default, never
    /// compresses). The PostgreSQL and SQLite stores compress with zstd; the in-memory
    /// store ignores it. See [`SnapshotPolicy::compress_over`].
    pub fn snapshot_compress_over(mut self, bytes: Option<usize>) -> Self {
        self.policy.compress_over = bytes;
        self
    }

    /// The longest a snapshot read or write may take (replaces the declared
    /// `#[snapshot(timeout = ...)]`, default
    /// [`DEFAULT_SNAPSHOT_TIMEOUT`](crate::snapshot::DEFAULT_SNAPSHOT_TIMEOUT)). Past it
    /// a load replays from the events and a save stands without its snapshot. Zero is
    /// refused by [`build`](Self::build).
    pub fn snapshot_timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() {
            self.invalid = Some(Error::invalid(
                "snapshot_timeout",
                "snapshot_timeout must be above zero",
            ));
        }
        self.policy.timeout = timeout;
        self
    }

    /// Reads the current time from `clock` instead of the system clock: the `now` that
    /// snapshot strategies decide with, and the time snapshots are stamped with. For
    /// tests of time-based policies.
    pub fn clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How [`execute`](AggregateRepository::execute) retries a command whose save
    /// conflicted ([`ConflictRetry::default`] unless set).
    pub fn conflict_retry(mut self, policy: ConflictRetry) -> Self {
        self.retry = policy;
        self
    }

    /// The repository, or the last invalid setting made.
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
        repo.retry = self.retry;
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
            retry: ConflictRetry::default(),
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

    fn from_parts(
        events: Arc<dyn EventStore>,
        snapshots: Option<Arc<dyn SnapshotStore>>,
        policy: SnapshotPolicy,
        max_background: usize,
    ) -> Self {
        let background = match (&snapshots, policy.mode) {
            (Some(store), SnapshotMode::Background) => Some(BackgroundWriter::new(
                Arc::clone(store),
                max_background,
                policy.timeout,
                policy.keep,
                policy.compress_over,
            )),
            _ => None,
        };
        AggregateRepository {
            events,
            snapshots,
            policy,
            background,
            clock: Arc::new(Utc::now),
            refused: Arc::default(),
            retry: ConflictRetry::default(),
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

    /// The policy in effect (declared, or overridden by the builder).
    pub fn snapshot_policy(&self) -> &SnapshotPolicy {
        &self.policy
    }

    /// A new aggregate at version 0; nothing is stored until it is saved.
    pub fn create_new(&self, id: Uuid) -> AggregateRoot<A> {
        AggregateRoot::new(id)
    }

    /// Runs `command` on the aggregate and saves the events it returns; on a conflict
    /// with another writer, loads again and re-runs it, as the repository's
    /// [`ConflictRetry`] says. See the [`command`](crate::command) module.
    ///
    /// The aggregate must exist ([`Error::NotFound`] otherwise, as
    /// [`CommandError::Store`]).
    pub async fn execute<C: Command<A>>(
        &self,
        id: Uuid,
        command: C,
    ) -> std::result::Result<Executed<A>, CommandError<C::Error>> {
        self.run_command(id, &command, &CommandOptions::default(), Create::Never)
            .await
    }

    /// [`execute`](Self::execute) with per-command metadata and an optional command id.
    pub async fn execute_with<C: Command<A>>(
        &self,
        id: Uuid,
        command: C,
        options: CommandOptions,
    ) -> std::result::Result<Executed<A>, CommandError<C::Error>> {
        self.run_command(id, &command, &options, Create::Never)
            .await
    }

    /// Runs `command` on a new aggregate (the default state) and saves its events. If the
    /// aggregate already exists, nothing is written and the error is an
    /// [`Error::Conflict`] expecting version 0 (its message says the aggregate already
    /// exists); it is not retried.
    pub async fn execute_new<C: Command<A>>(
        &self,
        id: Uuid,
        command: C,
    ) -> std::result::Result<Executed<A>, CommandError<C::Error>> {
        self.run_command(id, &command, &CommandOptions::default(), Create::New)
            .await
    }

    /// [`execute_new`](Self::execute_new) with per-command metadata and a command id.
    pub async fn execute_new_with<C: Command<A>>(
        &self,
        id: Uuid,
        command: C,
        options: CommandOptions,
    ) -> std::result::Result<Executed<A>, CommandError<C::Error>> {
        self.run_command(id, &command, &options, Create::New).await
    }

    /// Runs `command` on the aggregate, or on a new one if it has no events, with
    /// conflict retries.
    pub async fn execute_or_create<C: Command<A>>(
        &self,
        id: Uuid,
        command: C,
        options: CommandOptions,
    ) -> std::result::Result<Executed<A>, CommandError<C::Error>> {
        self.run_command(id, &command, &options, Create::IfMissing)
            .await
    }

    async fn run_command<C: Command<A>>(
        &self,
        id: Uuid,
        command: &C,
        options: &CommandOptions,
        create: Create,
    ) -> std::result::Result<Executed<A>, CommandError<C::Error>> {
        let max = self.retry.max_attempts.max(1);
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(command_id) = options.command_id
                && let Some(done) = self.find_command(id, command_id, attempts).await?
            {
                return Ok(done);
            }
            let mut root = match create {
                Create::Never => self.load(id).await?,
                Create::New => AggregateRoot::new(id),
                Create::IfMissing => self.load_or_create(id).await?,
            };
            let mut decided = Vec::new();
            command
                .handle(root.state())
                .await
                .map_err(CommandError::Rejected)?
                .into_events(&mut decided);
            let events = decided.clone();
            for (i, event) in decided.into_iter().enumerate() {
                let event_id = match options.command_id {
                    Some(c) => crate::command::event_id(c, i as u64),
                    None => Uuid::new_v4(),
                };
                root.record_with(event, event_id, &options.metadata);
            }
            match self.save(&mut root).await {
                Ok(()) => {
                    return Ok(Executed {
                        root,
                        events,
                        attempts,
                        already_applied: false,
                    });
                }
                Err(e @ Error::Conflict { .. }) => {
                    if create == Create::New {
                        return Err(CommandError::Store(e));
                    }
                    if attempts >= max {
                        return Err(CommandError::Conflict {
                            attempts,
                            source: e,
                        });
                    }
                    tracing::debug!(aggregate_type = A::TYPE, aggregate_id = %id, attempts, "eventsource: command conflicted; running it again");
                    crate::time::pause(self.retry.backoff(attempts)).await;
                }
                // Another run of the same command id appended meanwhile: report it.
                Err(Error::DuplicateEventId { .. })
                    if options.command_id.is_some() && attempts < max => {}
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
    }

    /// The outcome of an earlier run of `command_id` on this aggregate, if there was one.
    async fn find_command(
        &self,
        id: Uuid,
        command_id: Uuid,
        attempts: u32,
    ) -> Result<Option<Executed<A>>> {
        let first = crate::command::event_id(command_id, 0);
        let Some(found) = self.events.find_event(first).await? else {
            return Ok(None);
        };
        if found.aggregate_type != A::TYPE || found.aggregate_id != id {
            return Err(Error::invalid(
                "command_id",
                format!(
                    "command id {command_id} was already run on {}/{}, not on {}/{id}",
                    found.aggregate_type,
                    found.aggregate_id,
                    A::TYPE
                ),
            ));
        }
        let mut events = Vec::new();
        let mut next = 0u64;
        let mut failed = None;
        self.events
            .read_stream(A::TYPE, id, found.version, &mut |e| {
                if failed.is_some() || e.event_id != crate::command::event_id(command_id, next) {
                    return Ok(());
                }
                match <A::Event as DomainEvent>::decode(e.event_type, e.event_version, e.payload) {
                    Ok(decoded) => events.extend(decoded),
                    Err(source) => {
                        failed = Some(Error::EventDecode {
                            aggregate_type: A::TYPE.to_owned(),
                            aggregate_id: id,
                            version: e.version,
                            event_type: e.event_type.to_owned(),
                            event_version: e.event_version,
                            source,
                        })
                    }
                }
                next += 1;
                Ok(())
            })
            .await?;
        if let Some(e) = failed {
            return Err(e);
        }
        let root = self.load(id).await?;
        Ok(Some(Executed {
            root,
            events,
            attempts,
            already_applied: true,
        }))
    }

    /// The ids of this type's aggregates, in id order, after `after` when given, at most
    /// `limit`: page on with the last id of a page.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eventsource::Result<()> {
    /// # use eventsource::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Opened;
    /// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Opened(Opened) }
    /// # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
    /// # #[aggregate(name = "Account", event = AccountEvent)]
    /// # pub struct Account;
    /// # impl Apply<Opened> for Account { fn apply(&mut self, _: &Opened) {} }
    /// let repo = AggregateRepository::<Account>::new(std::sync::Arc::new(InMemoryEventStore::new()));
    /// for _ in 0..5 {
    ///     repo.execute_new(uuid::Uuid::new_v4(), |_: &Account| Ok::<_, String>(Opened)).await.unwrap();
    /// }
    /// let mut all = Vec::new();
    /// let mut after = None;
    /// loop {
    ///     let page = repo.aggregate_ids(after, 2).await?;
    ///     let Some(last) = page.last() else { break };
    ///     after = Some(*last);
    ///     all.extend(page);
    /// }
    /// assert_eq!(all.len(), 5);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn aggregate_ids(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<Uuid>> {
        self.events.aggregate_ids(A::TYPE, after, limit).await
    }

    /// The aggregate's current version (its last event's), without loading it; `None`
    /// when it has no events.
    pub async fn version(&self, id: Uuid) -> Result<Option<u64>> {
        self.events.stream_version(A::TYPE, id).await
    }

    /// `true` if the aggregate has at least one stored event.
    pub async fn exists(&self, id: Uuid) -> Result<bool> {
        Ok(self.events.stream_version(A::TYPE, id).await?.is_some())
    }

    /// Loads the aggregate, or returns [`Error::NotFound`] if it has no events.
    pub async fn load(&self, id: Uuid) -> Result<AggregateRoot<A>> {
        let root = self.load_root(id).await;
        self.record_load(&root);
        let root = root?;
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
        let root = self.load_root(id).await;
        self.record_load(&root);
        root
    }

    /// Reports a load to the [metrics](crate::metrics): its outcome, time and events
    /// replayed, and, with a snapshot store, the snapshot hit or why it missed.
    fn record_load(&self, loaded: &Result<AggregateRoot<A>>) {
        match loaded {
            Err(Error::NotFound { .. }) => crate::metrics::load(A::TYPE, "not_found"),
            Err(_) => crate::metrics::load(A::TYPE, "error"),
            Ok(root) if root.version() == 0 => crate::metrics::load(A::TYPE, "not_found"),
            Ok(root) => {
                let history = root.load_history();
                crate::metrics::loaded(
                    A::TYPE,
                    history.load_time,
                    history.events_replayed,
                    history.loaded_from_snapshot,
                );
                if self.snapshots.is_some() && !history.loaded_from_snapshot {
                    let miss = history.snapshot_miss.unwrap_or(SnapshotMiss::NoneStored);
                    crate::metrics::snapshot_miss(A::TYPE, miss);
                }
            }
        }
    }

    async fn load_root(&self, id: Uuid) -> Result<AggregateRoot<A>> {
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
            let mut ahead = false;
            let mut root = loop {
                match self.read(id, use_snapshot).await? {
                    Loaded::Root(root) => break root,
                    Loaded::SnapshotAhead(version) => {
                        tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id,
                            snapshot_version = version,
                            "snapshot is beyond the stream's last event; replaying all events \
                             and deleting it");
                        // Events are the truth: such a snapshot is wrong, and would block
                        // every later one (a snapshot never replaces a higher version).
                        if let Some(store) = &self.snapshots {
                            let limit = self.policy.timeout;
                            let deleted =
                                crate::time::within(limit, store.delete(A::TYPE, id)).await;
                            if let Some(Err(error)) = deleted {
                                tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id,
                                    %error, "could not delete the snapshot beyond the stream");
                            }
                        }
                        use_snapshot = false;
                        ahead = true;
                    }
                }
            };
            root.history_mut().load_time = started.elapsed();
            if ahead {
                root.history_mut().snapshot_miss = Some(SnapshotMiss::AheadOfStream);
            }
            let span = Span::current();
            span.record("version", root.version());
            span.record("snapshot_used", root.load_history().loaded_from_snapshot);
            span.record("events_replayed", root.load_history().events_replayed);
            Ok(root)
        }
        .instrument(span)
        .await
    }

    /// Loads the aggregate as it was at `version`: its state after its first `version`
    /// events, rebuilt from the newest snapshot at or below `version` (kept with
    /// [`SnapshotPolicy::keep`] above 1) and the events after it up to `version` only.
    ///
    /// The root's [`version`](AggregateRoot::version) is `version`, and its
    /// [`load_history`](AggregateRoot::load_history) says which snapshot it was built
    /// from, if any. As for [`load`](Self::load), a snapshot is never an error: one that
    /// is missing, fails, times out or does not decode makes the load replay the events.
    ///
    /// Errors: [`Error::InvalidInput`] (field `version`) for version 0, or a version past
    /// the stream's last event (the message says where the stream is);
    /// [`Error::NotFound`] when the aggregate has no events.
    ///
    /// ```
    /// # use eventsource::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
    /// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
    /// # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
    /// # #[aggregate(name = "Account", event = AccountEvent)]
    /// # #[snapshot(schema_version = 1, threshold = 10, mode = "sync")]
    /// # pub struct Account { pub cents: u64 }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.cents += e.cents; } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::num::NonZeroU32;
    /// use std::sync::Arc;
    ///
    /// let repo = AggregateRepository::<Account>::builder(Arc::new(InMemoryEventStore::new()))
    ///     .snapshot_store(Arc::new(InMemorySnapshotStore::new()))
    ///     .snapshot_keep(NonZeroU32::new(3).unwrap()) // snapshots at 10, 20 and 30
    ///     .build()?;
    /// let id = uuid::Uuid::new_v4();
    /// repo.execute_new(id, |_: &Account| Ok::<_, String>(Deposited { cents: 1 })).await?;
    /// for _ in 1..35 {
    ///     repo.execute(id, |_: &Account| Ok::<_, String>(Deposited { cents: 1 })).await?;
    /// }
    /// let then = repo.load_at(id, 25).await?; // the snapshot at 20, then 5 events
    /// assert_eq!((then.version(), then.state().cents), (25, 25));
    /// assert_eq!(then.load_history().snapshot_version, Some(20));
    /// assert_eq!(then.load_history().events_replayed, 5);
    /// // Past the stream's last event:
    /// assert!(matches!(
    ///     repo.load_at(id, 36).await,
    ///     Err(eventsource::Error::InvalidInput { field: "version", .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn load_at(&self, id: Uuid, version: u64) -> Result<AggregateRoot<A>> {
        let root = self.load_root_at(id, version).await;
        self.record_load(&root);
        root
    }

    async fn load_root_at(&self, id: Uuid, version: u64) -> Result<AggregateRoot<A>> {
        if version == 0 {
            return Err(Error::invalid(
                "version",
                format!(
                    "{}/{id}: there is no version 0 to load, versions start at 1",
                    A::TYPE
                ),
            ));
        }
        let span = tracing::info_span!(
            "eventsource.load_at",
            aggregate_type = A::TYPE,
            aggregate_id = %id,
            version,
            snapshot_used = field::Empty,
            events_replayed = field::Empty,
        );
        async move {
            let started = Instant::now();
            let mut snapshots = self.snapshots.as_deref();
            let mut ahead = false;
            let mut root = loop {
                let read = read_at::<A>(
                    self.events.as_ref(),
                    snapshots,
                    id,
                    version,
                    self.policy.timeout,
                );
                match read.await? {
                    Loaded::Root(root) => break root,
                    Loaded::SnapshotAhead(snapshot_version) => {
                        tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %id,
                            snapshot_version,
                            "snapshot is beyond the stream's last event; replaying the events");
                        snapshots = None;
                        ahead = true;
                    }
                }
            };
            if ahead {
                root.history_mut().snapshot_miss = Some(SnapshotMiss::AheadOfStream);
            }
            match root.version() {
                0 => {
                    return Err(Error::NotFound {
                        aggregate_type: A::TYPE.to_owned(),
                        aggregate_id: id,
                    });
                }
                reached if reached < version => {
                    return Err(Error::invalid(
                        "version",
                        format!(
                            "{}/{id} is at version {reached}: there is no version {version} \
                             to load",
                            A::TYPE
                        ),
                    ));
                }
                _ => {}
            }
            root.history_mut().load_time = started.elapsed();
            let span = Span::current();
            span.record("snapshot_used", root.load_history().loaded_from_snapshot);
            span.record("events_replayed", root.load_history().events_replayed);
            Ok(root)
        }
        .instrument(span)
        .await
    }

    /// Loads the aggregate as it was at `time`: after the longest run of its events,
    /// from the first on, that all occurred at or before `time` (up to the event before
    /// the first that occurred after it), as [`load_at`](Self::load_at) that version.
    ///
    /// Times are compared at the microsecond precision every store keeps. Errors:
    /// [`Error::NotFound`] when the aggregate has no events, or its first event occurred
    /// after `time`.
    ///
    /// ```
    /// # use eventsource::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
    /// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
    /// # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
    /// # #[aggregate(name = "Account", event = AccountEvent)]
    /// # #[snapshot(schema_version = 1, threshold = 10, mode = "sync")]
    /// # pub struct Account { pub cents: u64 }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.cents += e.cents; } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let repo = AggregateRepository::<Account>::new(Arc::new(InMemoryEventStore::new()));
    /// let id = uuid::Uuid::new_v4();
    /// let before = chrono::Utc::now();
    /// tokio::time::sleep(Duration::from_millis(2)).await;
    /// repo.execute_new(id, |_: &Account| Ok::<_, String>(Deposited { cents: 7 })).await?;
    /// tokio::time::sleep(Duration::from_millis(2)).await;
    /// let noon = chrono::Utc::now();
    /// tokio::time::sleep(Duration::from_millis(2)).await;
    /// repo.execute(id, |_: &Account| Ok::<_, String>(Deposited { cents: 3 })).await?;
    ///
    /// let then = repo.load_as_of(id, noon).await?;
    /// assert_eq!((then.version(), then.state().cents), (1, 7));
    /// // Before its first event, the aggregate did not exist.
    /// assert!(matches!(repo.load_as_of(id, before).await, Err(eventsource::Error::NotFound { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn load_as_of(&self, id: Uuid, time: DateTime<Utc>) -> Result<AggregateRoot<A>> {
        // Stored times are whole microseconds: one is at or before `time` exactly when it
        // is at or before `time` cut to the microsecond.
        let time = time.trunc_subsecs(6);
        match self.events.version_as_of(A::TYPE, id, time).await? {
            Some(version) => self.load_at(id, version).await,
            None => Err(Error::NotFound {
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: id,
            }),
        }
    }

    /// Reads the aggregate, starting from its snapshot if `use_snapshot` and there is a
    /// usable one.
    async fn read(&self, id: Uuid, use_snapshot: bool) -> Result<Loaded<A>> {
        let mut loader = Loader::<A>::new(id, self.policy.timeout);
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
        let started = Instant::now();
        let saved = async move {
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
        .await;
        match &saved {
            Ok(()) => crate::metrics::save(A::TYPE, "ok", Some(started.elapsed())),
            Err(Error::Conflict { .. }) => crate::metrics::save(A::TYPE, "conflict", None),
            Err(_) => crate::metrics::save(A::TYPE, "error", None),
        }
        saved
    }

    /// The events to append, each refused unless its payload decodes back: a NaN or an
    /// infinite float is written as `null` by JSON, and would make every later load fail.
    fn encode(&self, root: &AggregateRoot<A>) -> Result<Vec<NewEvent>> {
        root.uncommitted()
            .iter()
            .map(|u| {
                let payload = u.event.to_payload().map_err(|source| Error::Encode {
                    aggregate_type: A::TYPE.to_owned(),
                    what: u.event.event_type().to_owned(),
                    source,
                })?;
                if let Err(e) =
                    A::Event::from_payload(u.event.event_type(), u.event.event_version(), &payload)
                {
                    return Err(Error::NotRoundTrip {
                        aggregate_type: A::TYPE.to_owned(),
                        aggregate_id: root.id(),
                        event_type: Some(u.event.event_type().to_owned()),
                        event_id: Some(u.event_id),
                        reason: format!(
                            "its JSON payload {payload:.200} does not decode ({e}); \
                             NaN and infinite floats are written as null"
                        ),
                    });
                }
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
                self.report_refusal(root.id(), &error);
                return;
            }
        };
        Span::current().record("snapshot", self.policy.mode.as_str());
        let (version, created_at) = (snapshot.version, snapshot.created_at);
        let written = match &self.background {
            Some(background) => background.schedule(snapshot),
            None => match self.write(store.as_ref(), &snapshot, "sync").await {
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

    /// Writes a snapshot within the policy's timeout (cancelled past it), keeping the
    /// policy's number of snapshots.
    /// `mode` is the metrics label: `sync` after a save, `manual` for `create_snapshot`.
    async fn write(
        &self,
        store: &dyn SnapshotStore,
        snapshot: &Snapshot,
        mode: &'static str,
    ) -> Result<()> {
        let limit = self.policy.timeout;
        let started = Instant::now();
        let save = store.save_compressing(snapshot, self.policy.keep, self.policy.compress_over);
        let written = crate::time::within(limit, save)
            .await
            .unwrap_or_else(|| Err(Error::timeout("writing the snapshot", limit)));
        match &written {
            Ok(()) => crate::metrics::snapshot_written(
                A::TYPE,
                mode,
                started.elapsed(),
                snapshot.state.len(),
            ),
            Err(error) => crate::metrics::snapshot_write_failed(A::TYPE, error),
        }
        written
    }

    /// A state refused as a snapshot: an error in the log the first time for an
    /// aggregate, a debug line after that.
    fn report_refusal(&self, id: Uuid, error: &Error) {
        crate::metrics::snapshot_write_failed(A::TYPE, error);
        let first = {
            let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
            refused.len() < MAX_REMEMBERED_REFUSALS && refused.insert(id)
        };
        if first {
            tracing::error!(aggregate_type = A::TYPE, aggregate_id = %id, %error,
                "the state cannot be stored as a snapshot; loads replay its events until it can (logged once)");
        } else {
            tracing::debug!(aggregate_type = A::TYPE, aggregate_id = %id, %error,
                "the state cannot be stored as a snapshot");
        }
    }

    /// The snapshot of the root's state, refused unless every store can keep it and it
    /// loads back as the same state: decoding its JSON and encoding the result again
    /// gives the same JSON value. A state with NaN, an infinite float or a map that does
    /// not survive JSON would otherwise be restored wrong, or fail on every load.
    fn capture(&self, root: &AggregateRoot<A>, now: DateTime<Utc>) -> Result<Snapshot> {
        let state = root.state().to_snapshot().map_err(|source| Error::Encode {
            aggregate_type: A::TYPE.to_owned(),
            what: "state".to_owned(),
            source,
        })?;
        let refused = |reason: String| Error::NotRoundTrip {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: root.id(),
            event_type: None,
            event_id: None,
            reason,
        };
        let restored = A::from_snapshot(&state).map_err(|e| {
            refused(format!(
                "its JSON does not decode ({e}); NaN and infinite floats are written as null"
            ))
        })?;
        let again = restored
            .to_snapshot()
            .map_err(|e| refused(format!("the decoded state does not encode again ({e})")))?;
        if again != state {
            let (a, b) = (
                serde_json::from_str::<serde_json::Value>(&state),
                serde_json::from_str::<serde_json::Value>(&again),
            );
            if !matches!((a, b), (Ok(a), Ok(b)) if a == b) {
                return Err(refused(
                    "the state decoded from its JSON encodes to different JSON".to_owned(),
                ));
            }
        }
        let snapshot = Snapshot {
            aggregate_id: root.id(),
            aggregate_type: A::TYPE.to_owned(),
            version: root.version(),
            schema_version: A::SCHEMA_VERSION,
            state,
            // Microseconds, as every store keeps them.
            created_at: now.trunc_subsecs(6),
        };
        checks::snapshot(&snapshot)?;
        Ok(snapshot)
    }

    /// Takes a snapshot of a saved aggregate now, whatever the mode and strategy, and
    /// writes it before returning.
    ///
    /// Errors: [`Error::NoSnapshotStore`] without a snapshot store;
    /// [`Error::InvalidInput`] for an aggregate with unsaved events or no events at all
    /// (a snapshot must describe stored events only), or a state no store can keep;
    /// [`Error::NotRoundTrip`] for a state that would not load back as it is;
    /// [`Error::Timeout`] when the write takes longer than the snapshot timeout.
    pub async fn create_snapshot(&self, root: &mut AggregateRoot<A>) -> Result<Snapshot> {
        let Some(store) = &self.snapshots else {
            return Err(Error::NoSnapshotStore {
                aggregate_type: A::TYPE.to_owned(),
            });
        };
        if root.has_changes() {
            return Err(Error::invalid(
                "aggregate",
                format!(
                    "{}/{} has {} unsaved events; save it before taking a snapshot",
                    A::TYPE,
                    root.id(),
                    root.uncommitted().len()
                ),
            ));
        }
        if root.version() == 0 {
            return Err(Error::invalid(
                "aggregate",
                format!(
                    "{}/{} has no events; there is nothing to snapshot",
                    A::TYPE,
                    root.id()
                ),
            ));
        }
        let snapshot = self
            .capture(root, (self.clock)())
            .inspect_err(|e| crate::metrics::snapshot_write_failed(A::TYPE, e))?;
        let span = tracing::info_span!("eventsource.create_snapshot", aggregate_type = A::TYPE,
            aggregate_id = %root.id(), version = snapshot.version);
        self.write(store.as_ref(), &snapshot, "manual")
            .instrument(span)
            .await?;
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
    ///
    /// Each write is bounded by the snapshot timeout, so this returns once the queue has
    /// drained even when the store hangs; to bound the wait itself, use
    /// [`await_pending_snapshots_within`](Self::await_pending_snapshots_within).
    pub async fn await_pending_snapshots(&self) -> usize {
        match &self.background {
            Some(background) => background.wait_idle().await,
            None => 0,
        }
    }

    /// Like [`await_pending_snapshots`](Self::await_pending_snapshots), for at most
    /// `limit`: [`Error::Timeout`] if snapshots are still pending then (they carry on).
    pub async fn await_pending_snapshots_within(&self, limit: Duration) -> Result<usize> {
        crate::time::within(limit, self.await_pending_snapshots())
            .await
            .ok_or_else(|| Error::timeout("waiting for background snapshots", limit))
    }
}
