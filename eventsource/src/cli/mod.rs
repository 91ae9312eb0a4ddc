//! An admin command line to embed in the application's own binary: schema, snapshot
//! backfill, coverage, verification and invalidation, the event feed, subscriptions.
//!
//! It needs the application's aggregate types to replay them, so it is a library the
//! application calls from a `main` of its own, registering each type:
//!
//! ```no_run
//! # use eventsource::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
//! # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
//! # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
//! # #[aggregate(name = "Account", event = AccountEvent)]
//! # pub struct Account { pub cents: u64 }
//! # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.cents += e.cents; } }
//! use eventsource::cli::AdminCli;
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     AdminCli::new().aggregate::<Account>().run_from_env().await
//! }
//! ```
//!
//! ```text
//! $ bank-admin --database-url postgres://app@db/bank status
//! $ bank-admin snapshots backfill Account --min-events 500 --concurrency 8
//! $ bank-admin snapshots verify Account --sample 1000
//! $ bank-admin snapshots invalidate Account --below-schema 3
//! $ bank-admin events tail --from 0/1200 --limit 50
//! $ bank-admin subscriptions lag --json
//! ```
//!
//! The database comes from `--database-url` or `DATABASE_URL` (`postgres://...` or
//! `sqlite://path`). Output is tables by default, one JSON document per line with
//! `--json`; long work shows a progress bar on a terminal. Bad arguments get clap's
//! usage errors (exit code 2); a failed command exits with 1. A dangerous command
//! (invalidating every snapshot of a type, resetting a subscription) asks on the
//! terminal first unless given `--yes`, and refuses without `--yes` when its input is
//! not a terminal. Only `migrate` changes the schema on PostgreSQL; opening a SQLite
//! file creates its tables.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use clap::{CommandFactory, FromArgMatches};
use serde_json::json;
use uuid::Uuid;

use crate::SqliteSnapshotStore;
use crate::admin::{Admin, Backfill, BackfillReport, CoverageOptions, Verify, VerifyReport};
use crate::aggregate::Aggregate;
use crate::error::{Error, Result};
use crate::feed::FeedQuery;
use crate::subscription::{Projection, Subscription};
use crate::{EventStore, PostgresEventStore, PostgresSnapshotStore, SqliteEventStore};

mod args;
mod output;

use args::{Cli, Command, EventsCommand, SnapshotsCommand, SubscriptionsCommand};
use output::Output;

/// The admin command line, with the aggregate types (and projections) it can replay.
///
/// See the [module](self) for the commands.
#[derive(Default)]
#[must_use]
pub struct AdminCli {
    aggregates: BTreeMap<&'static str, Arc<dyn Registered>>,
    projections: BTreeMap<String, Arc<dyn Retry>>,
}

impl fmt::Debug for AdminCli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminCli")
            .field("aggregates", &self.aggregates.keys().collect::<Vec<_>>())
            .field("projections", &self.projections.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AdminCli {
    /// A command line with no aggregate type registered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an aggregate type: `snapshots backfill` and `snapshots verify` can
    /// then replay it (`status` and `invalidate` work on any type).
    pub fn aggregate<A: Aggregate>(mut self) -> Self {
        self.aggregates
            .insert(A::TYPE, Arc::new(Of::<A>(std::marker::PhantomData)));
        self
    }

    /// Registers the projection of a subscription, for `subscriptions retry-parked`:
    /// `make` builds one for each retry. It must be a projection on both SQL backends
    /// (`impl<C: Send> Projection<C>`, say, for a read model outside the database).
    pub fn projection<P>(
        mut self,
        subscription: impl Into<String>,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self
    where
        P: Projection<sqlx::PgConnection> + Projection<sqlx::SqliteConnection> + 'static,
    {
        self.projections.insert(
            subscription.into(),
            Arc::new(RetryWith {
                make: Box::new(make),
            }),
        );
        self
    }

    /// Parses the process's arguments and runs the command; the exit code says how it
    /// went (clap exits the process itself, with code 2, on bad arguments).
    pub async fn run_from_env(self) -> ExitCode {
        self.run_from(std::env::args_os()).await
    }

    /// Parses `args` (the first is the program's name) and runs the command.
    pub async fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Cli::command();
        let matches = command
            .try_get_matches_from_mut(args)
            .unwrap_or_else(|e| e.exit());
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let out = Output { json: cli.json };
        match self.run(&mut command, cli, out).await {
            Ok(code) => code,
            Err(error) => {
                if out.json {
                    out.json(&json!({ "error": error.to_string() }));
                }
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    }

    async fn run(&self, command: &mut clap::Command, cli: Cli, out: Output) -> Result<ExitCode> {
        // Argument checks that need the registrations: clap's errors, clap's exit code.
        if let Command::Snapshots(
            SnapshotsCommand::Backfill { aggregate, .. }
            | SnapshotsCommand::Verify { aggregate, .. },
        ) = &cli.command
            && !self.aggregates.contains_key(aggregate.as_str())
        {
            let known: Vec<&str> = self.aggregates.keys().copied().collect();
            command
                .error(
                    clap::error::ErrorKind::InvalidValue,
                    format!(
                        "unknown aggregate type `{aggregate}`, expected one of: {}",
                        known.join(", ")
                    ),
                )
                .exit();
        }
        let Some(url) = cli.database_url.as_deref() else {
            command
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "no database: pass --database-url or set DATABASE_URL",
                )
                .exit();
        };
        let connections = match &cli.command {
            Command::Snapshots(
                SnapshotsCommand::Backfill { concurrency, .. }
                | SnapshotsCommand::Verify { concurrency, .. },
            ) => *concurrency as u32 + 2,
            _ => 4,
        };
        let db = Database::open(url, connections).await?;
        let code = self.dispatch(&db, cli, out).await;
        db.close().await;
        code
    }

    async fn dispatch(&self, db: &Database, cli: Cli, out: Output) -> Result<ExitCode> {
        let admin = db.admin();
        match cli.command {
            Command::Migrate => {
                db.migrate().await?;
                out.json(&json!({ "migrated": true }));
                out.line("the schema is up to date");
            }
            Command::Status(args) => {
                let types = match args.aggregate {
                    Some(t) => vec![t],
                    None => admin.aggregate_types().await?,
                };
                let options = CoverageOptions {
                    stale_after: args.stale_after,
                    largest: args.largest,
                };
                let mut rows = Vec::new();
                let mut largest = Vec::new();
                for t in &types {
                    let report = admin.coverage(t, &options).await?;
                    out.json(&report);
                    let schemas = report
                        .schema_versions
                        .iter()
                        .map(|v| format!("v{}: {}", v.schema_version, v.snapshots))
                        .collect::<Vec<_>>()
                        .join(", ");
                    rows.push(vec![
                        report.aggregate_type.clone(),
                        report.aggregates.to_string(),
                        report.with_snapshot.to_string(),
                        report.without_snapshot.to_string(),
                        report.stale.to_string(),
                        report.max_events_since_snapshot.to_string(),
                        if schemas.is_empty() {
                            "-".into()
                        } else {
                            schemas
                        },
                    ]);
                    for s in &report.largest {
                        largest.push(vec![
                            report.aggregate_type.clone(),
                            s.aggregate_id.to_string(),
                            s.version.to_string(),
                            s.schema_version.to_string(),
                            s.bytes.to_string(),
                        ]);
                    }
                }
                let stale = format!("stale (>{})", options.stale_after);
                out.table(
                    &[
                        "type",
                        "aggregates",
                        "snapshot",
                        "none",
                        &stale,
                        "max behind",
                        "schema versions",
                    ],
                    &rows,
                );
                if !largest.is_empty() {
                    out.line("");
                    out.line("largest snapshots:");
                    out.table(
                        &["type", "aggregate", "version", "schema", "bytes"],
                        &largest,
                    );
                }
            }
            Command::Snapshots(SnapshotsCommand::Backfill {
                aggregate,
                min_events,
                concurrency,
                limit,
            }) => {
                let bar = out.progress(&format!("backfill {aggregate}"));
                let progress = bar.clone();
                let mut backfill = Backfill::new(min_events)
                    .concurrency(concurrency as usize)
                    .on_progress(move |p| {
                        progress.set_length(p.total);
                        progress.set_position(p.done);
                        if p.errors > 0 {
                            progress.set_prefix(format!("{} errors", p.errors));
                        }
                    });
                if let Some(limit) = limit {
                    backfill = backfill.limit(limit);
                }
                let report = self.aggregates[aggregate.as_str()]
                    .backfill(&admin, &backfill)
                    .await?;
                bar.finish_and_clear();
                out.json(&report);
                out.line(format!(
                    "{}: {} aggregates at least {min_events} events behind, {} snapshotted, \
                     {} skipped (caught up meanwhile), {} failed, in {:.1} s ({:.0}/s)",
                    report.aggregate_type,
                    report.total,
                    report.snapshotted,
                    report.skipped,
                    report.failures.len(),
                    report.elapsed.as_secs_f64(),
                    report.rate()
                ));
                for f in &report.failures {
                    out.line(format!("  failed {}: {}", f.aggregate_id, f.error));
                }
                if !report.failures.is_empty() {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Command::Snapshots(SnapshotsCommand::Verify {
                aggregate,
                sample,
                concurrency,
            }) => {
                let options = match sample {
                    Some(n) => Verify::sample(n),
                    None => Verify::all(),
                }
                .concurrency(concurrency as usize);
                let bar = out.progress(&format!("verify {aggregate}"));
                let report = self.aggregates[aggregate.as_str()]
                    .verify(&admin, &options)
                    .await?;
                bar.finish_and_clear();
                out.json(&report);
                out.line(format!(
                    "{}: {} of {} snapshots checked, {} match, {} differ, {} unusable, {} failed",
                    report.aggregate_type,
                    report.checked,
                    report.with_snapshot,
                    report.matching,
                    report.differing.len(),
                    report.unusable.len(),
                    report.failures.len()
                ));
                let mut rows: Vec<Vec<String>> = report
                    .differing
                    .iter()
                    .map(|m| {
                        vec![
                            "differs".into(),
                            m.aggregate_id.to_string(),
                            m.version.to_string(),
                            format!(
                                "at {:?}: snapshot {} / replay {}",
                                m.path, m.snapshot, m.replayed
                            ),
                        ]
                    })
                    .collect();
                rows.extend(report.unusable.iter().map(|u| {
                    vec![
                        "unusable".into(),
                        u.aggregate_id.to_string(),
                        u.version.to_string(),
                        u.reason.clone(),
                    ]
                }));
                rows.extend(report.failures.iter().map(|f| {
                    vec![
                        "failed".into(),
                        f.aggregate_id.to_string(),
                        "-".into(),
                        f.error.clone(),
                    ]
                }));
                if !rows.is_empty() {
                    out.table(&["finding", "aggregate", "version", "detail"], &rows);
                }
                if !report.is_clean() {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Command::Snapshots(SnapshotsCommand::Invalidate {
                aggregate,
                below_schema,
            }) => {
                if below_schema.is_none()
                    && !confirm(cli.yes, &format!("delete every snapshot of `{aggregate}`"))?
                {
                    return Ok(ExitCode::FAILURE);
                }
                let deleted = admin.invalidate(&aggregate, below_schema).await?;
                out.json(&json!({
                    "aggregate_type": aggregate,
                    "schema_version_below": below_schema,
                    "deleted": deleted,
                }));
                out.line(format!("{deleted} snapshots of {aggregate} deleted"));
            }
            Command::Events(EventsCommand::Tail {
                from,
                limit,
                aggregate_types,
                follow,
            }) => {
                tail(
                    admin.event_store().as_ref(),
                    from,
                    limit,
                    aggregate_types,
                    follow,
                    out,
                )
                .await?;
            }
            Command::Subscriptions(command) => {
                self.subscriptions(db, &admin, command, cli.yes, out)
                    .await?
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn subscriptions(
        &self,
        db: &Database,
        admin: &Admin,
        command: SubscriptionsCommand,
        yes: bool,
        out: Output,
    ) -> Result<()> {
        let store = admin.store();
        match command {
            SubscriptionsCommand::List => {
                let all = store.subscriptions().await?;
                let mut rows = Vec::new();
                for p in &all {
                    out.json(p);
                    rows.push(vec![
                        p.subscription.clone(),
                        p.partition.to_string(),
                        p.checkpoint.to_string(),
                        p.parked.to_string(),
                        p.updated_at.map_or("-".into(), |t| t.to_rfc3339()),
                    ]);
                }
                out.table(
                    &[
                        "subscription",
                        "partition",
                        "checkpoint",
                        "parked",
                        "updated",
                    ],
                    &rows,
                );
            }
            SubscriptionsCommand::Lag { name } => {
                let now = Utc::now();
                let mut rows = Vec::new();
                for p in store.subscriptions().await? {
                    if name.as_ref().is_some_and(|n| *n != p.subscription) {
                        continue;
                    }
                    let lag = store.feed_lag(p.checkpoint).await?;
                    out.json(&json!({
                        "subscription": p.subscription,
                        "partition": p.partition,
                        "checkpoint": p.checkpoint.to_string(),
                        "events": lag.events,
                        "seconds": lag.seconds(now),
                        "parked": p.parked,
                    }));
                    rows.push(vec![
                        p.subscription,
                        p.partition.to_string(),
                        p.checkpoint.to_string(),
                        lag.events.to_string(),
                        format!("{:.1}", lag.seconds(now)),
                        p.parked.to_string(),
                    ]);
                }
                out.table(
                    &[
                        "subscription",
                        "partition",
                        "checkpoint",
                        "events behind",
                        "seconds behind",
                        "parked",
                    ],
                    &rows,
                );
            }
            SubscriptionsCommand::Reset { name, to } => {
                if !confirm(
                    yes,
                    &format!("move every partition of subscription `{name}` to {to}"),
                )? {
                    return Err(Error::invalid("yes", "not confirmed"));
                }
                let partitions = store.reset_subscription(&name, to).await?;
                out.json(&json!({ "subscription": name, "checkpoint": to.to_string(), "partitions": partitions }));
                out.line(format!("{partitions} partitions of {name} moved to {to}"));
            }
            SubscriptionsCommand::Parked { name } => {
                let parked = store.parked(&name).await?;
                let mut rows = Vec::new();
                for p in &parked {
                    out.json(&json!({
                        "subscription": p.subscription,
                        "event_id": p.event_id,
                        "position": p.position,
                        "aggregate_type": p.aggregate_type,
                        "aggregate_id": p.aggregate_id,
                        "partition": p.partition,
                        "attempts": p.attempts,
                        "error": p.error,
                        "parked_at": p.parked_at,
                    }));
                    rows.push(vec![
                        p.event_id.to_string(),
                        p.position.to_string(),
                        format!("{}/{}", p.aggregate_type, p.aggregate_id),
                        p.attempts.to_string(),
                        p.error.clone(),
                    ]);
                }
                out.table(
                    &["event", "position", "aggregate", "attempts", "error"],
                    &rows,
                );
            }
            SubscriptionsCommand::RetryParked { name, event } => {
                let Some(retry) = self.projections.get(&name) else {
                    return Err(Error::invalid(
                        "subscription",
                        format!(
                            "no projection registered for subscription `{name}`: the application \
                             registers it with AdminCli::projection"
                        ),
                    ));
                };
                let ids: Vec<Uuid> = match event {
                    Some(id) => vec![id],
                    None => store
                        .parked(&name)
                        .await?
                        .iter()
                        .map(|p| p.event_id)
                        .collect(),
                };
                let mut failed = 0;
                for id in ids {
                    let outcome = retry.retry(db, &name, id).await;
                    let (done, error) = match &outcome {
                        Ok(done) => (*done, None),
                        Err(e) => (false, Some(e.to_string())),
                    };
                    failed += u32::from(error.is_some());
                    out.json(&json!({ "event_id": id, "unparked": done, "error": error }));
                    out.line(match error {
                        Some(e) => format!("{id}: still parked ({e})"),
                        None if done => format!("{id}: handled and unparked"),
                        None => format!("{id}: not parked"),
                    });
                }
                if failed > 0 {
                    return Err(Error::invalid(
                        "subscription",
                        format!("{failed} parked events failed again"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Prints the feed after `from`, up to `limit` events; waits for more with `follow`.
async fn tail(
    store: &dyn EventStore,
    from: crate::feed::Checkpoint,
    limit: u64,
    aggregate_types: Vec<String>,
    follow: bool,
    out: Output,
) -> Result<()> {
    let mut after = from;
    let mut printed = 0u64;
    while printed < limit {
        let mut query = FeedQuery::after(after)
            .limit(usize::try_from((limit - printed).min(500)).unwrap_or(500));
        if !aggregate_types.is_empty() {
            query = query.aggregate_types(aggregate_types.clone());
        }
        let page = store.read_feed(&query).await?;
        for fed in &page.events {
            let e = &fed.event;
            let payload: serde_json::Value = serde_json::from_str(&e.payload)
                .unwrap_or(serde_json::Value::String(e.payload.clone()));
            out.json(&json!({
                "checkpoint": fed.checkpoint.to_string(),
                "position": e.position,
                "event_id": e.event_id,
                "aggregate_type": e.aggregate_type,
                "aggregate_id": e.aggregate_id,
                "version": e.version,
                "event_type": e.event_type,
                "event_version": e.event_version,
                "occurred_at": e.occurred_at,
                "payload": payload,
            }));
            out.line(format!(
                "{:<14} {} {}/{} v{} {} {}",
                fed.checkpoint.to_string(),
                e.occurred_at.to_rfc3339(),
                e.aggregate_type,
                e.aggregate_id,
                e.version,
                e.event_type,
                e.payload
            ));
            printed += 1;
        }
        after = page.next;
        if page.events.is_empty() {
            if !follow {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    if !out.json {
        eprintln!("next: --from {after}");
    }
    Ok(())
}

/// `true` if the user agrees to `what`: at once with `--yes`; otherwise asked on the
/// terminal, and refused (with a message saying to pass `--yes`) without one.
fn confirm(yes: bool, what: &str) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        eprintln!(
            "refusing to {what} without confirmation: the input is not a terminal; pass --yes"
        );
        return Ok(false);
    }
    eprint!("{what}? Type `yes` to go on: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(Error::backend)?;
    let agreed = answer.trim() == "yes";
    if !agreed {
        eprintln!("not confirmed: nothing done");
    }
    Ok(agreed)
}

/// A database the command line opened.
enum Database {
    Postgres(PostgresEventStore),
    Sqlite(SqliteEventStore),
}

impl Database {
    /// Opens `url` with a pool of at most `connections` (PostgreSQL).
    async fn open(url: &str, connections: u32) -> Result<Database> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(connections.max(2))
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(Error::backend)?;
            return Ok(Database::Postgres(PostgresEventStore::new(pool)));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return Ok(Database::Sqlite(SqliteEventStore::open(path).await?));
        }
        Err(Error::invalid(
            "database_url",
            "expected a postgres://... or sqlite://... URL",
        ))
    }

    fn admin(&self) -> Admin {
        match self {
            Database::Postgres(store) => Admin::new(
                Arc::new(store.clone()),
                Arc::new(PostgresSnapshotStore::new(store.pool().clone())),
            ),
            Database::Sqlite(store) => Admin::new(
                Arc::new(store.clone()),
                Arc::new(SqliteSnapshotStore::new(store.pool().clone())),
            ),
        }
    }

    async fn migrate(&self) -> Result<()> {
        match self {
            Database::Postgres(store) => crate::migrations::migrate_postgres(store.pool()).await,
            Database::Sqlite(store) => crate::migrations::migrate_sqlite(store.pool()).await,
        }
    }

    async fn close(&self) {
        match self {
            Database::Postgres(store) => store.close().await,
            Database::Sqlite(store) => store.close().await,
        }
    }
}

/// A registered aggregate type, its type erased.
#[async_trait]
trait Registered: Send + Sync {
    async fn backfill(&self, admin: &Admin, options: &Backfill) -> Result<BackfillReport>;
    async fn verify(&self, admin: &Admin, options: &Verify) -> Result<VerifyReport>;
}

struct Of<A>(std::marker::PhantomData<fn() -> A>);

#[async_trait]
impl<A: Aggregate> Registered for Of<A> {
    async fn backfill(&self, admin: &Admin, options: &Backfill) -> Result<BackfillReport> {
        admin.backfill::<A>(options).await
    }
    async fn verify(&self, admin: &Admin, options: &Verify) -> Result<VerifyReport> {
        admin.verify::<A>(options).await
    }
}

/// A registered projection, for retrying parked events.
#[async_trait]
trait Retry: Send + Sync {
    async fn retry(&self, db: &Database, subscription: &str, event_id: Uuid) -> Result<bool>;
}

struct RetryWith<P> {
    make: Box<dyn Fn() -> P + Send + Sync>,
}

#[async_trait]
impl<P> Retry for RetryWith<P>
where
    P: Projection<sqlx::PgConnection> + Projection<sqlx::SqliteConnection> + 'static,
{
    async fn retry(&self, db: &Database, subscription: &str, event_id: Uuid) -> Result<bool> {
        let mut projection = (self.make)();
        match db {
            Database::Postgres(store) => {
                Subscription::new(subscription, store.clone())
                    .retry_parked(event_id, &mut projection)
                    .await
            }
            Database::Sqlite(store) => {
                Subscription::new(subscription, store.clone())
                    .retry_parked(event_id, &mut projection)
                    .await
            }
        }
    }
}
