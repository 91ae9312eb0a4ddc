//! [`Admin::verify`]: snapshots checked against a replay of their events.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{Admin, AggregateLag};
use crate::aggregate::Aggregate;
use crate::error::{Error, Result};
use crate::event::DomainEvent;
use crate::repository::AggregateRepository;
use crate::root::AggregateRoot;
use crate::snapshot::Snapshot;

/// Which snapshots [`Admin::verify`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Verify {
    sample: Option<u64>,
    concurrency: usize,
}

impl Verify {
    /// Every aggregate with a snapshot.
    pub fn all() -> Self {
        Verify {
            sample: None,
            concurrency: 1,
        }
    }

    /// `n` aggregates with a snapshot, chosen at random.
    pub fn sample(n: u64) -> Self {
        Verify {
            sample: Some(n),
            concurrency: 1,
        }
    }

    /// Up to `n` aggregates replayed at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
}

/// A snapshot whose state differs from the one its events give.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mismatch {
    /// The aggregate's id.
    pub aggregate_id: Uuid,
    /// The snapshot's version (the events were replayed up to it).
    pub version: u64,
    /// The first place where the two states differ, as a JSON pointer (`""` for the
    /// whole value), with both values there.
    pub path: String,
    /// What the snapshot has there (`null` when it has nothing).
    pub snapshot: Value,
    /// What the replay has there (`null` when it has nothing).
    pub replayed: Value,
}

/// A snapshot that a load would not use, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unusable {
    /// The aggregate's id.
    pub aggregate_id: Uuid,
    /// The snapshot's version.
    pub version: u64,
    /// Why a load would not use it.
    pub reason: String,
}

/// What [`Admin::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    /// The aggregate type.
    pub aggregate_type: String,
    /// Aggregates with a snapshot, of which [`checked`](Self::checked) were checked.
    pub with_snapshot: u64,
    /// Snapshots checked.
    pub checked: u64,
    /// Snapshots equal to the replay.
    pub matching: u64,
    /// Snapshots that differ from the replay, by aggregate id.
    pub differing: Vec<Mismatch>,
    /// Snapshots a load would not use (and so cannot be wrong in effect, only slow).
    pub unusable: Vec<Unusable>,
    /// Aggregates whose check failed (a store error, an event that does not decode).
    pub failures: Vec<super::BackfillFailure>,
}

impl VerifyReport {
    /// `true` when every snapshot checked is usable and equal to its replay.
    pub fn is_clean(&self) -> bool {
        self.differing.is_empty() && self.unusable.is_empty() && self.failures.is_empty()
    }
}

/// What checking one snapshot found.
enum Checked {
    Matching,
    Differing(Mismatch),
    Unusable(Unusable),
    /// Deleted since it was listed.
    Gone,
    Failed(String),
}

impl Admin {
    /// Rebuilds aggregates of `A` that have a snapshot by replaying their events from
    /// the first, up to the snapshot's version, and compares the result with the state
    /// the snapshot restores: both as JSON values of [`Aggregate::to_snapshot`].
    ///
    /// Lists every snapshot that differs (with the first place where it does), and
    /// every one a load would not use (another schema version, a state that does not
    /// decode, a version beyond the stream). A difference means the state's form or the
    /// meaning of its events changed without a `schema_version` bump: bump it (loads
    /// then ignore the old snapshots) or [`invalidate`](Self::invalidate) them.
    ///
    /// Read-only. Snapshots written meanwhile may be checked or not.
    pub async fn verify<A: Aggregate>(&self, options: &Verify) -> Result<VerifyReport> {
        let mut list: Vec<AggregateLag> = self
            .admin
            .behind(
                self.snapshots.as_ref(),
                &super::BehindQuery {
                    aggregate_type: A::TYPE.to_owned(),
                    schema_version: A::SCHEMA_VERSION,
                    min_events_behind: 0,
                    limit: None,
                },
            )
            .await?
            .into_iter()
            .filter(|lag| lag.snapshot_version.is_some())
            .collect();
        let with_snapshot = list.len() as u64;
        if let Some(n) = options.sample {
            sample(&mut list, usize::try_from(n).unwrap_or(usize::MAX));
        }
        list.sort_by_key(|lag| lag.aggregate_id);
        let repo = self.repository::<A>()?;
        let queue = Arc::new(Mutex::new(list.into_iter().map(|l| l.aggregate_id)));
        let found = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..options.concurrency {
            let (queue, found, repo) = (Arc::clone(&queue), Arc::clone(&found), repo.clone());
            tasks.spawn(async move {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(id) = next else { break };
                    let checked = check_one(&repo, id).await;
                    found
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((id, checked));
                }
            });
        }
        super::join_workers(tasks).await;
        let mut found = std::mem::take(&mut *found.lock().unwrap_or_else(|e| e.into_inner()));
        found.sort_by_key(|(id, _)| *id);
        let mut report = VerifyReport {
            aggregate_type: A::TYPE.to_owned(),
            with_snapshot,
            ..VerifyReport::default()
        };
        for (id, checked) in found {
            match checked {
                Checked::Gone => continue,
                Checked::Matching => report.matching += 1,
                Checked::Differing(m) => report.differing.push(m),
                Checked::Unusable(u) => report.unusable.push(u),
                Checked::Failed(error) => report.failures.push(super::BackfillFailure {
                    aggregate_id: id,
                    error,
                }),
            }
            report.checked += 1;
        }
        Ok(report)
    }
}

/// Keeps `n` of `list`, chosen at random.
fn sample<T>(list: &mut Vec<T>, n: usize) {
    if n >= list.len() {
        return;
    }
    // A partial Fisher-Yates shuffle, random enough for a sample.
    for i in 0..n {
        let r = (Uuid::new_v4().as_u128() % (list.len() - i) as u128) as usize;
        list.swap(i, i + r);
    }
    list.truncate(n);
}

/// Checks the snapshot of one aggregate against its replay.
async fn check_one<A: Aggregate>(repo: &AggregateRepository<A>, id: Uuid) -> Checked {
    let Some(store) = repo.snapshot_store() else {
        return Checked::Gone;
    };
    let snapshot = match store.get(A::TYPE, id).await {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return Checked::Gone,
        Err(e) => return Checked::Failed(e.to_string()),
    };
    let unusable = |reason: String| {
        Checked::Unusable(Unusable {
            aggregate_id: id,
            version: snapshot.version,
            reason,
        })
    };
    if snapshot.schema_version != A::SCHEMA_VERSION {
        return unusable(format!(
            "schema version {} where the code reads {}",
            snapshot.schema_version,
            A::SCHEMA_VERSION
        ));
    }
    if snapshot.version == 0 {
        return unusable("version 0".to_owned());
    }
    let restored = match restored_json::<A>(&snapshot) {
        Ok(value) => value,
        Err(reason) => return unusable(reason),
    };
    let replayed = match repo.replay_to(id, snapshot.version).await {
        Ok(root) if root.version() < snapshot.version => {
            return unusable(format!(
                "beyond the stream, whose last event is version {}",
                root.version()
            ));
        }
        Ok(root) => root,
        Err(e) => return Checked::Failed(e.to_string()),
    };
    let replayed = match replayed
        .state()
        .to_snapshot()
        .map_err(|e| e.to_string())
        .and_then(|json| serde_json::from_str::<Value>(&json).map_err(|e| e.to_string()))
    {
        Ok(value) => value,
        Err(e) => return Checked::Failed(format!("the replayed state does not encode: {e}")),
    };
    match first_difference(&restored, &replayed, String::new()) {
        None => Checked::Matching,
        Some((path, snapshot_value, replayed_value)) => Checked::Differing(Mismatch {
            aggregate_id: id,
            version: snapshot.version,
            path,
            snapshot: snapshot_value,
            replayed: replayed_value,
        }),
    }
}

/// The state a load would restore from `snapshot`, encoded again, as a JSON value.
fn restored_json<A: Aggregate>(snapshot: &Snapshot) -> std::result::Result<Value, String> {
    let state =
        A::from_snapshot(&snapshot.state).map_err(|e| format!("its state does not decode: {e}"))?;
    let json = state
        .to_snapshot()
        .map_err(|e| format!("its decoded state does not encode: {e}"))?;
    serde_json::from_str(&json).map_err(|e| format!("its decoded state is not JSON: {e}"))
}

/// The first place, in key order, where `a` and `b` differ: its JSON pointer and the
/// two values there (`null` for a missing one).
fn first_difference(a: &Value, b: &Value, path: String) -> Option<(String, Value, Value)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let at = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => first_difference(v, w, at),
                    (v, w) => Some((
                        at,
                        v.cloned().unwrap_or(Value::Null),
                        w.cloned().unwrap_or(Value::Null),
                    )),
                }
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{path}/{i}"))),
        _ if a == b => None,
        _ => Some((path, a.clone(), b.clone())),
    }
}

impl<A: Aggregate> AggregateRepository<A> {
    /// The aggregate rebuilt from its first event up to `version` (or its last, if
    /// lower), without a snapshot.
    pub(crate) async fn replay_to(&self, id: Uuid, version: u64) -> Result<AggregateRoot<A>> {
        let mut root = AggregateRoot::<A>::new(id);
        self.event_store()
            .read_stream(A::TYPE, id, 1, &mut |e| {
                if e.version > version {
                    return Ok(());
                }
                let events = A::Event::decode(e.event_type, e.event_version, e.payload).map_err(
                    |source| Error::EventDecode {
                        aggregate_type: A::TYPE.to_owned(),
                        aggregate_id: id,
                        version: e.version,
                        event_type: e.event_type.to_owned(),
                        event_version: e.event_version,
                        source,
                    },
                )?;
                root.apply_stored(e.version, events)
            })
            .await?;
        Ok(root)
    }
}
