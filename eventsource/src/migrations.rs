//! The SQL schema of the durable stores, and the functions that apply it.
//!
//! The schema lives in `.sql` files, one folder per backend (`migrations/postgres/`,
//! `migrations/sqlite/`), named `<VERSION>_<DESCRIPTION>.sql` as `sqlx migrate` expects.
//! [`schema`] returns the SQL of one table as text, for review or for a migration tool of
//! your own; `migrate_postgres` (feature `postgres`) and `migrate_sqlite` (feature
//! `sqlite`) apply every file that has not been applied yet.
//!
//! The applied versions are recorded in their own table, [`MIGRATIONS_TABLE`], so they
//! never mix with the `_sqlx_migrations` history of the application's own migrations.
//! Every statement is `CREATE ... IF NOT EXISTS`, or checks first what it changes:
//! tables created by hand from [`schema`] are adopted, not recreated. (The SQLite
//! migrations that give `snapshots` its history and its compressed states rebuild that
//! table, since SQLite cannot drop a constraint; on a table that already has the new
//! layout they rebuild the same table, plain rows kept. A SQLite table created from
//! [`schema`] is adopted only before it holds compressed snapshots: the history
//! migration's copy refuses their `NULL` state. Delete them first
//! (`DELETE FROM snapshots WHERE state IS NULL`; the loads replay).)
//!
//! Both functions are safe to run from several processes at once. On PostgreSQL, sqlx's
//! migrator runs them under an advisory lock. On SQLite, where that migrator takes no
//! lock, `migrate_sqlite` applies the files itself inside one `BEGIN IMMEDIATE`
//! transaction, and keeps the history in the layout, and with the checksums, sqlx's
//! migrator uses: a database migrated by either is recognised by the other.
//!
//! ```
//! use eventsource::migrations::{Backend, Table, schema};
//!
//! let sql = schema(Table::Snapshots, Backend::Postgres);
//! assert!(sql.contains("CREATE TABLE IF NOT EXISTS snapshots"));
//! ```

use std::fmt;

#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::error::{Error, Result};

/// The table recording which of this crate's migrations were applied.
pub const MIGRATIONS_TABLE: &str = "_eventsource_migrations";

/// A database the crate has a schema for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// PostgreSQL (13 or later).
    Postgres,
    /// SQLite (3.35 or later).
    Sqlite,
}

/// A table of the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Table {
    /// `events`: the event log.
    Events,
    /// `snapshots`: the snapshots of each aggregate, at most one per version (how many
    /// are kept is the snapshot policy's [`keep`](crate::SnapshotPolicy::keep)).
    Snapshots,
    /// `subscription_checkpoints`, with `subscription_parked` and `subscription_leases`:
    /// the durable state of [subscriptions](crate::subscription).
    Subscriptions,
}

impl Table {
    /// Every table, in the order they are created.
    pub const ALL: [Table; 3] = [Table::Events, Table::Snapshots, Table::Subscriptions];

    /// The table's name in the database.
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Snapshots => "snapshots",
            Table::Subscriptions => "subscription_checkpoints",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The SQL that creates a table and its indexes on a backend: the text of the migration
/// files that `migrate_postgres` (feature `postgres`) or `migrate_sqlite` (feature
/// `sqlite`) apply for it, in order.
pub fn schema(table: Table, backend: Backend) -> &'static str {
    match (backend, table) {
        (Backend::Postgres, Table::Events) => concat!(
            include_str!("../../migrations/postgres/20261123000001_create_events.sql"),
            "\n",
            include_str!("../../migrations/postgres/20261202000005_feed_transaction_ids.sql"),
            "\n",
            include_str!("../../migrations/postgres/20261202000007_stream_index.sql"),
        ),
        (Backend::Postgres, Table::Subscriptions) => {
            include_str!("../../migrations/postgres/20261202000006_subscriptions.sql")
        }
        (Backend::Sqlite, Table::Subscriptions) => {
            include_str!("../../migrations/sqlite/20261202000003_subscriptions.sql")
        }
        (Backend::Postgres, Table::Snapshots) => concat!(
            include_str!("../../migrations/postgres/20261123000002_create_snapshots.sql"),
            "\n",
            include_str!("../../migrations/postgres/20261202000003_snapshot_state_json.sql"),
            "\n",
            include_str!("../../migrations/postgres/20261202000004_snapshot_read_function.sql"),
            "\n",
            include_str!("../../migrations/postgres/20261202000008_snapshot_history.sql"),
            "\n",
            include_str!("../../migrations/postgres/20261202000009_snapshot_compression.sql"),
        ),
        (Backend::Sqlite, Table::Events) => concat!(
            include_str!("../../migrations/sqlite/20261123000001_create_events.sql"),
            "\n",
            include_str!("../../migrations/sqlite/20261202000004_stream_index.sql"),
        ),
        (Backend::Sqlite, Table::Snapshots) => concat!(
            include_str!("../../migrations/sqlite/20261123000002_create_snapshots.sql"),
            "\n",
            include_str!("../../migrations/sqlite/20261202000005_snapshot_history.sql"),
            "\n",
            include_str!("../../migrations/sqlite/20261202000006_snapshot_compression.sql"),
        ),
    }
}

/// Creates or updates the `events` and `snapshots` tables in a PostgreSQL database.
///
/// Idempotent, and safe to call from several processes at once: sqlx holds an advisory
/// lock while it migrates.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub async fn migrate_postgres(pool: &sqlx::PgPool) -> Result<()> {
    let mut migrator = sqlx::migrate!("../migrations/postgres");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.run(pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::VersionMismatch(version) => Error::backend(format!(
            "migration {version} is recorded in {MIGRATIONS_TABLE} with another checksum than \
             this build's: the database was migrated by a different version of eventsource \
             (an unreleased one, or edited migrations); migrate a fresh database, or restore \
             the files that were applied"
        )),
        sqlx::migrate::MigrateError::VersionMissing(version) => Error::backend(format!(
            "migration {version} is recorded in {MIGRATIONS_TABLE} but unknown to this build: \
             the database was migrated by a newer version of eventsource"
        )),
        e => Error::backend(e),
    })
}

/// Creates or updates the `events` and `snapshots` tables in a SQLite database.
///
/// Idempotent, and safe to call from any number of pools and processes at once, on a
/// fresh file or an existing one. sqlx's migrator takes no lock on SQLite, so this
/// function applies the migrations itself, on one connection of the pool and inside one
/// `BEGIN IMMEDIATE` transaction: it takes the database's write lock (waiting, for as
/// long as the connection's busy timeout, for any other writer), creates
/// [`MIGRATIONS_TABLE`] if it is missing, reads which versions are recorded there,
/// applies and records the missing ones, and commits. A caller that finds every
/// migration already recorded returns without taking the write lock.
///
/// The history table has the layout sqlx's migrator gives it and the same checksums, so
/// a database migrated by `sqlx::migrate!` with this table name is recognised as
/// migrated, and the other way round. A recorded migration whose checksum differs from
/// the embedded file, a recorded version this crate does not know, or one recorded as
/// failed is an [`Error::Backend`] naming the version.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub async fn migrate_sqlite(pool: &sqlx::SqlitePool) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(Error::backend)?;
    sqlite::migrate(&mut conn).await
}

/// The SQLite migrations, applied by hand under the database's write lock.
#[cfg(feature = "sqlite")]
mod sqlite {
    use std::collections::HashMap;
    use std::time::Instant;

    use sqlx::migrate::{Migration, Migrator};
    use sqlx::{AssertSqlSafe, Connection, SqliteConnection};

    use super::MIGRATIONS_TABLE;
    use crate::error::{Error, Result};

    /// The embedded migrations: the files of `migrations/sqlite/`, with sqlx's checksums.
    fn migrator() -> Migrator {
        sqlx::migrate!("../migrations/sqlite")
    }

    /// A recorded row of the history table.
    struct Applied {
        checksum: Vec<u8>,
        success: bool,
    }

    pub(super) async fn migrate(conn: &mut SqliteConnection) -> Result<()> {
        let migrator = migrator();
        // Without the lock first: a database already migrated opens without waiting for
        // its writers.
        if history_exists(conn).await? && pending(&migrator, &read_history(conn).await?)?.is_empty()
        {
            return Ok(());
        }

        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::backend)?;
        // The layout sqlx's migrator creates (`ensure_migrations_table` of sqlx-sqlite).
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL,
                installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                success BOOLEAN NOT NULL,
                checksum BLOB NOT NULL,
                execution_time BIGINT NOT NULL
            )"
        )))
        .execute(&mut *tx)
        .await
        .map_err(Error::backend)?;
        // Read again under the lock: another connection may have migrated meanwhile.
        let history = read_history(&mut tx).await?;
        for migration in pending(&migrator, &history)? {
            let started = Instant::now();
            sqlx::raw_sql(migration.sql.clone())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    Error::backend(format!(
                        "migration {} ({}) failed: {e}",
                        migration.version, migration.description
                    ))
                })?;
            let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {MIGRATIONS_TABLE} \
                 (version, description, success, checksum, execution_time) \
                 VALUES (?1, ?2, TRUE, ?3, ?4)"
            )))
            .bind(migration.version)
            .bind(&*migration.description)
            .bind(&*migration.checksum)
            .bind(nanos)
            .execute(&mut *tx)
            .await
            .map_err(Error::backend)?;
        }
        tx.commit().await.map_err(Error::backend)
    }

    async fn history_exists(conn: &mut SqliteConnection) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        )
        .bind(MIGRATIONS_TABLE)
        .fetch_one(conn)
        .await
        .map_err(Error::backend)
    }

    async fn read_history(conn: &mut SqliteConnection) -> Result<HashMap<i64, Applied>> {
        let rows: Vec<(i64, Vec<u8>, bool)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT version, checksum, success FROM {MIGRATIONS_TABLE}"
        )))
        .fetch_all(conn)
        .await
        .map_err(Error::backend)?;
        Ok(rows
            .into_iter()
            .map(|(version, checksum, success)| (version, Applied { checksum, success }))
            .collect())
    }

    /// The embedded up-migrations not recorded yet, in version order, after checking the
    /// recorded ones as sqlx's migrator does.
    fn pending<'m>(
        migrator: &'m Migrator,
        history: &HashMap<i64, Applied>,
    ) -> Result<Vec<&'m Migration>> {
        let mut versions: Vec<i64> = history.keys().copied().collect();
        versions.sort_unstable();
        for version in versions {
            if !history[&version].success {
                return Err(Error::backend(format!(
                    "migration {version} is recorded in {MIGRATIONS_TABLE} as failed: the \
                     database is partially migrated and must be repaired by hand"
                )));
            }
            if !migrator.version_exists(version) {
                return Err(Error::backend(format!(
                    "migration {version} is recorded in {MIGRATIONS_TABLE} but unknown to \
                     this version of eventsource"
                )));
            }
        }
        let mut pending = Vec::new();
        for migration in migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
        {
            match history.get(&migration.version) {
                Some(applied) if applied.checksum != *migration.checksum => {
                    return Err(Error::backend(format!(
                        "migration {} ({}) recorded in {MIGRATIONS_TABLE} has a checksum \
                         different from the embedded file's: the applied SQL was not this \
                         version of the file",
                        migration.version, migration.description
                    )));
                }
                Some(_) => {}
                None => pending.push(migration),
            }
        }
        Ok(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_a_schema_on_every_backend() {
        for backend in [Backend::Postgres, Backend::Sqlite] {
            for table in Table::ALL {
                let sql = schema(table, backend);
                let create = format!("CREATE TABLE IF NOT EXISTS {table} (");
                assert!(sql.contains(&create), "{backend:?} {table}: {sql}");
            }
        }
    }
}
