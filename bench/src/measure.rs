//! Timing: cases run interleaved, round after round, each timed run preceded by an
//! untimed run of the same case, so that no case is measured cold right after another
//! case's big read.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// A future a case returns for one run.
pub type RunFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One thing to time: `run` does it once and checks the outcome.
pub struct Case {
    /// Where the result goes in the report.
    pub key: Key,
    /// Runs the case once.
    pub run: Box<dyn FnMut() -> RunFuture + Send>,
    /// Runs after each timed run, untimed (e.g. waiting for background snapshots).
    pub settle: Option<Box<dyn FnMut() -> RunFuture + Send>>,
}

impl Case {
    /// A case without a settle step.
    pub fn new(key: Key, run: impl FnMut() -> RunFuture + Send + 'static) -> Self {
        Case {
            key,
            run: Box::new(run),
            settle: None,
        }
    }

    /// Adds an untimed step after each timed run.
    pub fn settle(mut self, settle: impl FnMut() -> RunFuture + Send + 'static) -> Self {
        self.settle = Some(Box::new(settle));
        self
    }
}

/// Identifies a measurement: what was measured, on which backend, by whom, at which size.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// `load`, `load-snapshot`, `save-1`, `save-100`...
    pub what: &'static str,
    /// `memory`, `SQLite`, `PostgreSQL`.
    pub backend: &'static str,
    /// `eventsource`, `floor (2 round trips)`, `cqrs-es`...
    pub who: String,
    /// History length (loads) or batch size (saves).
    pub n: u64,
}

impl Key {
    /// A key.
    pub fn new(what: &'static str, backend: &'static str, who: impl Into<String>, n: u64) -> Self {
        Key {
            what,
            backend,
            who: who.into(),
            n,
        }
    }
}

/// The timed runs of one case.
#[derive(Clone, Debug)]
pub struct Samples {
    /// What was measured.
    pub key: Key,
    /// Every timed run.
    pub times: Vec<Duration>,
}

impl Samples {
    /// The median.
    pub fn median(&self) -> Duration {
        median(&self.times)
    }

    /// The fastest run.
    pub fn min(&self) -> Duration {
        self.times.iter().copied().min().unwrap_or_default()
    }

    /// The slowest run.
    pub fn max(&self) -> Duration {
        self.times.iter().copied().max().unwrap_or_default()
    }
}

/// The median of some durations (the mean of the two middle ones for an even count).
pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// Runs `warmup` untimed rounds, then `rounds` timed rounds of every case. In each round
/// the cases run in a new shuffled order (so that no case always follows the same other
/// case), and each timed run follows an untimed run of the same case.
pub async fn interleaved(
    mut cases: Vec<Case>,
    warmup: usize,
    rounds: usize,
) -> anyhow::Result<Vec<Samples>> {
    for _ in 0..warmup {
        for case in &mut cases {
            (case.run)().await?;
            if let Some(settle) = &mut case.settle {
                settle().await?;
            }
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); cases.len()];
    let mut order: Vec<usize> = (0..cases.len()).collect();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..rounds {
        rng.shuffle(&mut order);
        for &index in &order {
            let case = &mut cases[index];
            (case.run)().await?;
            if let Some(settle) = &mut case.settle {
                settle().await?;
            }
            let started = Instant::now();
            let outcome = (case.run)().await;
            let elapsed = started.elapsed();
            outcome.map_err(|e| e.context(format!("{:?}", case.key)))?;
            if let Some(settle) = &mut case.settle {
                settle().await?;
            }
            times[index].push(elapsed);
        }
    }
    Ok(cases
        .into_iter()
        .zip(times)
        .map(|(case, times)| Samples {
            key: case.key,
            times,
        })
        .collect())
}

/// A small deterministic generator for the order of the cases (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(
            median(&[ms(4), ms(1), ms(2), ms(3)]),
            Duration::from_micros(2500)
        );
        assert_eq!(median(&[]), Duration::ZERO);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = XorShift(42);
        let mut items: Vec<usize> = (0..50).collect();
        rng.shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }
}
