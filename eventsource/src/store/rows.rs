//! Reading the columns of the SQL stores' rows, once for every backend: a value of the
//! wrong type or out of range is an error message naming its column, never a panic.

use std::fmt::Display;

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::event::StreamEvent;

/// The column at `index`, type-checked.
pub(crate) fn column<'r, R, T>(row: &'r R, index: usize, name: &str) -> Result<T, String>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(index)
        .map_err(|e| format!("column {name}: {e}"))
}

/// The column at `index`, whose type the store's own SQL fixes: read without the
/// per-row type check (a replay reads millions of them).
fn unchecked<'r, R, T>(row: &'r R, index: usize, name: &str) -> Result<T, String>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database>,
{
    row.try_get_unchecked(index)
        .map_err(|e| format!("column {name}: {e}"))
}

/// A signed column value that must fit `U` (versions, positions).
pub(crate) fn unsigned<S, U>(name: &str, value: S) -> Result<U, String>
where
    S: TryInto<U> + Display + Copy,
{
    value
        .try_into()
        .map_err(|_| format!("{name} {value} is out of range"))
}

/// The first four columns of a load's row: version, event type, event version (an
/// integer column of type `V`), payload.
pub(crate) fn stream_event<'r, R, V>(row: &'r R) -> Result<StreamEvent<'r>, String>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database>,
    V: Decode<'r, R::Database> + TryInto<u32> + Display + Copy,
    &'r str: Decode<'r, R::Database>,
{
    Ok(StreamEvent {
        version: unsigned("version", unchecked::<R, i64>(row, 0, "version")?)?,
        event_type: unchecked(row, 1, "event_type")?,
        event_version: unsigned("event_version", unchecked::<R, V>(row, 2, "event_version")?)?,
        payload: unchecked(row, 3, "payload")?,
    })
}

/// A bound of a read (`from_version`, `from_position`, `limit`): values above what a
/// column holds mean "past everything".
pub(crate) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
