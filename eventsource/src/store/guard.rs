//! Pooled connections that a cancelled call cannot strand, for every SQL backend.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

use crate::error::{Error, Result};

/// A pooled connection that is closed instead of returned to the pool when the call
/// using it is cancelled (a timeout dropped it mid-statement).
///
/// A connection returned with a statement still running, say one waiting for a lock,
/// stays out of use until the statement ends; enough of them starve the pool, and
/// with it every append. Closing it frees the pool's slot at once. (The statement may
/// still run on the database's side until it ends: PostgreSQL's snapshot statements
/// carry a lock timeout of their own, so that it ends soon.)
pub(crate) struct Guarded<DB: Database> {
    conn: Option<PoolConnection<DB>>,
}

impl<DB: Database> Guarded<DB> {
    pub(crate) async fn acquire(pool: &Pool<DB>) -> Result<Self> {
        let conn = pool.acquire().await.map_err(Error::backend)?;
        Ok(Guarded { conn: Some(conn) })
    }

    /// The work is done: the connection goes back to the pool.
    pub(crate) fn release(mut self) {
        drop(self.conn.take());
    }
}

impl<DB: Database> Deref for Guarded<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.conn
            .as_ref()
            .expect("a guarded connection is held until released")
    }
}

impl<DB: Database> DerefMut for Guarded<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.conn
            .as_mut()
            .expect("a guarded connection is held until released")
    }
}

impl<DB: Database> Drop for Guarded<DB> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Not released: the call was cancelled. Dropping the detached connection
            // closes its socket; the pool opens a new one when needed.
            drop(conn.detach());
        }
    }
}
