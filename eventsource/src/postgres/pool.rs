//! Connecting to PostgreSQL, and the decoding of timestamps that no value can make panic.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow, PgValueFormat};
use sqlx::{ConnectOptions, Connection, PgPool, Row, ValueRef};

use crate::error::{Error, Result};

/// How long [`connect`] waits for the server, and a call waits for a pooled connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects one connection first, so that a server that is down or refuses the login is
/// reported at once with its real cause (a pool would retry until its acquire timeout
/// and then report only "pool timed out"), then opens the pool.
pub(crate) async fn connect(url: &str) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| Error::invalid("url", format!("not a PostgreSQL URL: {e}")))?;
    let server = format!("{}:{}", options.get_host(), options.get_port());
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| {
            Error::backend(format!(
                "cannot connect to PostgreSQL at {server}: no answer within {CONNECT_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| Error::backend(format!("cannot connect to PostgreSQL at {server}: {e}")))?;
    let _ = Connection::close(probe).await;
    PgPoolOptions::new()
        .test_before_acquire(false)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| Error::backend(format!("cannot connect to PostgreSQL at {server}: {e}")))
}

/// Microseconds between the Unix epoch and PostgreSQL's, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` column, read without sqlx's chrono decoding, which panics on
/// `infinity`, `-infinity` and years beyond chrono's range: those are errors here.
pub(crate) fn timestamp(row: &PgRow, index: usize) -> std::result::Result<DateTime<Utc>, String> {
    let raw = row.try_get_raw(index).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Err("is NULL".into());
    }
    match raw.format() {
        PgValueFormat::Binary => {
            let bytes: [u8; 8] = raw
                .as_bytes()
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or("is not an 8-byte timestamp")?;
            let micros = i64::from_be_bytes(bytes);
            let text = match micros {
                i64::MAX => "infinity".to_owned(),
                i64::MIN => "-infinity".to_owned(),
                _ => format!("{micros} µs after 2000-01-01"),
            };
            micros
                .checked_add(PG_EPOCH_MICROS)
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(|| format!("timestamp {text} is out of range"))
        }
        PgValueFormat::Text => {
            let text = raw.as_str().map_err(|e| e.to_string())?;
            DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
                .map(|at| at.with_timezone(&Utc))
                .map_err(|e| format!("timestamp `{text}` is out of range: {e}"))
        }
    }
}
