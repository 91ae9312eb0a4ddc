//! The `NOTIFY` sent after appends, folded so that concurrent appends send one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;

use super::NOTIFY_CHANNEL;

/// Sends `NOTIFY` on [`NOTIFY_CHANNEL`] from a background task after appends.
///
/// At most one task runs per store; appends that come while it is sending set `dirty`,
/// and the task sends once more for all of them. An append never waits for it.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    running: AtomicBool,
    dirty: AtomicBool,
}

impl Notifier {
    /// Asks for a notification after an append that has committed. Without a Tokio
    /// runtime nothing is sent: subscribers find the events at their next poll.
    pub(crate) fn notify(self: &Arc<Self>, pool: &PgPool) {
        self.dirty.store(true, Ordering::Release);
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        let this = Arc::clone(self);
        let pool = pool.clone();
        runtime.spawn(async move {
            loop {
                this.dirty.store(false, Ordering::Release);
                if pool.is_closed() {
                    this.running.store(false, Ordering::Release);
                    return;
                }
                if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(NOTIFY_CHANNEL)
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(error = %e, "eventsource: NOTIFY after append failed; subscribers will poll");
                }
                if this.dirty.load(Ordering::Acquire) {
                    continue;
                }
                this.running.store(false, Ordering::Release);
                // An append may have set `dirty` after the check and seen `running` still
                // true: take the work back if nobody else has.
                if !this.dirty.load(Ordering::Acquire) || this.running.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }
}
