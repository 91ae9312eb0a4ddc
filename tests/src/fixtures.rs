//! One fixture per backend: an event store and a snapshot store ready for a test.

use std::sync::Arc;

use eventsource::{
    InMemoryEventStore, InMemorySnapshotStore, PostgresEventStore, PostgresSnapshotStore,
    SqliteEventStore, SqliteSnapshotStore,
};

use crate::{Backend, Closer, Stores, TempDir};

/// The URL that enables the PostgreSQL tests locally.
pub const EXAMPLE_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";

/// `DATABASE_URL`, or `None` after saying how to set it.
///
/// # Panics
///
/// When `CI` is set and `DATABASE_URL` is not: CI must run the PostgreSQL tests, never
/// skip them.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "CI is set but DATABASE_URL is not: the PostgreSQL tests cannot be skipped in CI \
             (e.g. DATABASE_URL={EXAMPLE_DATABASE_URL})"
        ),
        _ => {
            eprintln!(
                "skipping a PostgreSQL test: DATABASE_URL is not set. To run it: \
                 DATABASE_URL={EXAMPLE_DATABASE_URL} cargo test -p eventsource-tests"
            );
            None
        }
    }
}

/// In-memory stores.
pub async fn memory() -> Option<Stores> {
    Some(Stores {
        events: Arc::new(InMemoryEventStore::new()),
        snapshots: Arc::new(InMemorySnapshotStore::new()),
        close: None,
        _dir: None,
    })
}

/// Stores in a fresh SQLite file (WAL) in a temporary directory, sharing one pool.
///
/// # Panics
///
/// When the directory or the database cannot be created.
pub async fn sqlite_file() -> Option<Stores> {
    let dir = TempDir::new().expect("create a temporary directory");
    let events = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .expect("open a SQLite file");
    Some(sqlite(events, Some(dir)))
}

/// Stores in a fresh in-memory SQLite database, sharing its single connection.
///
/// # Panics
///
/// When the database cannot be created.
pub async fn sqlite_memory() -> Option<Stores> {
    let events = SqliteEventStore::open(":memory:")
        .await
        .expect("open an in-memory SQLite database");
    Some(sqlite(events, None))
}

fn sqlite(events: SqliteEventStore, dir: Option<TempDir>) -> Stores {
    Stores {
        snapshots: Arc::new(SqliteSnapshotStore::new(events.pool().clone())),
        events: Arc::new(events.clone()),
        close: Some(Closer::Sqlite(events)),
        _dir: dir,
    }
}

/// Stores in the PostgreSQL database of `DATABASE_URL` (migrated), or `None` when it is
/// not set. Tests share the database: each uses aggregate types of its own.
///
/// # Panics
///
/// When the database cannot be reached or migrated, or as [`database_url`] says.
pub async fn postgres() -> Option<Stores> {
    let url = database_url()?;
    let events = PostgresEventStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL at {url}: {e}"));
    Some(Stores {
        snapshots: Arc::new(PostgresSnapshotStore::new(events.pool().clone())),
        events: Arc::new(events.clone()),
        close: Some(Closer::Postgres(events)),
        _dir: None,
    })
}

/// An in-memory store, as its own type (for the subscription suite).
pub async fn memory_store() -> Option<Backend<InMemoryEventStore>> {
    Some(Backend::new(InMemoryEventStore::new()))
}

/// A store in a fresh SQLite file (WAL) in a temporary directory, as its own type.
///
/// # Panics
///
/// When the directory or the database cannot be created.
pub async fn sqlite_file_store() -> Option<Backend<SqliteEventStore>> {
    let dir = TempDir::new().expect("create a temporary directory");
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .expect("open a SQLite file");
    Some(Backend {
        store: store.clone(),
        close: Some(Closer::Sqlite(store)),
        _dir: Some(dir),
    })
}

/// A store in a fresh in-memory SQLite database (one connection), as its own type.
///
/// # Panics
///
/// When the database cannot be created.
pub async fn sqlite_memory_store() -> Option<Backend<SqliteEventStore>> {
    let store = SqliteEventStore::open(":memory:")
        .await
        .expect("open an in-memory SQLite database");
    Some(Backend {
        store: store.clone(),
        close: Some(Closer::Sqlite(store)),
        _dir: None,
    })
}

/// A store in the PostgreSQL database of `DATABASE_URL` (migrated), as its own type, or
/// `None` when it is not set. Tests share the database: each uses aggregate types,
/// subscription names and tables of its own.
///
/// # Panics
///
/// When the database cannot be reached or migrated, or as [`database_url`] says.
pub async fn postgres_store() -> Option<Backend<PostgresEventStore>> {
    let url = database_url()?;
    let store = PostgresEventStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL at {url}: {e}"));
    Some(Backend {
        store: store.clone(),
        close: Some(Closer::Postgres(store)),
        _dir: None,
    })
}

/// A PostgreSQL database of one test's own, created on the server of `DATABASE_URL`
/// (other runs share that database; this one is fresh and empty).
///
/// Drop it with [`FreshDatabase::drop_database`] at the end of the test; dropped
/// otherwise (a test that panicked), it only says which database is left behind.
pub struct FreshDatabase {
    name: String,
    admin: sqlx::PgPool,
    url: String,
    dropped: bool,
}

impl FreshDatabase {
    /// Creates `<prefix>_<uuid>`, or returns `None` as [`database_url`] says.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or the database cannot be created, or as
    /// [`database_url`] says.
    pub async fn create(prefix: &str) -> Option<Self> {
        let admin_url = database_url()?;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {admin_url}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        Some(FreshDatabase {
            url: with_database(&admin_url, &name),
            name,
            admin,
            dropped: false,
        })
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database, whoever is still connected to it.
    ///
    /// # Panics
    ///
    /// When it cannot be dropped.
    pub async fn drop_database(mut self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap_or_else(|e| panic!("DROP DATABASE {}: {e}", self.name));
        self.dropped = true;
        self.admin.close().await;
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if !self.dropped {
            eprintln!(
                "the test database {} is left behind; drop it with \
                 `DROP DATABASE {} WITH (FORCE)`",
                self.name, self.name
            );
        }
    }
}

/// `url` with its database replaced by `name` (the query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}
