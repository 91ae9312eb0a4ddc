//! The databases: connecting, resetting the schemas and filling them in bulk.
//!
//! Streams are written straight with SQL (one `INSERT ... SELECT * FROM UNNEST(...)` per
//! 10,000 rows on PostgreSQL, multi-row `INSERT`s in one transaction on SQLite), never
//! through the repository, so that seeding a million events takes seconds.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::{SecondsFormat, Utc};
use eventsource::Aggregate as _;
use eventsource::migrations::{Backend, Table, schema};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, PgPool, SqlitePool};
use uuid::Uuid;

use crate::model::{AGGREGATE_TYPE, event_at, state_at, stored};
use crate::peers;

/// Rows per bulk statement on PostgreSQL.
const PG_CHUNK: usize = 10_000;
/// Rows per multi-row `INSERT` on SQLite (10 parameters each).
const SQLITE_CHUNK: usize = 3_000;

/// A stream to write: its id and length.
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    /// The aggregate id.
    pub id: Uuid,
    /// Events 1..=n.
    pub n: u64,
}

/// The version of the snapshot stored for a stream of `n` events: 99 events are left to
/// replay after it, the most an every-100 policy ever leaves.
pub fn snapshot_version(n: u64) -> u64 {
    n.saturating_sub(99).max(1)
}

/// Connects to the benchmark database, creating it first if it is missing.
pub async fn pg_connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    pg_connect_with(url, max_connections, &[]).await
}

/// As [`pg_connect`], with these session settings (`SET name = value` on every connection).
pub async fn pg_connect_with(
    url: &str,
    max_connections: u32,
    settings: &[(&str, &str)],
) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("parsing the PostgreSQL URL")?
        .options(settings.iter().copied());
    pg_connect_options(options, max_connections, true).await
}

/// Connects to the database these options name, creating it first if it is missing.
/// `ping` is the pool's `test_before_acquire` (sqlx's default is on: one round trip more
/// for every connection lent).
pub async fn pg_connect_options(
    options: PgConnectOptions,
    max_connections: u32,
    ping: bool,
) -> anyhow::Result<PgPool> {
    let database = options.get_database().unwrap_or("postgres").to_owned();
    let admin = options.clone().database("postgres");
    let mut conn = sqlx::PgConnection::connect_with(&admin)
        .await
        .context("connecting to PostgreSQL")?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_optional(&mut conn)
        .await?;
    if exists.is_none() {
        let quoted = database.replace('"', "\"\"");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{quoted}\"")))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(ping)
        .connect_with(options)
        .await?)
}

/// Drops every table of the benchmark and creates eventsource's and cqrs-es's again.
pub async fn pg_reset(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS events, snapshots, _eventsource_migrations, \
         cqrs_events, cqrs_snapshots, bench_order_events CASCADE",
    )
    .execute(pool)
    .await?;
    // The snapshot read functions outlive the tables; the schema's first version of them
    // has another result type than its last, so they go too.
    sqlx::raw_sql(
        "DROP FUNCTION IF EXISTS eventsource_snapshot(TEXT, UUID, TEXT), \
         eventsource_snapshot_at(TEXT, UUID, BIGINT, TEXT)",
    )
    .execute(pool)
    .await?;
    pg_create_eventsource_schema(pool).await?;
    sqlx::raw_sql(AssertSqlSafe(peers::CQRS_SCHEMA))
        .execute(pool)
        .await?;
    Ok(())
}

async fn pg_create_eventsource_schema(pool: &PgPool) -> anyhow::Result<()> {
    for table in Table::ALL {
        sqlx::raw_sql(AssertSqlSafe(schema(table, Backend::Postgres)))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// The server's version string.
pub async fn pg_version(pool: &PgPool) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar("SELECT version()")
        .fetch_one(pool)
        .await?)
}

/// `ANALYZE` every table, as a live store would be.
pub async fn pg_analyze(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql("ANALYZE").execute(pool).await?;
    Ok(())
}

/// Every `(stream, version)` pair of these streams, in order.
fn rows(streams: &[Stream]) -> impl Iterator<Item = (Uuid, u64)> + '_ {
    streams
        .iter()
        .flat_map(|s| (1..=s.n).map(move |v| (s.id, v)))
}

/// Writes these streams into eventsource's `events` table on PostgreSQL.
pub async fn pg_seed_events(pool: &PgPool, streams: &[Stream]) -> anyhow::Result<()> {
    let now = Utc::now();
    let all: Vec<(Uuid, u64)> = rows(streams).collect();
    for chunk in all.chunks(PG_CHUNK) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut aggregates = Vec::with_capacity(chunk.len());
        let mut versions = Vec::with_capacity(chunk.len());
        let mut types = Vec::with_capacity(chunk.len());
        let mut payloads = Vec::with_capacity(chunk.len());
        for &(id, version) in chunk {
            let (event_type, payload) = stored(&event_at(version));
            ids.push(Uuid::new_v4());
            aggregates.push(id);
            versions.push(i64::try_from(version)?);
            types.push(event_type.to_owned());
            payloads.push(payload);
        }
        sqlx::query(
            "INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
             event_version, payload, metadata, occurred_at) \
             SELECT e, a, $1, v, t, 1, p::json, '{}'::json, $2 \
             FROM UNNEST($3::uuid[], $4::uuid[], $5::bigint[], $6::text[], $7::text[]) AS u(e, a, v, t, p)",
        )
        .bind(AGGREGATE_TYPE)
        .bind(now)
        .bind(&ids)
        .bind(&aggregates)
        .bind(&versions)
        .bind(&types)
        .bind(&payloads)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Stores eventsource's snapshot of each stream at [`snapshot_version`].
pub async fn pg_seed_snapshots(pool: &PgPool, streams: &[Stream]) -> anyhow::Result<()> {
    for s in streams {
        let version = snapshot_version(s.n);
        let state = state_at(version).to_snapshot()?;
        sqlx::query(
            "INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_version, state, created_at) \
             VALUES ($1, $2, $3, 1, $4::json, NOW())",
        )
        .bind(s.id)
        .bind(AGGREGATE_TYPE)
        .bind(i64::try_from(version)?)
        .bind(state)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Opens (creating) a SQLite file as `SqliteEventStore::open` does: WAL,
/// `synchronous = NORMAL`, a 30 s busy timeout; creates eventsource's tables.
pub async fn sqlite_open(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new().connect_with(options).await?;
    for table in Table::ALL {
        sqlx::raw_sql(AssertSqlSafe(schema(table, Backend::Sqlite)))
            .execute(&pool)
            .await?;
    }
    Ok(pool)
}

/// The SQLite library's version.
pub async fn sqlite_version(pool: &SqlitePool) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(pool)
        .await?)
}

/// Writes these streams into eventsource's `events` table on SQLite.
pub async fn sqlite_seed_events(pool: &SqlitePool, streams: &[Stream]) -> anyhow::Result<()> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let all: Vec<(Uuid, u64)> = rows(streams).collect();
    let mut tx = pool.begin().await?;
    for chunk in all.chunks(SQLITE_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
             event_version, payload, metadata, occurred_at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?, ?, ?, ?, ?, 1, ?, '{}', ?)");
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for &(id, version) in chunk {
            let (event_type, payload) = stored(&event_at(version));
            query = query
                .bind(Uuid::new_v4().to_string())
                .bind(id.to_string())
                .bind(AGGREGATE_TYPE)
                .bind(i64::try_from(version)?)
                .bind(event_type)
                .bind(payload)
                .bind(now.clone());
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Stores eventsource's snapshot of each stream at [`snapshot_version`] on SQLite.
pub async fn sqlite_seed_snapshots(pool: &SqlitePool, streams: &[Stream]) -> anyhow::Result<()> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    for s in streams {
        let version = snapshot_version(s.n);
        let state = state_at(version).to_snapshot()?;
        sqlx::query(
            "INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_version, state, created_at) \
             VALUES (?1, ?2, ?3, 1, ?4, ?5)",
        )
        .bind(s.id.to_string())
        .bind(AGGREGATE_TYPE)
        .bind(i64::try_from(version)?)
        .bind(state)
        .bind(&now)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// `ANALYZE` on SQLite.
pub async fn sqlite_analyze(pool: &SqlitePool) -> anyhow::Result<()> {
    sqlx::raw_sql("ANALYZE").execute(pool).await?;
    Ok(())
}
