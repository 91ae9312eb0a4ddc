//! [`ExpectedVersion`]: the optimistic-concurrency precondition of an append.

use std::fmt;

/// The stream version a writer expects before its events are appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version. Concurrent writers can still clash on a
    /// version, which is then reported as a conflict.
    Any,
    /// The stream must be exactly at this version; `Exact(0)` means it must not exist.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::Exact(0) => f.write_str("no stream (version 0)"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}
