//! The subscription loop: read a batch, handle it in one transaction with its checkpoint,
//! retry or park what fails, wait for more.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use super::{
    Consumer, OnExhausted, ParkedEvent, Projected, Projection, RetryPolicy, SubscriptionStore,
    check_name, partition_of,
};
use crate::error::{Error, Result};
use crate::feed::{Checkpoint, FeedEvent, FeedQuery};

/// A named, checkpointed consumer of a store's feed. See the [module docs](super).
///
/// Built with [`new`](Self::new) and the builder methods, then run with
/// [`catch_up`](Self::catch_up) (until the end of the feed), [`run`](Self::run) (until a
/// shutdown future completes), [`spawn`](Self::spawn) (on a task, with a handle), or
/// [`run_partitioned`](Self::run_partitioned) (sharing partitions with other processes).
#[derive(Clone, Debug)]
pub struct Subscription<S> {
    name: String,
    store: S,
    batch_size: usize,
    aggregate_types: Option<Vec<String>>,
    retry: RetryPolicy,
    poll_interval: Duration,
    stall_warning: Duration,
    partitions: u32,
    lease: Duration,
    owner: String,
}

/// How often a subscription that is catching up measures its lag in events.
const LAG_PROBE_EVERY: Duration = Duration::from_secs(5);

/// What a running subscription has done, as last reported.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SubscriptionStatus {
    /// The last checkpoint committed (of the last partition that committed).
    pub checkpoint: Checkpoint,
    /// Events handled and committed since the start.
    pub handled: u64,
    /// Events parked since the start.
    pub parked: u64,
    /// How long the feed has been held back by an older running transaction, if it is.
    pub held_back_for: Option<Duration>,
    /// How many times a hold-back lasted past the stall warning.
    pub stalls: u64,
    /// Whether the subscription has caught up with the end of the feed at least once.
    pub caught_up: bool,
}

/// A subscription running on a task: [`stop`](Self::stop) it to have it finish its batch
/// and hand the projection back.
#[derive(Debug)]
pub struct SubscriptionHandle<C> {
    stop: watch::Sender<bool>,
    status: watch::Receiver<SubscriptionStatus>,
    task: tokio::task::JoinHandle<Result<C>>,
}

impl<C> SubscriptionHandle<C> {
    /// The latest status.
    pub fn status(&self) -> SubscriptionStatus {
        self.status.borrow().clone()
    }

    /// Waits until the status satisfies `done` (say, `|s| s.handled >= 100`), or `limit`
    /// passes; returns whether it did.
    ///
    /// Waiting for a checkpoint taken from [`read_feed`](crate::EventStore::read_feed)
    /// is not the same: on PostgreSQL a page's `next` can lie before events that
    /// committed earlier but are held back by an older open transaction.
    pub async fn wait_until(
        &mut self,
        done: impl FnMut(&SubscriptionStatus) -> bool,
        limit: Duration,
    ) -> bool {
        crate::time::within(limit, self.status.wait_for(done))
            .await
            .is_some_and(|r| r.is_ok())
    }

    /// A receiver of the status, to share (say, with a health check) while this handle
    /// keeps the power to stop the subscription.
    pub fn status_receiver(&self) -> watch::Receiver<SubscriptionStatus> {
        self.status.clone()
    }

    /// `true` once the subscription's task has ended (stopped, or failed: see
    /// [`join`](Self::join) for why).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks it to stop after the batch in hand, and returns the consumer, or the error
    /// that stopped it.
    pub async fn stop(self) -> Result<C> {
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Waits for it to end on its own (an error, or [`OnExhausted::Stop`]).
    pub async fn join(self) -> Result<C> {
        self.task
            .await
            .map_err(|e| Error::backend(format!("subscription task failed: {e}")))?
    }
}

/// Why a partition worker is told to stop, polled between batches.
#[derive(Clone)]
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Sleeps `d` or until a stop is requested; `true` if it was.
    async fn sleep(&mut self, d: Duration) -> bool {
        if self.requested() {
            return true;
        }
        let _ = crate::time::within(d, self.0.wait_for(|s| *s)).await;
        self.requested()
    }
}

/// How a worker ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At the end of the feed.
    CatchUp,
    /// When stopped.
    Follow,
}

impl<S: SubscriptionStore> Subscription<S> {
    /// A subscription named `name` (1 to 255 bytes) on `store`: batches of 500, the
    /// default [`RetryPolicy`], one partition, a 1 s poll.
    pub fn new(name: impl Into<String>, store: S) -> Self {
        Subscription {
            name: name.into(),
            store,
            batch_size: 500,
            aggregate_types: None,
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_secs(1),
            stall_warning: Duration::from_secs(10),
            partitions: 1,
            lease: Duration::from_secs(10),
            owner: format!("{}-{}", std::process::id(), Uuid::new_v4()),
        }
    }

    /// The events handled per transaction (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Only events of these aggregate types.
    pub fn aggregate_types<I, T>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.aggregate_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// How failing events are retried, then parked or not.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How often an idle subscription reads the feed without a wake-up (so that a lost
    /// notification, or an append from a process that sends none, waits at most this).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How long the feed may be held back by an older transaction before a warning is
    /// logged (10 s by default).
    pub fn stall_warning(mut self, after: Duration) -> Self {
        self.stall_warning = after;
        self
    }

    /// Splits the subscription into `n` partitions by aggregate id (at least 1). Changing
    /// the number of an existing subscription moves aggregates between partitions: stop
    /// every process and [`reset`](Self::reset) first.
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = n.max(1);
        self
    }

    /// How long a partition's lease lasts without renewal (10 s by default); leases are
    /// renewed every third of it. A process that dies has its partitions taken over
    /// within about `ttl * 4 / 3`.
    pub fn lease(mut self, ttl: Duration) -> Self {
        self.lease = ttl.max(Duration::from_millis(30));
        self
    }

    /// The name this process holds leases under (a unique one by default).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `projection` from the checkpoint to the end of the feed, committing as it
    /// goes, and returns it. With several partitions, runs each in turn.
    ///
    /// On PostgreSQL, events that committed behind an older transaction still open are
    /// part of the feed's end: `catch_up` waits for that transaction (logging a stall
    /// warning after [`stall_warning`](Self::stall_warning)) rather than return without
    /// them.
    pub async fn catch_up<P>(&self, projection: P) -> Result<P>
    where
        P: Projection<S::Connection>,
    {
        self.catch_up_with(Projected(projection)).await.map(|p| p.0)
    }

    /// [`catch_up`](Self::catch_up) with any [`Consumer`].
    pub async fn catch_up_with<C>(&self, mut consumer: C) -> Result<C>
    where
        C: Consumer<S::Connection>,
    {
        check_name(&self.name)?;
        let (_stop_tx, stop) = watch::channel(false);
        let (status, _) = watch::channel(SubscriptionStatus::default());
        for partition in 0..self.partitions {
            self.work(
                &mut consumer,
                partition,
                Mode::CatchUp,
                Stop(stop.clone()),
                &status,
            )
            .await?;
        }
        Ok(consumer)
    }

    /// Runs `projection`, following the feed live, until `shutdown` completes; then
    /// finishes the batch in hand and returns it. Only for one partition: see
    /// [`run_partitioned`](Self::run_partitioned).
    pub async fn run<P>(
        &self,
        projection: P,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<P>
    where
        P: Projection<S::Connection>,
    {
        self.run_with(Projected(projection), shutdown)
            .await
            .map(|p| p.0)
    }

    /// [`run`](Self::run) with any [`Consumer`].
    pub async fn run_with<C>(
        &self,
        mut consumer: C,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<C>
    where
        C: Consumer<S::Connection>,
    {
        let (status, _) = watch::channel(SubscriptionStatus::default());
        self.follow(&mut consumer, shutdown, &status).await?;
        Ok(consumer)
    }

    async fn follow<C>(
        &self,
        consumer: &mut C,
        shutdown: impl Future<Output = ()> + Send,
        status: &watch::Sender<SubscriptionStatus>,
    ) -> Result<()>
    where
        C: Consumer<S::Connection>,
    {
        check_name(&self.name)?;
        if self.partitions != 1 {
            return Err(Error::invalid(
                "partitions",
                format!(
                    "subscription `{}` has {} partitions: run it with run_partitioned",
                    self.name, self.partitions
                ),
            ));
        }
        let (stop_tx, stop) = watch::channel(false);
        let work = self.work(consumer, 0, Mode::Follow, Stop(stop), status);
        tokio::pin!(work);
        tokio::pin!(shutdown);
        let mut asked = false;
        loop {
            tokio::select! {
                r = &mut work => return r,
                () = &mut shutdown, if !asked => {
                    asked = true;
                    let _ = stop_tx.send(true);
                }
            }
        }
    }

    /// Runs `projection` on a task, following the feed live.
    pub fn spawn<P>(self, projection: P) -> SubscriptionHandle<P>
    where
        P: Projection<S::Connection> + 'static,
        S: Send + Sync,
    {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(SubscriptionStatus::default());
        let task = tokio::spawn(async move {
            let mut consumer = Projected(projection);
            let shutdown = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            self.follow(&mut consumer, shutdown, &status_tx).await?;
            Ok(consumer.0)
        });
        SubscriptionHandle {
            stop: stop_tx,
            status,
            task,
        }
    }

    /// Runs the partitions this process holds leases on, each on its own task with a
    /// consumer from `make(partition)`, until `shutdown` completes; then finishes the
    /// batches in hand and gives the leases up.
    ///
    /// Every third of the [lease time](Self::lease) it renews its leases, counts the live
    /// processes, and takes free or expired partitions up to its fair share (or gives up
    /// what it holds beyond it).
    pub async fn run_partitioned<C, F>(
        &self,
        mut make: F,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()>
    where
        C: Consumer<S::Connection> + 'static,
        F: FnMut(u32) -> C + Send,
        S: Send + Sync,
    {
        check_name(&self.name)?;
        crate::store::checks::name("owner", &self.owner)?;
        let this = Arc::new(self.clone());
        let tick = self.lease / 3;
        let mut workers: HashMap<u32, (watch::Sender<bool>, tokio::task::JoinHandle<Result<()>>)> =
            HashMap::new();
        tokio::pin!(shutdown);
        let outcome = loop {
            // Reap workers that ended on their own.
            let ended: Vec<u32> = workers
                .iter()
                .filter(|(_, (_, t))| t.is_finished())
                .map(|(p, _)| *p)
                .collect();
            for p in ended {
                let (_, task) = workers.remove(&p).expect("listed");
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(subscription = %self.name, partition = p, error = %e, "eventsource: partition stopped");
                        if matches!(e, Error::HandlerFailed { .. }) {
                            break_all(&mut workers).await;
                            let _ = self.store.release(&self.name, &self.owner, None).await;
                            return Err(e);
                        }
                    }
                    Err(e) => {
                        tracing::error!(subscription = %self.name, partition = p, error = %e, "eventsource: partition task failed")
                    }
                }
            }
            match self
                .store
                .heartbeat(&self.name, &self.owner, self.lease)
                .await
            {
                Ok((held, members)) => {
                    let want = (self.partitions as usize).div_ceil(members.max(1));
                    // Lost leases: stop their workers.
                    let lost: Vec<u32> = workers
                        .keys()
                        .filter(|p| !held.contains(p))
                        .copied()
                        .collect();
                    for p in lost {
                        if let Some((stop, task)) = workers.remove(&p) {
                            let _ = stop.send(true);
                            let _ = task.await;
                        }
                    }
                    let mut mine: Vec<u32> = held.clone();
                    if mine.len() < want {
                        let offset =
                            (Uuid::new_v4().as_u128() % u128::from(self.partitions)) as u32;
                        for i in 0..self.partitions {
                            if mine.len() >= want {
                                break;
                            }
                            let p = (offset + i) % self.partitions;
                            if mine.contains(&p) {
                                continue;
                            }
                            match self
                                .store
                                .claim(&self.name, &self.owner, p, self.lease)
                                .await
                            {
                                Ok(true) => mine.push(p),
                                Ok(false) => {}
                                Err(e) => {
                                    tracing::warn!(subscription = %self.name, error = %e, "eventsource: claiming a partition failed")
                                }
                            }
                        }
                    }
                    while mine.len() > want {
                        let p = mine.pop().expect("non-empty");
                        if let Some((stop, task)) = workers.remove(&p) {
                            let _ = stop.send(true);
                            let _ = task.await;
                        }
                        if let Err(e) = self.store.release(&self.name, &self.owner, Some(p)).await {
                            tracing::warn!(subscription = %self.name, error = %e, "eventsource: releasing a partition failed");
                        }
                    }
                    for p in mine {
                        if workers.contains_key(&p) {
                            continue;
                        }
                        let (stop_tx, stop) = watch::channel(false);
                        let this = Arc::clone(&this);
                        let mut consumer = make(p);
                        let task = tokio::spawn(async move {
                            let (status, _) = watch::channel(SubscriptionStatus::default());
                            this.work(&mut consumer, p, Mode::Follow, Stop(stop), &status)
                                .await
                        });
                        workers.insert(p, (stop_tx, task));
                    }
                }
                Err(e) => {
                    tracing::warn!(subscription = %self.name, error = %e, "eventsource: lease renewal failed");
                }
            }
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                () = tokio::time::sleep(tick) => {}
            }
        };
        break_all(&mut workers).await;
        self.store.release(&self.name, &self.owner, None).await?;
        outcome
    }

    /// The checkpoint of every partition.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        check_name(&self.name)?;
        let mut out = Vec::with_capacity(self.partitions as usize);
        for p in 0..self.partitions {
            out.push(self.store.checkpoint(&self.name, p).await?);
        }
        Ok(out)
    }

    /// Sets every partition's checkpoint (to [`Checkpoint::START`] to rebuild a read model
    /// from scratch). Stop the subscription everywhere first.
    pub async fn reset(&self, checkpoint: Checkpoint) -> Result<()> {
        check_name(&self.name)?;
        for p in 0..self.partitions {
            self.store.set_checkpoint(&self.name, p, checkpoint).await?;
        }
        Ok(())
    }

    /// The events this subscription parked.
    pub async fn parked(&self) -> Result<Vec<ParkedEvent>> {
        check_name(&self.name)?;
        self.store.parked(&self.name).await
    }

    /// Runs a parked event through `projection` again, in one transaction with its
    /// removal from the parked list. `Ok(false)` when it is not parked; the handler's
    /// error, with the event still parked, when it fails again.
    pub async fn retry_parked<P>(&self, event_id: Uuid, projection: &mut P) -> Result<bool>
    where
        P: Projection<S::Connection>,
    {
        check_name(&self.name)?;
        let Some((_, event)) = self.store.parked_event(&self.name, event_id).await? else {
            return Ok(false);
        };
        let envelopes = crate::feed::Envelope::<P::Event>::decode_all(&event)?;
        let mut tx = self.store.begin().await?;
        for envelope in envelopes {
            projection
                .apply(&mut tx, envelope)
                .await
                .map_err(|source| Error::HandlerFailed {
                    subscription: self.name.clone(),
                    event_id,
                    position: event.event.position,
                    attempts: 1,
                    source,
                })?;
        }
        self.store.unpark(tx, &self.name, event_id).await
    }

    /// [`retry_parked`](Self::retry_parked) with any [`Consumer`] (a publisher, say): its
    /// [`before_commit`](Consumer::before_commit) confirms the event before it is
    /// unparked.
    pub async fn retry_parked_with<C>(&self, event_id: Uuid, consumer: &mut C) -> Result<bool>
    where
        C: Consumer<S::Connection>,
    {
        check_name(&self.name)?;
        let Some((_, event)) = self.store.parked_event(&self.name, event_id).await? else {
            return Ok(false);
        };
        let mut tx = self.store.begin().await?;
        let outcome = match consumer.consume(&mut tx, &event).await {
            Ok(()) => consumer.before_commit(&mut tx).await,
            Err(e) => Err(e),
        };
        outcome.map_err(|source| Error::HandlerFailed {
            subscription: self.name.clone(),
            event_id,
            position: event.event.position,
            attempts: 1,
            source,
        })?;
        self.store.unpark(tx, &self.name, event_id).await
    }

    /// Removes a parked event without handling it; it is logged. `Ok(false)` when it was
    /// not parked.
    pub async fn skip_parked(&self, event_id: Uuid) -> Result<bool> {
        check_name(&self.name)?;
        let tx = self.store.begin().await?;
        let removed = self.store.unpark(tx, &self.name, event_id).await?;
        if removed {
            tracing::warn!(subscription = %self.name, %event_id, "eventsource: parked event skipped");
        }
        Ok(removed)
    }

    /// One partition's loop.
    async fn work<C>(
        &self,
        consumer: &mut C,
        partition: u32,
        mode: Mode,
        mut stop: Stop,
        status: &watch::Sender<SubscriptionStatus>,
    ) -> Result<()>
    where
        C: Consumer<S::Connection>,
    {
        let Some(start) = self
            .retrying(&mut stop, "reading the checkpoint", || {
                self.store.checkpoint(&self.name, partition)
            })
            .await?
        else {
            return Ok(());
        };
        let mut stored = start;
        let mut read_at = start;
        let mut wakeup = if mode == Mode::Follow {
            Some(self.store.wakeup().await)
        } else {
            None
        };
        let event_types = consumer.event_types();
        let mut held_since: Option<Instant> = None;
        let mut warned = false;
        let mut held_wait = Duration::from_millis(2);
        let mut pending: Option<(Uuid, crate::BoxError)> = None;
        let mut prefetched: Option<(Checkpoint, Result<crate::feed::FeedPage>)> = None;
        // When the lag in events was last measured: at most every LAG_PROBE_EVERY.
        let mut lag_probed: Option<Instant> = None;
        loop {
            if stop.requested() {
                return Ok(());
            }
            let mut query = FeedQuery::after(read_at).limit(self.batch_size);
            query.aggregate_types = self.aggregate_types.clone();
            query.event_types = event_types.clone();
            let page = match prefetched.take() {
                Some((after, Ok(page))) if after == read_at => page,
                _ => {
                    let Some(page) = self
                        .retrying(&mut stop, "reading the feed", || {
                            self.store.read_feed(&query)
                        })
                        .await?
                    else {
                        return Ok(());
                    };
                    page
                }
            };
            let at_end = page.at_end(&query);
            // Stall tracking.
            if page.held_back && at_end {
                let since = *held_since.get_or_insert_with(Instant::now);
                let held_for = since.elapsed();
                if held_for >= self.stall_warning && !warned {
                    warned = true;
                    let by = self.store.describe_horizon().await.unwrap_or_default();
                    tracing::warn!(
                        subscription = %self.name,
                        partition,
                        held_for = ?held_for,
                        held_by = %by,
                        "eventsource: the feed is held back by an older transaction that is still open; \
                         committed events wait until it ends"
                    );
                    status.send_modify(|s| s.stalls += 1);
                }
                status.send_modify(|s| s.held_back_for = Some(held_for));
            } else if held_since.take().is_some() {
                warned = false;
                held_wait = Duration::from_millis(2);
                status.send_modify(|s| s.held_back_for = None);
            }

            let mine: Vec<&FeedEvent> = page
                .events
                .iter()
                .filter(|e| partition_of(e.event.aggregate_id, self.partitions) == partition)
                .collect();
            if !mine.is_empty() {
                let batch = self.handle_batch(
                    consumer,
                    partition,
                    &mine,
                    page.next,
                    stored,
                    &mut pending,
                    &mut stop,
                    status,
                );
                let outcome = if at_end {
                    batch.await?
                } else {
                    // More pages follow: read the next one while this batch is handled
                    // and committed. The feed below its horizon never changes, so the
                    // page stays right; it is used only if the whole batch committed.
                    let mut next = query.clone();
                    next.after = page.next;
                    let (outcome, read) = tokio::join!(batch, self.store.read_feed(&next));
                    prefetched = Some((page.next, read));
                    outcome?
                };
                match outcome {
                    Batch::Committed(to) => {
                        stored = to;
                        read_at = to;
                        if let Some(last) = mine.iter().rfind(|e| e.checkpoint <= to) {
                            let age = chrono::Utc::now() - last.event.occurred_at;
                            let seconds = age.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
                            crate::metrics::subscription_lag_seconds(&self.name, seconds);
                        }
                        if !at_end && lag_probed.is_none_or(|at| at.elapsed() >= LAG_PROBE_EVERY) {
                            lag_probed = Some(Instant::now());
                            if let Some(events) = self.store.events_after(to).await {
                                crate::metrics::subscription_lag_events(&self.name, events);
                            }
                        }
                        if to != page.next {
                            // Only part of the page committed (a failure in it): the rest
                            // is read again.
                            continue;
                        }
                    }
                    Batch::Moved => {
                        // Another process moved the checkpoint: start from where it is.
                        let Some(c) = self
                            .retrying(&mut stop, "reading the checkpoint", || {
                                self.store.checkpoint(&self.name, partition)
                            })
                            .await?
                        else {
                            return Ok(());
                        };
                        stored = c;
                        read_at = c;
                        continue;
                    }
                    Batch::Stopped => return Ok(()),
                }
                if !at_end {
                    continue;
                }
            } else {
                // Nothing for this partition: read on from there, and let the next commit
                // persist it.
                read_at = page.next;
            }
            if !at_end {
                continue;
            }
            status.send_modify(|s| s.caught_up = true);
            crate::metrics::subscription_lag_events(&self.name, 0);
            crate::metrics::subscription_lag_seconds(&self.name, 0.0);
            match mode {
                Mode::CatchUp => {
                    if page.held_back {
                        // Committed events wait behind an older open transaction: catching
                        // up means handling them too, so wait for it (the stall warning
                        // above says what holds the feed back).
                        held_wait = (held_wait * 2).min(Duration::from_millis(100));
                        if stop.sleep(held_wait).await {
                            return Ok(());
                        }
                        continue;
                    }
                    if read_at != stored {
                        // Persist the scan past events of other partitions or types; if
                        // another process moved the checkpoint meanwhile, it keeps its own.
                        let tx = self.store.begin().await?;
                        self.store
                            .commit(tx, &self.name, partition, stored, read_at, None)
                            .await?;
                    }
                    return Ok(());
                }
                Mode::Follow => {
                    let wait = if page.held_back {
                        held_wait = (held_wait * 2)
                            .min(Duration::from_millis(100))
                            .min(self.poll_interval);
                        held_wait
                    } else {
                        self.poll_interval
                    };
                    if let Some(w) = wakeup.as_mut() {
                        tokio::select! {
                            () = w.wait(wait) => {}
                            _ = stop.0.wait_for(|s| *s) => return Ok(()),
                        }
                    }
                }
            }
        }
    }

    /// Handles the partition's events of one page; see the module docs for the failure
    /// path.
    #[allow(clippy::too_many_arguments)]
    async fn handle_batch<C>(
        &self,
        consumer: &mut C,
        partition: u32,
        events: &[&FeedEvent],
        page_next: Checkpoint,
        stored: Checkpoint,
        pending: &mut Option<(Uuid, crate::BoxError)>,
        stop: &mut Stop,
        status: &watch::Sender<SubscriptionStatus>,
    ) -> Result<Batch>
    where
        C: Consumer<S::Connection>,
    {
        // An event that failed inside the previous batch, now first: its first attempt
        // is spent, so it goes straight to its retries.
        if let Some((id, err)) = pending.take()
            && events[0].event.event_id == id
        {
            return self
                .retry_alone(consumer, partition, events[0], stored, err, stop, status)
                .await;
        }
        let mut end = events.len();
        loop {
            let mut tx = self.begin(stop).await?;
            let Some(tx_ref) = tx.as_mut() else {
                return Ok(Batch::Stopped);
            };
            let mut failed = None;
            for (i, e) in events[..end].iter().enumerate() {
                if let Err(err) = consumer.consume(&mut **tx_ref, e).await {
                    failed = Some((i, err));
                    break;
                }
            }
            if failed.is_none()
                && let Err(err) = consumer.before_commit(&mut **tx_ref).await
            {
                drop(tx);
                tracing::warn!(subscription = %self.name, error = %err, "eventsource: batch not confirmed; it will run again");
                if stop.sleep(self.retry.backoff(1)).await {
                    return Ok(Batch::Stopped);
                }
                return Ok(Batch::Moved);
            }
            let tx = tx.take().expect("begun");
            match failed {
                None => {
                    // The whole page, or the prefix before a failure.
                    let to = if end == events.len() {
                        page_next
                    } else {
                        events[end - 1].checkpoint
                    };
                    return match self
                        .store
                        .commit(tx, &self.name, partition, stored, to, None)
                        .await
                    {
                        Ok(true) => {
                            let _ = consumer.committed(to).await;
                            status.send_modify(|s| {
                                s.checkpoint = to;
                                s.handled += end as u64;
                            });
                            crate::metrics::subscription_handled(&self.name, end as u64);
                            Ok(Batch::Committed(to))
                        }
                        Ok(false) => Ok(Batch::Moved),
                        Err(e) => {
                            tracing::warn!(subscription = %self.name, error = %e, "eventsource: committing a batch failed; it will run again");
                            if stop.sleep(self.retry.initial_backoff).await {
                                return Ok(Batch::Stopped);
                            }
                            Ok(Batch::Moved)
                        }
                    };
                }
                Some((0, err)) => {
                    drop(tx);
                    return self
                        .retry_alone(consumer, partition, events[0], stored, err, stop, status)
                        .await;
                }
                Some((i, err)) => {
                    drop(tx);
                    tracing::debug!(subscription = %self.name, error = %err, "eventsource: batch failed; committing the events before the failing one");
                    if pending.is_none() {
                        *pending = Some((events[i].event.event_id, err));
                    }
                    end = i;
                }
            }
        }
    }

    /// Begins a transaction, retrying while the database is unreachable; `None` when a
    /// stop was requested meanwhile.
    async fn begin(&self, stop: &mut Stop) -> Result<Option<S::Transaction>> {
        self.retrying(stop, "beginning a transaction", || self.store.begin())
            .await
    }

    /// Retries the failing first event of a batch alone, then parks it or stops.
    #[allow(clippy::too_many_arguments)]
    async fn retry_alone<C>(
        &self,
        consumer: &mut C,
        partition: u32,
        event: &FeedEvent,
        stored: Checkpoint,
        first: crate::BoxError,
        stop: &mut Stop,
        status: &watch::Sender<SubscriptionStatus>,
    ) -> Result<Batch>
    where
        C: Consumer<S::Connection>,
    {
        let e = &event.event;
        let max = self.retry.max_attempts.max(1);
        let mut last = first;
        let mut attempts = 1;
        tracing::warn!(subscription = %self.name, event_id = %e.event_id, position = e.position, attempt = attempts, error = %last, "eventsource: handler failed");
        while attempts < max {
            if stop.sleep(self.retry.backoff(attempts)).await {
                return Ok(Batch::Stopped);
            }
            attempts += 1;
            let Some(mut tx) = self.begin(stop).await? else {
                return Ok(Batch::Stopped);
            };
            let outcome = match consumer.consume(&mut tx, event).await {
                Ok(()) => consumer.before_commit(&mut tx).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    return match self
                        .store
                        .commit(tx, &self.name, partition, stored, event.checkpoint, None)
                        .await?
                    {
                        true => {
                            let _ = consumer.committed(event.checkpoint).await;
                            status.send_modify(|s| {
                                s.checkpoint = event.checkpoint;
                                s.handled += 1;
                            });
                            crate::metrics::subscription_handled(&self.name, 1);
                            Ok(Batch::Committed(event.checkpoint))
                        }
                        false => Ok(Batch::Moved),
                    };
                }
                Err(err) => {
                    drop(tx);
                    tracing::warn!(subscription = %self.name, event_id = %e.event_id, position = e.position, attempt = attempts, error = %err, "eventsource: handler failed");
                    last = err;
                }
            }
        }
        match self.retry.on_exhausted {
            OnExhausted::Stop => Err(Error::HandlerFailed {
                subscription: self.name.clone(),
                event_id: e.event_id,
                position: e.position,
                attempts,
                source: last,
            }),
            OnExhausted::Park => {
                let parked = ParkedEvent {
                    subscription: self.name.clone(),
                    event_id: e.event_id,
                    position: e.position,
                    aggregate_type: e.aggregate_type.clone(),
                    aggregate_id: e.aggregate_id,
                    partition,
                    attempts,
                    error: last.to_string(),
                    parked_at: chrono::Utc::now(),
                };
                let Some(tx) = self.begin(stop).await? else {
                    return Ok(Batch::Stopped);
                };
                let moved = self
                    .store
                    .commit(
                        tx,
                        &self.name,
                        partition,
                        stored,
                        event.checkpoint,
                        Some(&parked),
                    )
                    .await?;
                if !moved {
                    return Ok(Batch::Moved);
                }
                tracing::error!(subscription = %self.name, event_id = %e.event_id, position = e.position, attempts, error = %parked.error, "eventsource: event parked after its last attempt");
                status.send_modify(|s| {
                    s.checkpoint = event.checkpoint;
                    s.parked += 1;
                });
                crate::metrics::subscription_parked(&self.name);
                Ok(Batch::Committed(event.checkpoint))
            }
        }
    }

    /// Runs `op` until it succeeds, backing off on backend errors (the database may be
    /// restarting); other errors are returned. `None` when a stop was requested.
    async fn retrying<T, F, Fut>(&self, stop: &mut Stop, what: &str, mut op: F) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut wait = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(v) => return Ok(Some(v)),
                Err(e @ Error::Backend { .. }) | Err(e @ Error::Timeout { .. }) => {
                    tracing::warn!(subscription = %self.name, error = %e, "eventsource: {what} failed; retrying");
                    if stop.sleep(wait).await {
                        return Ok(None);
                    }
                    wait = (wait * 2).min(self.retry.max_backoff.max(Duration::from_millis(50)));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// How a batch ended.
enum Batch {
    Committed(Checkpoint),
    Moved,
    Stopped,
}

/// Stops every worker and waits for their batches to end.
async fn break_all(
    workers: &mut HashMap<u32, (watch::Sender<bool>, tokio::task::JoinHandle<Result<()>>)>,
) {
    for (_, (stop, _)) in workers.iter() {
        let _ = stop.send(true);
    }
    for (_, (_, task)) in workers.drain() {
        let _ = task.await;
    }
}
