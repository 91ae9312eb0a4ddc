//! The background snapshot writer: at most one pending snapshot per aggregate, a bounded
//! number of writes at once.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tracing::Instrument;
use uuid::Uuid;

use super::{Snapshot, SnapshotStore};

/// Queues snapshot writes. Clones share the queue.
#[derive(Clone, Debug)]
pub(crate) struct BackgroundWriter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn SnapshotStore>,
    /// One entry per aggregate with a task running; `Some` is the next snapshot to write.
    slots: Mutex<HashMap<Uuid, Option<Snapshot>>>,
    /// Snapshots queued or being written.
    pending: watch::Sender<usize>,
    permits: Semaphore,
    /// The longest one write may take; past it, it is cancelled.
    timeout: Duration,
    /// How many snapshots of each aggregate the store keeps.
    keep: NonZeroU32,
    /// States longer than this are stored compressed.
    compress_over: Option<usize>,
}

impl BackgroundWriter {
    pub(crate) fn new(
        store: Arc<dyn SnapshotStore>,
        max_concurrent: usize,
        timeout: Duration,
        keep: NonZeroU32,
        compress_over: Option<usize>,
    ) -> Self {
        BackgroundWriter {
            inner: Arc::new(Inner {
                store,
                slots: Mutex::new(HashMap::new()),
                pending: watch::Sender::new(0),
                permits: Semaphore::new(max_concurrent.max(1)),
                timeout,
                keep,
                compress_over,
            }),
        }
    }

    /// Queues a snapshot. A snapshot still queued for the same aggregate is replaced.
    /// Returns `false` (and writes nothing, saying so in the log) when called outside a
    /// Tokio runtime.
    pub(crate) fn schedule(&self, snapshot: Snapshot) -> bool {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(aggregate_type = %snapshot.aggregate_type,
                aggregate_id = %snapshot.aggregate_id, version = snapshot.version,
                "background snapshot skipped: no Tokio runtime to write it on");
            crate::metrics::snapshot_write_failed_because(&snapshot.aggregate_type, "no_runtime");
            return false;
        };
        let id = snapshot.aggregate_id;
        let aggregate_type = snapshot.aggregate_type.clone();
        let mut slots = self.inner.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.get_mut(&id) {
            Some(next) => {
                if next.replace(snapshot).is_none() {
                    self.inner.queued(&aggregate_type, 1);
                } else {
                    crate::metrics::snapshot_coalesced(&aggregate_type);
                    tracing::debug!(aggregate_id = %id, "replaced a queued snapshot with a newer one");
                }
            }
            None => {
                slots.insert(id, Some(snapshot));
                self.inner.queued(&aggregate_type, 1);
                let inner = Arc::clone(&self.inner);
                handle.spawn(inner.run(id).instrument(
                    tracing::debug_span!("eventsource.background_snapshot", aggregate_id = %id),
                ));
            }
        }
        true
    }

    /// Snapshots queued or being written.
    pub(crate) fn pending(&self) -> usize {
        *self.inner.pending.borrow()
    }

    /// Waits until nothing is queued or being written; returns how many were pending.
    pub(crate) async fn wait_idle(&self) -> usize {
        let count = self.pending();
        let mut rx = self.inner.pending.subscribe();
        // The sender lives in `inner`, which `self` keeps alive: this cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
        count
    }
}

impl Inner {
    /// Counts `delta` snapshots in or out of the queue, and reports its depth.
    fn queued(&self, aggregate_type: &str, delta: isize) {
        // Reported before waiters are woken, so that they see the depth they waited for.
        self.pending.send_modify(|n| {
            *n = n.saturating_add_signed(delta);
            crate::metrics::snapshot_queue(aggregate_type, *n);
        });
    }

    async fn run(self: Arc<Self>, id: Uuid) {
        loop {
            // The semaphore is never closed.
            let Ok(_permit) = self.permits.acquire().await else {
                return;
            };
            let next = {
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                match slots.get_mut(&id).and_then(Option::take) {
                    Some(snapshot) => snapshot,
                    None => {
                        slots.remove(&id);
                        return;
                    }
                }
            };
            let started = std::time::Instant::now();
            let save = self
                .store
                .save_compressing(&next, self.keep, self.compress_over);
            let written = crate::time::within(self.timeout, save)
                .await
                .unwrap_or_else(|| {
                    Err(crate::Error::timeout("writing the snapshot", self.timeout))
                });
            match written {
                Ok(()) => {
                    crate::metrics::snapshot_written(
                        &next.aggregate_type,
                        "background",
                        started.elapsed(),
                        next.state.len(),
                    );
                    tracing::debug!(
                        aggregate_type = %next.aggregate_type,
                        aggregate_id = %id,
                        version = next.version,
                        "background snapshot written"
                    )
                }
                Err(error) => {
                    crate::metrics::snapshot_write_failed(&next.aggregate_type, &error);
                    tracing::warn!(
                        aggregate_type = %next.aggregate_type,
                        aggregate_id = %id,
                        version = next.version,
                        %error,
                        "background snapshot failed; loads replay from events until the next one"
                    )
                }
            }
            self.queued(&next.aggregate_type, -1);
        }
    }
}
