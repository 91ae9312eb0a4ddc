//! Timeouts that hold on any Tokio runtime.
//!
//! On a runtime with its time driver (`#[tokio::main]`, `#[tokio::test]` and
//! `Builder::enable_all` have it), [`within`] is `tokio::time::timeout`. A runtime
//! built without it makes every Tokio timer panic; there, [`within`] waits without a
//! bound and says so once in the log, so that a snapshot read can never panic a load.

use std::cell::Cell;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

thread_local! {
    /// Set while [`sleep`] probes for a time driver, so that the probe's panic is not
    /// printed.
    static PROBING: Cell<bool> = const { Cell::new(false) };
}

/// `Some(output)`, or `None` when `future` did not finish within `limit` (it is then
/// dropped, which cancels it).
pub(crate) async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    match sleep(limit) {
        Some(sleep) => {
            tokio::select! {
                biased;
                output = future => Some(output),
                () = sleep => None,
            }
        }
        None => Some(future.await),
    }
}

/// Waits `d`; without a time driver, not at all.
pub(crate) async fn pause(d: Duration) {
    if let Some(sleep) = sleep(d) {
        sleep.await;
    }
}

/// A Tokio sleep, or `None` (and a warning, once) on a runtime without a time driver.
fn sleep(limit: Duration) -> Option<tokio::time::Sleep> {
    static QUIET_PROBES: Once = Once::new();
    static WARNED: AtomicBool = AtomicBool::new(false);
    QUIET_PROBES.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !PROBING.with(Cell::get) {
                previous(info);
            }
        }));
    });
    PROBING.with(|p| p.set(true));
    let sleep = panic::catch_unwind(AssertUnwindSafe(|| tokio::time::sleep(limit)));
    PROBING.with(|p| p.set(false));
    match sleep {
        Ok(sleep) => Some(sleep),
        Err(_) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the Tokio runtime has no time driver (build it with `enable_time` or \
                     `enable_all`): snapshot reads and writes run without their timeout"
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_with_a_time_driver() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let never = std::future::pending::<()>();
            assert_eq!(within(Duration::from_millis(5), never).await, None);
            assert_eq!(within(Duration::from_secs(5), async { 7 }).await, Some(7));
        });
    }

    #[test]
    fn unbounded_without_one_and_no_panic() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(within(Duration::from_millis(5), async { 7 }).await, Some(7));
        });
    }
}
