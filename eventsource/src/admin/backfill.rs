//! [`Admin::backfill`]: snapshots for the aggregates that are far behind, longest first.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use super::{Admin, AggregateLag, per_second};
use crate::aggregate::Aggregate;
use crate::error::Result;
use crate::repository::AggregateRepository;

/// The callback a [`Backfill`] reports its progress to.
type OnProgress = Arc<dyn Fn(&BackfillProgress) + Send + Sync>;

/// What [`Admin::backfill`] does: which aggregates, how many at once, and whom it tells.
///
/// ```
/// use eventsource::admin::Backfill;
///
/// let backfill = Backfill::new(500)
///     .concurrency(8)
///     .limit(10_000)
///     .on_progress(|p| eprintln!("{}/{} ({:.0}/s)", p.done, p.total, p.rate()));
/// assert_eq!(backfill.min_events(), 500);
/// ```
#[derive(Clone)]
#[must_use]
pub struct Backfill {
    min_events: u64,
    concurrency: usize,
    limit: Option<u64>,
    on_progress: Option<OnProgress>,
}

impl fmt::Debug for Backfill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backfill")
            .field("min_events", &self.min_events)
            .field("concurrency", &self.concurrency)
            .field("limit", &self.limit)
            .field("on_progress", &self.on_progress.is_some())
            .finish()
    }
}

impl Backfill {
    /// Snapshots every aggregate with at least `min_events` events since its snapshot
    /// (since its start, without one; a snapshot of another schema version counts as
    /// none), one at a time. `0` is taken as 1: an aggregate with no event since its
    /// snapshot has nothing to snapshot.
    pub fn new(min_events: u64) -> Self {
        Backfill {
            min_events: min_events.max(1),
            concurrency: 1,
            limit: None,
            on_progress: None,
        }
    }

    /// Up to `n` aggregates at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Only the `n` most behind (the rest wait for the next run).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Calls `f` once the work list is known, then after each aggregate.
    pub fn on_progress(mut self, f: impl Fn(&BackfillProgress) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(Arc::new(f));
        self
    }

    /// The threshold.
    pub fn min_events(&self) -> u64 {
        self.min_events
    }

    /// The concurrency.
    pub fn concurrency_limit(&self) -> usize {
        self.concurrency
    }
}

/// Where a running backfill stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct BackfillProgress {
    /// Aggregates handled so far, whatever the outcome.
    pub done: u64,
    /// Aggregates on the work list.
    pub total: u64,
    /// Snapshots written.
    pub snapshotted: u64,
    /// Aggregates that no longer needed one when their turn came (another writer
    /// snapshotted them meanwhile).
    pub skipped: u64,
    /// Aggregates that failed.
    pub errors: u64,
    /// Time since the backfill started.
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

impl BackfillProgress {
    /// Aggregates handled per second so far.
    pub fn rate(&self) -> f64 {
        per_second(self.done, self.elapsed)
    }
}

/// An aggregate the backfill could not snapshot, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackfillFailure {
    /// The aggregate's id.
    pub aggregate_id: Uuid,
    /// The error, as text.
    pub error: String,
}

/// What a backfill did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BackfillReport {
    /// The aggregate type.
    pub aggregate_type: String,
    /// Aggregates on the work list.
    pub total: u64,
    /// Snapshots written.
    pub snapshotted: u64,
    /// Aggregates that no longer needed one when their turn came.
    pub skipped: u64,
    /// Aggregates that failed, with their errors: run again to retry them.
    pub failures: Vec<BackfillFailure>,
    /// How long it took.
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

impl BackfillReport {
    /// Aggregates handled per second.
    pub fn rate(&self) -> f64 {
        per_second(self.total, self.elapsed)
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What became of one aggregate.
enum Outcome {
    Snapshotted,
    Skipped,
    Failed(String),
}

/// The shared state of the workers of one backfill.
struct Run {
    queue: Mutex<VecDeque<AggregateLag>>,
    progress: Mutex<(BackfillProgress, Vec<BackfillFailure>)>,
    started: Instant,
    on_progress: Option<OnProgress>,
}

impl Run {
    fn next(&self) -> Option<AggregateLag> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    fn record(&self, id: Uuid, outcome: Outcome) {
        let snapshot = {
            let mut guard = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            let (progress, failures) = &mut *guard;
            progress.done += 1;
            match outcome {
                Outcome::Snapshotted => progress.snapshotted += 1,
                Outcome::Skipped => progress.skipped += 1,
                Outcome::Failed(error) => {
                    progress.errors += 1;
                    failures.push(BackfillFailure {
                        aggregate_id: id,
                        error,
                    });
                }
            }
            progress.elapsed = self.started.elapsed();
            *progress
        };
        if let Some(f) = &self.on_progress {
            f(&snapshot);
        }
    }
}

impl Admin {
    /// Snapshots every aggregate of `A` at least [`Backfill::new`]'s events behind its
    /// snapshot, most behind first, [`concurrency`](Backfill::concurrency) at a time.
    ///
    /// Each aggregate is loaded afresh (from its snapshot, when it has a usable one) and
    /// snapshotted at the version it was loaded at, as
    /// [`AggregateRepository::create_snapshot`] does. That is safe while the
    /// application writes: a store never replaces a snapshot with one of a lower
    /// version, so a snapshot never goes backwards. An aggregate snapshotted by someone
    /// else since the work list was made is skipped.
    ///
    /// Resumable: the work list comes from the store at the start of each run, so after
    /// an interruption a second run does only what is still behind. An aggregate that
    /// fails is reported in [`BackfillReport::failures`] and the others go on; the
    /// call's own error is for the listing query only.
    ///
    /// The workers are tokio tasks: on a multi-threaded runtime, decoding and
    /// replaying run in parallel.
    pub async fn backfill<A: Aggregate>(&self, options: &Backfill) -> Result<BackfillReport> {
        let started = Instant::now();
        let list = self.behind::<A>(options.min_events, options.limit).await?;
        let total = list.len() as u64;
        let run = Arc::new(Run {
            queue: Mutex::new(list.into()),
            progress: Mutex::new((
                BackfillProgress {
                    total,
                    elapsed: started.elapsed(),
                    ..BackfillProgress::default()
                },
                Vec::new(),
            )),
            started,
            on_progress: options.on_progress.clone(),
        });
        if let Some(f) = &run.on_progress {
            f(&run.progress.lock().unwrap_or_else(|e| e.into_inner()).0);
        }
        let repo = self.repository::<A>()?;
        let workers = options
            .concurrency
            .min(usize::try_from(total).unwrap_or(usize::MAX));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (run, repo, min) = (Arc::clone(&run), repo.clone(), options.min_events);
            tasks.spawn(async move {
                while let Some(lag) = run.next() {
                    let outcome = snapshot_one(&repo, lag.aggregate_id, min).await;
                    run.record(lag.aggregate_id, outcome);
                }
            });
        }
        super::join_workers(tasks).await;
        let (progress, mut failures) = run
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        failures.sort_by_key(|f| f.aggregate_id);
        Ok(BackfillReport {
            aggregate_type: A::TYPE.to_owned(),
            total,
            snapshotted: progress.snapshotted,
            skipped: progress.skipped,
            failures,
            elapsed: started.elapsed(),
        })
    }
}

/// Loads one aggregate and snapshots it if it is still `min_events` behind.
async fn snapshot_one<A: Aggregate>(
    repo: &AggregateRepository<A>,
    id: Uuid,
    min_events: u64,
) -> Outcome {
    let mut root = match repo.load(id).await {
        Ok(root) => root,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let history = root.load_history();
    let from = if history.loaded_from_snapshot {
        history.snapshot_version.unwrap_or(0)
    } else {
        0
    };
    if root.version() - from < min_events {
        return Outcome::Skipped;
    }
    match repo.create_snapshot(&mut root).await {
        Ok(_) => Outcome::Snapshotted,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
