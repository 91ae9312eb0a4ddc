//! Peak memory of a full replay, measured in a child process of its own: the child
//! connects, runs a small query, reads its resident set (`VmRSS`) as the baseline, does
//! the load, and reads its peak resident set (`VmHWM`) from `/proc/self/status`.

use std::process::Command;
use std::sync::Arc;

use anyhow::Context;
use cqrs_es::EventStore as _;
use eventsource::AggregateRepository;
use uuid::Uuid;

use crate::model::Order;

/// What a child measured.
#[derive(Clone, Debug)]
pub struct Rss {
    /// Backend.
    pub backend: &'static str,
    /// Who loaded.
    pub who: &'static str,
    /// Events replayed.
    pub events: u64,
    /// Resident set before the load, in KiB.
    pub baseline_kib: u64,
    /// Peak resident set after the load, in KiB.
    pub peak_kib: u64,
    /// How long the load took, in milliseconds.
    pub millis: f64,
}

impl Rss {
    /// Peak above the baseline, in MiB.
    pub fn above_baseline_mib(&self) -> f64 {
        self.peak_kib.saturating_sub(self.baseline_kib) as f64 / 1024.0
    }
}

/// A field of `/proc/self/status` in KiB.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} not in /proc/self/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed status line")?
        .parse()?)
}

/// The child's side: loads `id` with `who` on `backend` and prints one result line.
pub async fn child(
    backend: &str,
    who: &str,
    id: Uuid,
    n: u64,
    pg_url: &str,
    sqlite_path: &str,
) -> anyhow::Result<()> {
    let baseline;
    let started;
    match (backend, who) {
        ("postgres", "eventsource") => {
            let pool = crate::db::pg_connect(pg_url, 2).await?;
            let (events, _) = crate::stores::postgres(&pool);
            let repo = AggregateRepository::<Order>::new(events);
            repo.exists(id).await?;
            baseline = status_kib("VmRSS:")?;
            started = std::time::Instant::now();
            let root = repo.load(id).await?;
            anyhow::ensure!(root.version() == n, "loaded version {}", root.version());
        }
        ("sqlite", "eventsource") => {
            let pool = crate::db::sqlite_open(sqlite_path.as_ref()).await?;
            let (events, _) = crate::stores::sqlite(&pool);
            let repo = AggregateRepository::<Order>::new(events);
            repo.exists(id).await?;
            baseline = status_kib("VmRSS:")?;
            started = std::time::Instant::now();
            let root = repo.load(id).await?;
            anyhow::ensure!(root.version() == n, "loaded version {}", root.version());
        }
        ("postgres", "floor") => {
            let pool = crate::db::pg_connect(pg_url, 2).await?;
            sqlx::query("SELECT 1").execute(&pool).await?;
            baseline = status_kib("VmRSS:")?;
            started = std::time::Instant::now();
            crate::floor::pg_load_full(&pool, id).await?.check(n, n)?;
        }
        ("sqlite", "floor") => {
            let pool = crate::db::sqlite_open(sqlite_path.as_ref()).await?;
            sqlx::query("SELECT 1").execute(&pool).await?;
            baseline = status_kib("VmRSS:")?;
            started = std::time::Instant::now();
            crate::floor::sqlite_load_full(&pool, id)
                .await?
                .check(n, n)?;
        }
        ("postgres", "cqrs-es") => {
            let pool = sqlx08::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(pg_url)
                .await?;
            let store = Arc::new(crate::peers::cqrs_event_store(&pool));
            sqlx08::query("SELECT 1").execute(&pool).await?;
            baseline = status_kib("VmRSS:")?;
            started = std::time::Instant::now();
            let context = store
                .load_aggregate(&id.to_string())
                .await
                .map_err(|e| anyhow::anyhow!("cqrs-es load: {e}"))?;
            anyhow::ensure!(
                context.current_sequence as u64 == n,
                "cqrs-es loaded {}",
                context.current_sequence
            );
        }
        other => anyhow::bail!("unknown memory case {other:?}"),
    }
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    let peak = status_kib("VmHWM:")?;
    println!("RSS {baseline} {peak} {millis}");
    Ok(())
}

/// The parent's side: runs this binary as a child for one case and reads its line.
pub fn measure(
    backend: &'static str,
    who: &'static str,
    id: Uuid,
    n: u64,
    pg_url: &str,
    sqlite_path: &str,
) -> anyhow::Result<Rss> {
    let arg = match backend {
        crate::suite::POSTGRES => "postgres",
        crate::suite::SQLITE => "sqlite",
        other => anyhow::bail!("no memory case for {other}"),
    };
    let output = Command::new(std::env::current_exe()?)
        .args([
            "--rss-child",
            arg,
            "--rss-who",
            who,
            "--rss-id",
            &id.to_string(),
            "--rss-n",
            &n.to_string(),
        ])
        .args(["--pg-url", pg_url, "--sqlite-path", sqlite_path])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "memory child {backend}/{who} failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RSS "))
        .context("no RSS line from the child")?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    anyhow::ensure!(fields.len() == 4, "malformed child line {line}");
    Ok(Rss {
        backend,
        who,
        events: n,
        baseline_kib: fields[1].parse()?,
        peak_kib: fields[2].parse()?,
        millis: fields[3].parse()?,
    })
}

/// Profiling aid (run under callgrind): `count` one-event saves of new aggregates on
/// PostgreSQL, by eventsource's repository (`who = "eventsource"`) or by the floor's
/// plain `INSERT` (`who = "floor"`).
pub async fn save_loop(who: &str, count: u64, pg_url: &str) -> anyhow::Result<()> {
    let pool = crate::db::pg_connect(pg_url, 2).await?;
    let (events, _) = crate::stores::postgres(&pool);
    let repo = AggregateRepository::<Order>::new(events);
    for _ in 0..count {
        let id = Uuid::new_v4();
        match who {
            "eventsource" => {
                let mut root = repo.create_new(id);
                root.record(crate::model::event_at(1));
                repo.save(&mut root).await?;
            }
            "floor" => crate::floor::pg_append(&pool, id, 1).await?,
            other => anyhow::bail!("unknown save loop {other}"),
        }
    }
    println!("saved {count}");
    Ok(())
}
