//! `bench`: eventsource's load and save times on memory, SQLite and PostgreSQL, next to
//! the raw-sqlx floor and to cqrs-es and esrs, written to `docs/BENCHMARKS.md` with a
//! log–log plot.
//!
//! ```sh
//! cargo run -p eventsource-bench --release -- --quick   # CI-sized, under a minute
//! cargo run -p eventsource-bench --release --features esrs   # the published table
//! ```
//!
//! The `esrs` feature adds the esrs peer, whose sqlx needs OpenSSL's headers
//! (`apt-get install libssl-dev pkg-config`); without it esrs is left out.

mod db;
mod floor;
mod measure;
mod model;
mod peers;
mod report;
mod rss;
mod stores;
mod subscriptions;
mod suite;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use eventsource::{InMemoryEventStore, InMemorySnapshotStore};
use uuid::Uuid;

use crate::db::Stream;
use crate::suite::{Backend, MEMORY, OURS, POSTGRES, Peers, Raw, SQLITE};

/// eventsource's benchmarks.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Small sizes and few rounds (for CI); the report goes to a temporary directory
    /// unless --out is given.
    #[arg(long)]
    quick: bool,
    /// Directory for BENCHMARKS.md and the SVG plot (default: the workspace's docs/ in
    /// full mode).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The PostgreSQL database to use (created if missing; its benchmark tables are
    /// dropped and recreated).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/eventsource_bench?sslmode=disable"
    )]
    pg_url: String,
    /// The SQLite file to use (recreated).
    #[arg(long)]
    sqlite_path: Option<PathBuf>,
    /// Run only the feed and subscriptions group (catch-up, the feed's cost to writers,
    /// live latency, projections); the report then holds that section alone.
    #[arg(long)]
    feed_only: bool,
    /// Memory measurement child: backend.
    #[arg(long, hide = true)]
    rss_child: Option<String>,
    /// Memory measurement child: who loads.
    #[arg(long, hide = true, default_value = "eventsource")]
    rss_who: String,
    /// Memory measurement child: aggregate id.
    #[arg(long, hide = true)]
    rss_id: Option<Uuid>,
    /// Memory measurement child: history length.
    #[arg(long, hide = true, default_value_t = 0)]
    rss_n: u64,
    /// Profiling aid: this many one-event saves by `eventsource` or `floor`, then exit.
    #[arg(long, hide = true, num_args = 2, value_names = ["WHO", "COUNT"])]
    save_loop: Option<Vec<String>>,
    /// Profiling aid: read the feed database of an earlier run this many times as
    /// `subscription`, `read_feed`, `stream` or `pages` does, then exit.
    #[arg(long, hide = true, num_args = 2, value_names = ["WHO", "PASSES"])]
    feed_loop: Option<Vec<String>>,
}

/// Sizes and repetitions of one mode.
struct Plan {
    sizes: Vec<u64>,
    rounds: Vec<(u64, usize)>,
    filler: (u64, u64),
    save_rounds: usize,
    snapshot_rounds: usize,
    rss_events: u64,
    writers: usize,
    cycles: u64,
    throughput_repeat: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                sizes: vec![100, 1_000],
                rounds: vec![(100, 5), (1_000, 5)],
                filler: (300, 20),
                save_rounds: 5,
                snapshot_rounds: 5,
                rss_events: 20_000,
                writers: 8,
                cycles: 10,
                throughput_repeat: 1,
            }
        } else {
            Plan {
                sizes: vec![100, 1_000, 10_000, 100_000],
                rounds: vec![(100, 21), (1_000, 21), (10_000, 15), (100_000, 9)],
                filler: (10_000, 20),
                save_rounds: 41,
                snapshot_rounds: 31,
                rss_events: 1_000_000,
                writers: 8,
                cycles: 150,
                throughput_repeat: 3,
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(save_loop) = &args.save_loop {
        let count = save_loop[1].parse().context("--save-loop WHO COUNT")?;
        return runtime.block_on(rss::save_loop(&save_loop[0], count, &args.pg_url));
    }
    if let Some(feed_loop) = &args.feed_loop {
        let passes = feed_loop[1].parse().context("--feed-loop WHO PASSES")?;
        return runtime.block_on(subscriptions::feed_loop(
            &args.pg_url,
            &feed_loop[0],
            passes,
        ));
    }
    if let Some(backend) = &args.rss_child {
        let sqlite = args.sqlite_path.clone().unwrap_or_default();
        let id = args.rss_id.context("--rss-id")?;
        return runtime.block_on(rss::child(
            backend,
            &args.rss_who,
            id,
            args.rss_n,
            &args.pg_url,
            &sqlite.to_string_lossy(),
        ));
    }
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    if args.feed_only {
        return run_feed_only(args, started_at, clock).await;
    }
    let plan = Plan::new(args.quick);
    let mut notes = Vec::new();

    // --- backends ------------------------------------------------------------------
    let data_dir = std::env::temp_dir().join("eventsource-bench");
    std::fs::create_dir_all(&data_dir)?;
    let sqlite_path = args
        .sqlite_path
        .clone()
        .unwrap_or_else(|| data_dir.join("bench.sqlite"));
    for suffix in ["", "-wal", "-shm"] {
        let mut p = sqlite_path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let sqlite = db::sqlite_open(&sqlite_path).await?;
    let pg = match db::pg_connect(&args.pg_url, 16).await {
        Ok(pool) => Some(pool),
        Err(e) if args.quick => {
            notes.push(format!(
                "PostgreSQL and the peers: no server at the given URL ({e:#})."
            ));
            None
        }
        Err(e) => return Err(e.context("PostgreSQL is required in full mode")),
    };

    let memory_events = Arc::new(InMemoryEventStore::new());
    let memory_snapshots = Arc::new(InMemorySnapshotStore::new());
    let mut backends = vec![
        Backend {
            name: MEMORY,
            stores: Some((memory_events.clone(), memory_snapshots.clone())),
            raw: Raw::None,
        },
        Backend {
            name: SQLITE,
            stores: Some(stores::sqlite(&sqlite)),
            raw: Raw::Sqlite(sqlite.clone()),
        },
    ];

    // --- data ----------------------------------------------------------------------
    let big: Vec<Stream> = plan
        .sizes
        .iter()
        .map(|&n| Stream {
            id: Uuid::new_v4(),
            n,
        })
        .collect();
    let million = Stream {
        id: Uuid::new_v4(),
        n: plan.rss_events,
    };
    let filler: Vec<Stream> = (0..plan.filler.0)
        .map(|_| Stream {
            id: Uuid::new_v4(),
            n: plan.filler.1,
        })
        .collect();
    eprintln!("seeding: memory");
    suite::memory_seed(memory_events.as_ref(), memory_snapshots.as_ref(), &big).await?;
    eprintln!("seeding: SQLite");
    db::sqlite_seed_events(&sqlite, &filler).await?;
    db::sqlite_seed_events(&sqlite, &big).await?;
    db::sqlite_seed_events(&sqlite, &[million]).await?;
    db::sqlite_seed_snapshots(&sqlite, &big).await?;
    db::sqlite_analyze(&sqlite).await?;

    let mut peers = None;
    let mut peers_async = None;
    let mut backend_async = None;
    let mut pg_version = None;
    if let Some(pool) = &pg {
        eprintln!("seeding: PostgreSQL");
        db::pg_reset(pool).await?;
        db::pg_seed_events(pool, &filler).await?;
        db::pg_seed_events(pool, &big).await?;
        db::pg_seed_events(pool, &[million]).await?;
        db::pg_seed_snapshots(pool, &big).await?;
        peers::cqrs_seed_events(pool, &filler).await?;
        peers::cqrs_seed_events(pool, &big).await?;
        peers::cqrs_seed_events(pool, &[million]).await?;
        peers::cqrs_seed_snapshots(pool, &big).await?;
        let pool08 = sqlx08::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect(&args.pg_url)
            .await?;
        #[cfg(feature = "esrs")]
        let esrs_store = peers::esrs_store(&pool08).await?;
        #[cfg(feature = "esrs")]
        peers::esrs_seed_events(pool, &filler).await?;
        #[cfg(feature = "esrs")]
        peers::esrs_seed_events(pool, &big).await?;
        db::pg_analyze(pool).await?;
        let cqrs_snap = peers::cqrs_snapshot_store(&pool08);
        // The same stores and peers over sessions with synchronous_commit off, for a
        // second set of saves that leaves the disk's flush out of the comparison.
        let pool_async =
            db::pg_connect_with(&args.pg_url, 16, &[("synchronous_commit", "off")]).await?;
        let pool08_async = sqlx08::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect_with(
                sqlx08::postgres::PgConnectOptions::from_str(&args.pg_url)?
                    .options([("synchronous_commit", "off")]),
            )
            .await?;
        let cqrs_snap_async = peers::cqrs_snapshot_store(&pool08_async);
        peers_async = Some(Peers {
            backend: suite::POSTGRES_ASYNC,
            cqrs_full: Arc::new(peers::cqrs_event_store(&pool08_async)),
            cqrs_snap: Arc::new(peers::cqrs_snapshot_store(&pool08_async)),
            cqrs_framework: Arc::new(cqrs_es::CqrsFramework::new(cqrs_snap_async, vec![], ())),
            #[cfg(feature = "esrs")]
            esrs: Arc::new(esrs::manager::AggregateManager::new(
                peers::esrs_store(&pool08_async).await?,
            )),
        });
        backend_async = Some(Backend {
            name: suite::POSTGRES_ASYNC,
            stores: Some(stores::postgres(&pool_async)),
            raw: Raw::Postgres(pool_async),
        });
        peers = Some(Peers {
            backend: POSTGRES,
            cqrs_full: Arc::new(peers::cqrs_event_store(&pool08)),
            cqrs_snap: Arc::new(peers::cqrs_snapshot_store(&pool08)),
            cqrs_framework: Arc::new(cqrs_es::CqrsFramework::new(cqrs_snap, vec![], ())),
            #[cfg(feature = "esrs")]
            esrs: Arc::new(esrs::manager::AggregateManager::new(esrs_store)),
        });
        backends.push(Backend {
            name: POSTGRES,
            stores: Some(stores::postgres(pool)),
            raw: Raw::Postgres(pool.clone()),
        });
        pg_version = Some(db::pg_version(pool).await?);
    }

    // --- loads ---------------------------------------------------------------------
    // Full replays: one interleaved group per history length. Snapshot loads: one group
    // for all lengths, so that the 100,000-event figure is taken under the same
    // conditions as the 1,000-event one (not right after full replays of 100,000 rows).
    let mut loads = Vec::new();
    let mut snapshot_cases = Vec::new();
    for (stream, &(_, rounds)) in big.iter().zip(&plan.rounds) {
        eprintln!("full replays: {} events", stream.n);
        let (snapshot, full): (Vec<_>, Vec<_>) =
            suite::load_cases(&backends, peers.as_ref(), stream.id, stream.n)
                .into_iter()
                .partition(|case| case.key.what == "load-snapshot");
        snapshot_cases.extend(snapshot);
        loads.extend(suite::interleaved(full, 1, rounds).await?);
    }
    eprintln!("snapshot loads");
    loads.extend(suite::interleaved(snapshot_cases, 1, plan.snapshot_rounds).await?);

    // --- saves ---------------------------------------------------------------------
    eprintln!("saves");
    let mut cases = suite::save_cases(&backends, peers.as_ref(), 1)?;
    cases.extend(suite::save_cases(&backends, peers.as_ref(), 100)?);
    if let Some(backend) = &backend_async {
        for batch in [1, 100] {
            cases.extend(suite::save_cases(
                std::slice::from_ref(backend),
                peers_async.as_ref(),
                batch,
            )?);
        }
    }
    let saves = suite::interleaved(cases, 1, plan.save_rounds).await?;

    // --- concurrent writers --------------------------------------------------------
    eprintln!("concurrent writers");
    let throughput = suite::throughput(
        &backends,
        peers.as_ref(),
        plan.writers,
        plan.cycles,
        plan.throughput_repeat,
    )
    .await?;

    // --- memory --------------------------------------------------------------------
    eprintln!("memory");
    let sqlite_arg = sqlite_path.to_string_lossy().into_owned();
    let mut rss = vec![rss::measure(
        SQLITE,
        OURS,
        million.id,
        million.n,
        &args.pg_url,
        &sqlite_arg,
    )?];
    rss.push(rss::measure(
        SQLITE,
        suite::FLOOR,
        million.id,
        million.n,
        &args.pg_url,
        &sqlite_arg,
    )?);
    if pg.is_some() {
        for who in [OURS, suite::FLOOR, suite::CQRS] {
            rss.push(rss::measure(
                POSTGRES,
                who,
                million.id,
                million.n,
                &args.pg_url,
                &sqlite_arg,
            )?);
        }
    }

    // --- the feed and subscriptions ------------------------------------------------
    // In databases of its own, with pools of its own: the suite's pools are closed first,
    // so that the two together stay well below the server's connection limit.
    for backend in backends.iter().chain(backend_async.iter()) {
        if let Raw::Postgres(pool) = &backend.raw {
            pool.close().await;
        }
    }
    drop((backends, backend_async, peers, peers_async));
    eprintln!("feed and subscriptions");
    let feed = subscriptions::run(
        pg.as_ref().map(|_| args.pg_url.as_str()),
        &data_dir,
        &subscriptions::Plan::new(args.quick),
    )
    .await?;

    // --- report --------------------------------------------------------------------
    let mut machine = machine_description();
    machine.push(format!(
        "SQLite {} (bundled with sqlx 0.9)",
        db::sqlite_version(&sqlite).await?
    ));
    match pg_version {
        Some(v) => machine.push(v),
        None => machine.push("PostgreSQL: not reached".to_owned()),
    }
    machine.push(if cfg!(feature = "esrs") {
        "peers: cqrs-es 0.5.0 + postgres-es 0.5.0 and esrs 0.18.0 (sqlx 0.8.6); eventsource and the floor use sqlx 0.9.0"
    } else {
        "peers: cqrs-es 0.5.0 + postgres-es 0.5.0 (sqlx 0.8.6; esrs left out: build with `--features esrs`); eventsource and the floor use sqlx 0.9.0"
    }.to_owned());
    machine.push(source_revision());
    let features = if cfg!(feature = "esrs") {
        " --features esrs"
    } else {
        ""
    };
    let command = if args.quick {
        format!("cargo run -p eventsource-bench --release{features} -- --quick")
    } else {
        format!("cargo run -p eventsource-bench --release{features}")
    };
    let findings_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("FINDINGS.md");
    let report = report::Report {
        quick: args.quick,
        command,
        machine,
        sizes: plan.sizes.clone(),
        filler: plan.filler,
        rounds: plan.rounds.clone(),
        save_rounds: plan.save_rounds,
        snapshot_rounds: plan.snapshot_rounds,
        loads,
        saves,
        throughput,
        writers: (plan.writers, plan.cycles),
        rss,
        feed: Some(feed),
        feed_only: false,
        notes,
        started: started_at.format("%Y-%m-%d %H:%M").to_string(),
        elapsed: clock.elapsed(),
        findings: if args.quick {
            None
        } else {
            std::fs::read_to_string(findings_path).ok()
        },
    };
    let out = match (&args.out, args.quick) {
        (Some(out), _) => out.clone(),
        (None, true) => data_dir.join("report"),
        (None, false) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs"),
    };
    std::fs::create_dir_all(&out)?;
    let svg = "load-times.svg";
    report.plot(&out.join(svg))?;
    let markdown = report.markdown(svg);
    std::fs::write(out.join("BENCHMARKS.md"), &markdown)?;
    println!("{markdown}");
    eprintln!("wrote {}", out.join("BENCHMARKS.md").display());
    Ok(())
}

/// `--feed-only`: the feed and subscriptions group alone. Its report never replaces the
/// published one unless `--out` says so: it goes to a temporary directory by default.
async fn run_feed_only(
    args: Args,
    started_at: chrono::DateTime<chrono::Utc>,
    clock: Instant,
) -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join("eventsource-bench");
    std::fs::create_dir_all(&data_dir)?;
    let mut notes = Vec::new();
    let pg = match db::pg_connect(&args.pg_url, 1).await {
        Ok(pool) => Some(pool),
        Err(e) if args.quick => {
            notes.push(format!("PostgreSQL: no server at the given URL ({e:#})."));
            None
        }
        Err(e) => return Err(e.context("PostgreSQL is required in full mode")),
    };
    let mut machine = machine_description();
    if let Some(pool) = &pg {
        machine.push(db::pg_version(pool).await?);
        pool.close().await;
    }
    machine.push(source_revision());
    let feed = subscriptions::run(
        pg.as_ref().map(|_| args.pg_url.as_str()),
        &data_dir,
        &subscriptions::Plan::new(args.quick),
    )
    .await?;
    let features = if cfg!(feature = "esrs") {
        " --features esrs"
    } else {
        ""
    };
    let quick = if args.quick { " --quick" } else { "" };
    let report = report::Report {
        quick: args.quick,
        command: format!(
            "cargo run -p eventsource-bench --release{features} --{quick} --feed-only"
        ),
        machine,
        sizes: Vec::new(),
        filler: (0, 0),
        rounds: Vec::new(),
        save_rounds: 0,
        snapshot_rounds: 0,
        loads: Vec::new(),
        saves: Vec::new(),
        throughput: Vec::new(),
        writers: (0, 0),
        rss: Vec::new(),
        feed: Some(feed),
        feed_only: true,
        notes,
        started: started_at.format("%Y-%m-%d %H:%M").to_string(),
        elapsed: clock.elapsed(),
        findings: None,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| data_dir.join("report-feed"));
    std::fs::create_dir_all(&out)?;
    let markdown = report.markdown("load-times.svg");
    std::fs::write(out.join("BENCHMARKS.md"), &markdown)?;
    println!("{markdown}");
    eprintln!("wrote {}", out.join("BENCHMARKS.md").display());
    Ok(())
}

/// CPU model, core count and memory of this machine.
fn machine_description() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".to_owned(), |s| s.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB of memory", kib as f64 / 1024.0 / 1024.0)
        });
    vec![
        format!("{model}; nproc = {cores}{memory}; shared with other builds during the run"),
        format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
    ]
}

/// The commit the benchmark was built from, and any uncommitted change to the code it runs.
fn source_revision() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "source: not a git checkout".to_owned();
    };
    let dirty = git(&[
        "status",
        "--porcelain",
        "--",
        "eventsource",
        "eventsource-derive",
        "migrations",
        "bench",
    ])
    .unwrap_or_default();
    let changed: Vec<&str> = dirty.lines().map(|l| l.get(3..).unwrap_or(l)).collect();
    if changed.is_empty() {
        format!("source: commit {head}")
    } else {
        format!(
            "source: commit {head}, with uncommitted changes to {}",
            changed.join(", ")
        )
    }
}
