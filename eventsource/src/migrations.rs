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
//! Every statement is `CREATE ... IF NOT EXISTS`: tables created by hand from
//! [`schema`] are adopted, not recreated.
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
    /// `snapshots`: at most one snapshot per aggregate.
    Snapshots,
}

impl Table {
    /// Every table, in the order they are created.
    pub const ALL: [Table; 2] = [Table::Events, Table::Snapshots];

    /// The table's name in the database.
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Snapshots => "snapshots",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The SQL that creates a table and its indexes on a backend: the text of the migration
/// file that `migrate_postgres` (feature `postgres`) or `migrate_sqlite` (feature
/// `sqlite`) applies.
pub fn schema(table: Table, backend: Backend) -> &'static str {
    match (backend, table) {
        (Backend::Postgres, Table::Events) => {
            include_str!("../../migrations/postgres/20261123000001_create_events.sql")
        }
        (Backend::Postgres, Table::Snapshots) => {
            include_str!("../../migrations/postgres/20261123000002_create_snapshots.sql")
        }
        (Backend::Sqlite, Table::Events) => {
            include_str!("../../migrations/sqlite/20261123000001_create_events.sql")
        }
        (Backend::Sqlite, Table::Snapshots) => {
            include_str!("../../migrations/sqlite/20261123000002_create_snapshots.sql")
        }
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
    migrator.run(pool).await.map_err(Error::backend)
}

/// Creates or updates the `events` and `snapshots` tables in a SQLite database.
///
/// Idempotent.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub async fn migrate_sqlite(pool: &sqlx::SqlitePool) -> Result<()> {
    let mut migrator = sqlx::migrate!("../migrations/sqlite");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.run(pool).await.map_err(Error::backend)
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
