//! The floor: the same rows read (or written) with plain sqlx and no framework.
//!
//! Rows are streamed and folded as they arrive, each payload decoded from `&str` with
//! `serde_json::from_str` straight into the event type, and applied with the same
//! `Apply` impls as the aggregate. Snapshot loads are read in two round trips (snapshot
//! row, then the tail) and in one statement (snapshot row `UNION ALL` tail rows, with
//! `ORDER BY version` inside the events branch so the index scan stays ordered).

use chrono::{SecondsFormat, Utc};
use futures_util::TryStreamExt;
use sqlx::{PgPool, Row, SqlitePool};
use uuid::Uuid;

use crate::model::{AGGREGATE_TYPE, Loaded, Order, decode, event_at, fold, stored};

/// Folds one event row into the state.
fn apply_row(
    state: &mut Order,
    loaded: &mut Loaded,
    version: i64,
    event_type: &str,
    payload: &str,
) -> anyhow::Result<()> {
    let event = decode(event_type, payload)?;
    fold(state, &event);
    loaded.version = u64::try_from(version)?;
    loaded.replayed += 1;
    Ok(())
}

fn finish(state: &Order, mut loaded: Loaded) -> Loaded {
    loaded.item_count = state.item_count;
    loaded
}

fn start(version: i64) -> anyhow::Result<Loaded> {
    Ok(Loaded {
        version: u64::try_from(version)?,
        replayed: 0,
        item_count: 0,
    })
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// Full replay, rows streamed.
pub async fn pg_load_full(pool: &PgPool, id: Uuid) -> anyhow::Result<Loaded> {
    let mut state = Order::default();
    let mut loaded = start(0)?;
    let mut rows = sqlx::query(
        "SELECT version, event_type, payload FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY version",
    )
    .bind(AGGREGATE_TYPE)
    .bind(id)
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        // A `json` value travels as its text: read it as `&str` without a copy.
        let payload: &str = row.try_get_unchecked(2)?;
        apply_row(
            &mut state,
            &mut loaded,
            row.try_get(0)?,
            row.try_get(1)?,
            payload,
        )?;
    }
    Ok(finish(&state, loaded))
}

/// Full replay reading and decoding the same eight columns as eventsource's PostgreSQL
/// store (checked `try_get` on each), to tell the cost of the columns from the rest.
pub async fn pg_load_full_wide(pool: &PgPool, id: Uuid) -> anyhow::Result<Loaded> {
    let mut state = Order::default();
    let mut loaded = start(0)?;
    let mut rows = sqlx::query(
        "SELECT position, event_id, version, event_type, event_version, \
         payload::text, metadata::text, occurred_at FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND version >= $3 ORDER BY version",
    )
    .bind(AGGREGATE_TYPE)
    .bind(id)
    .bind(1_i64)
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let _position: i64 = row.try_get(0)?;
        let _event_id: Uuid = row.try_get(1)?;
        let _event_version: i32 = row.try_get(4)?;
        let _metadata: &str = row.try_get(6)?;
        let _occurred_at: chrono::DateTime<Utc> = row.try_get(7)?;
        apply_row(
            &mut state,
            &mut loaded,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(5)?,
        )?;
    }
    Ok(finish(&state, loaded))
}

/// Snapshot row, then the tail, in two round trips.
pub async fn pg_load_snapshot_2rt(pool: &PgPool, id: Uuid) -> anyhow::Result<Loaded> {
    let snapshot = sqlx::query(
        "SELECT version, state::text FROM snapshots WHERE aggregate_id = $1 AND aggregate_type = $2",
    )
    .bind(id)
    .bind(AGGREGATE_TYPE)
    .fetch_optional(pool)
    .await?;
    let (mut state, mut loaded) = match &snapshot {
        Some(row) => (
            serde_json::from_str::<Order>(row.try_get(1)?)?,
            start(row.try_get(0)?)?,
        ),
        None => (Order::default(), start(0)?),
    };
    let from = i64::try_from(loaded.version)?;
    let mut rows = sqlx::query(
        "SELECT version, event_type, payload FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > $3 ORDER BY version",
    )
    .bind(AGGREGATE_TYPE)
    .bind(id)
    .bind(from)
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let payload: &str = row.try_get_unchecked(2)?;
        apply_row(
            &mut state,
            &mut loaded,
            row.try_get(0)?,
            row.try_get(1)?,
            payload,
        )?;
    }
    Ok(finish(&state, loaded))
}

/// Snapshot row and tail in one statement.
pub async fn pg_load_snapshot_1st(pool: &PgPool, id: Uuid) -> anyhow::Result<Loaded> {
    let mut rows = sqlx::query(
        "(SELECT version, NULL::text AS event_type, state::text AS body FROM snapshots \
           WHERE aggregate_id = $2 AND aggregate_type = $1) \
         UNION ALL \
         (SELECT version, event_type, payload::text FROM events \
           WHERE aggregate_type = $1 AND aggregate_id = $2 \
             AND version > COALESCE((SELECT version FROM snapshots \
                                      WHERE aggregate_id = $2 AND aggregate_type = $1), 0) \
           ORDER BY version)",
    )
    .bind(AGGREGATE_TYPE)
    .bind(id)
    .fetch(pool);
    let mut state = Order::default();
    let mut loaded = start(0)?;
    while let Some(row) = rows.try_next().await? {
        let event_type: Option<&str> = row.try_get(1)?;
        let body: &str = row.try_get(2)?;
        match event_type {
            None => {
                state = serde_json::from_str(body)?;
                loaded = start(row.try_get(0)?)?;
            }
            Some(event_type) => {
                apply_row(&mut state, &mut loaded, row.try_get(0)?, event_type, body)?
            }
        }
    }
    Ok(finish(&state, loaded))
}

/// Appends events `1..=count` of a new stream: one row with a plain `INSERT`
/// (autocommit), more with one `INSERT ... SELECT * FROM UNNEST(...)`.
pub async fn pg_append(pool: &PgPool, id: Uuid, count: u64) -> anyhow::Result<()> {
    let now = Utc::now();
    if count == 1 {
        let (event_type, payload) = stored(&event_at(1));
        sqlx::query(
            "INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
             event_version, payload, metadata, occurred_at) VALUES ($1, $2, $3, 1, $4, 1, $5::json, '{}'::json, $6)",
        )
        .bind(Uuid::new_v4())
        .bind(id)
        .bind(AGGREGATE_TYPE)
        .bind(event_type)
        .bind(payload)
        .bind(now)
        .execute(pool)
        .await?;
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut versions = Vec::new();
    let mut types = Vec::new();
    let mut payloads = Vec::new();
    for version in 1..=count {
        let (event_type, payload) = stored(&event_at(version));
        ids.push(Uuid::new_v4());
        versions.push(i64::try_from(version)?);
        types.push(event_type);
        payloads.push(payload);
    }
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
         event_version, payload, metadata, occurred_at) \
         SELECT e, $1, $2, v, t, 1, p::json, '{}'::json, $3 \
         FROM UNNEST($4::uuid[], $5::bigint[], $6::text[], $7::text[]) AS u(e, v, t, p)",
    )
    .bind(id)
    .bind(AGGREGATE_TYPE)
    .bind(now)
    .bind(&ids)
    .bind(&versions)
    .bind(&types)
    .bind(&payloads)
    .execute(pool)
    .await?;
    Ok(())
}

/// Appends events `1..=count` of a new stream with the statement eventsource's PostgreSQL
/// store uses (a CTE reading the head and inserting from arrays when it matches), bound
/// by hand: tells the statement's cost from the rest of a save.
pub async fn pg_append_cte(pool: &PgPool, id: Uuid, count: u64) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut ids = Vec::new();
    let mut types = Vec::new();
    let mut type_versions = Vec::new();
    let mut payloads = Vec::new();
    let mut metadata = Vec::new();
    let mut occurred = Vec::new();
    for version in 1..=count {
        let (event_type, payload) = stored(&event_at(version));
        ids.push(Uuid::new_v4());
        types.push(event_type);
        type_versions.push(1_i32);
        payloads.push(payload);
        metadata.push("{}");
        occurred.push(now);
    }
    let (head, inserted): (i64, i64) = sqlx::query_as(
        "WITH head AS ( \
             SELECT COALESCE(MAX(version), 0)::bigint AS version FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 \
         ), inserted AS ( \
             INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
             event_version, payload, metadata, occurred_at) \
             SELECT e.event_id, $2, $1, head.version + e.n, e.event_type, e.event_version, \
             e.payload::json, e.metadata::json, e.occurred_at \
             FROM head, UNNEST($4::uuid[], $5::text[], $6::integer[], $7::text[], $8::text[], \
             $9::timestamptz[]) WITH ORDINALITY \
             AS e(event_id, event_type, event_version, payload, metadata, occurred_at, n) \
             WHERE $3::bigint IS NULL OR head.version = $3::bigint \
             ORDER BY e.n \
             RETURNING 1 \
         ) \
         SELECT head.version, (SELECT COUNT(*) FROM inserted) FROM head",
    )
    .bind(AGGREGATE_TYPE)
    .bind(id)
    .bind(Some(0_i64))
    .bind(&ids)
    .bind(&types)
    .bind(&type_versions)
    .bind(&payloads)
    .bind(&metadata)
    .bind(&occurred)
    .fetch_one(pool)
    .await?;
    anyhow::ensure!(
        head == 0 && inserted == i64::try_from(count)?,
        "CTE append: head {head}, inserted {inserted}"
    );
    Ok(())
}

/// Appends the first event of a new stream with the store's statement rewritten for one
/// event: the same head check, scalar binds instead of arrays and `UNNEST`.
pub async fn pg_append_cte_scalar(pool: &PgPool, id: Uuid) -> anyhow::Result<()> {
    let (event_type, payload) = stored(&event_at(1));
    let (head, inserted): (i64, i64) = sqlx::query_as(
        "WITH head AS ( \
             SELECT COALESCE(MAX(version), 0)::bigint AS version FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 \
         ), inserted AS ( \
             INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
             event_version, payload, metadata, occurred_at) \
             SELECT $4, $2, $1, head.version + 1, $5, $6, $7::json, $8::json, $9 \
             FROM head WHERE $3::bigint IS NULL OR head.version = $3::bigint \
             RETURNING 1 \
         ) \
         SELECT head.version, (SELECT COUNT(*) FROM inserted) FROM head",
    )
    .bind(AGGREGATE_TYPE)
    .bind(id)
    .bind(Some(0_i64))
    .bind(Uuid::new_v4())
    .bind(event_type)
    .bind(1_i32)
    .bind(payload)
    .bind("{}")
    .bind(Utc::now())
    .fetch_one(pool)
    .await?;
    anyhow::ensure!(
        head == 0 && inserted == 1,
        "scalar append: head {head}, inserted {inserted}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------

/// Full replay, rows streamed.
pub async fn sqlite_load_full(pool: &SqlitePool, id: Uuid) -> anyhow::Result<Loaded> {
    let mut state = Order::default();
    let mut loaded = start(0)?;
    let mut rows = sqlx::query(
        "SELECT version, event_type, payload FROM events \
         WHERE aggregate_type = ?1 AND aggregate_id = ?2 ORDER BY version",
    )
    .bind(AGGREGATE_TYPE)
    .bind(id.to_string())
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        apply_row(
            &mut state,
            &mut loaded,
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
        )?;
    }
    Ok(finish(&state, loaded))
}

/// Full replay reading and decoding the same eight columns as eventsource's SQLite store
/// (ids and timestamps parsed from text), to tell the cost of the columns from the rest.
pub async fn sqlite_load_full_wide(pool: &SqlitePool, id: Uuid) -> anyhow::Result<Loaded> {
    let mut state = Order::default();
    let mut loaded = start(0)?;
    let mut rows = sqlx::query(
        "SELECT position, event_id, version, event_type, event_version, \
         payload, metadata, occurred_at FROM events \
         WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND version >= ?3 ORDER BY version",
    )
    .bind(AGGREGATE_TYPE)
    .bind(id.to_string())
    .bind(1_i64)
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let _position: i64 = row.try_get(0)?;
        let _event_id = Uuid::parse_str(row.try_get(1)?)?;
        let _event_version: i64 = row.try_get(4)?;
        let _metadata: &str = row.try_get(6)?;
        let _occurred_at = chrono::DateTime::parse_from_rfc3339(row.try_get(7)?)?;
        apply_row(
            &mut state,
            &mut loaded,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(5)?,
        )?;
    }
    Ok(finish(&state, loaded))
}

/// Snapshot row, then the tail, in two round trips.
pub async fn sqlite_load_snapshot_2rt(pool: &SqlitePool, id: Uuid) -> anyhow::Result<Loaded> {
    let key = id.to_string();
    let snapshot = sqlx::query(
        "SELECT version, state FROM snapshots WHERE aggregate_id = ?1 AND aggregate_type = ?2",
    )
    .bind(&key)
    .bind(AGGREGATE_TYPE)
    .fetch_optional(pool)
    .await?;
    let (mut state, mut loaded) = match &snapshot {
        Some(row) => (
            serde_json::from_str::<Order>(row.try_get(1)?)?,
            start(row.try_get(0)?)?,
        ),
        None => (Order::default(), start(0)?),
    };
    let from = i64::try_from(loaded.version)?;
    let mut rows = sqlx::query(
        "SELECT version, event_type, payload FROM events \
         WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND version > ?3 ORDER BY version",
    )
    .bind(AGGREGATE_TYPE)
    .bind(&key)
    .bind(from)
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        apply_row(
            &mut state,
            &mut loaded,
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
        )?;
    }
    Ok(finish(&state, loaded))
}

/// Snapshot row and tail in one statement.
pub async fn sqlite_load_snapshot_1st(pool: &SqlitePool, id: Uuid) -> anyhow::Result<Loaded> {
    let mut rows = sqlx::query(
        "SELECT * FROM (SELECT version, NULL AS event_type, state AS body FROM snapshots \
           WHERE aggregate_id = ?2 AND aggregate_type = ?1) \
         UNION ALL \
         SELECT * FROM (SELECT version, event_type, payload FROM events \
           WHERE aggregate_type = ?1 AND aggregate_id = ?2 \
             AND version > COALESCE((SELECT version FROM snapshots \
                                      WHERE aggregate_id = ?2 AND aggregate_type = ?1), 0) \
           ORDER BY version)",
    )
    .bind(AGGREGATE_TYPE)
    .bind(id.to_string())
    .fetch(pool);
    let mut state = Order::default();
    let mut loaded = start(0)?;
    while let Some(row) = rows.try_next().await? {
        let event_type: Option<&str> = row.try_get(1)?;
        let body: &str = row.try_get(2)?;
        match event_type {
            None => {
                state = serde_json::from_str(body)?;
                loaded = start(row.try_get(0)?)?;
            }
            Some(event_type) => {
                apply_row(&mut state, &mut loaded, row.try_get(0)?, event_type, body)?
            }
        }
    }
    Ok(finish(&state, loaded))
}

/// Appends events `1..=count` of a new stream with one multi-row `INSERT` (autocommit).
pub async fn sqlite_append(pool: &SqlitePool, id: Uuid, count: u64) -> anyhow::Result<()> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut sql = String::from(
        "INSERT INTO events (event_id, aggregate_id, aggregate_type, version, event_type, \
         event_version, payload, metadata, occurred_at) VALUES ",
    );
    for i in 0..count {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?, ?, ?, ?, ?, 1, ?, '{}', ?)");
    }
    let key = id.to_string();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for version in 1..=count {
        let (event_type, payload) = stored(&event_at(version));
        query = query
            .bind(Uuid::new_v4().to_string())
            .bind(key.clone())
            .bind(AGGREGATE_TYPE)
            .bind(i64::try_from(version)?)
            .bind(event_type)
            .bind(payload)
            .bind(now.clone());
    }
    query.execute(pool).await?;
    Ok(())
}
