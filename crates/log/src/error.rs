//! Typed errors of the storage layer.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::batch::BatchError;

#[derive(Debug, Error)]
pub enum LogError {
    /// The disk failed us: an environment error, reported with the file and
    /// the operation so an operator can act on it.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A batch handed to `append` is not a valid batch.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A read asked for an offset outside [log start offset, log end offset].
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// A write or an fsync of this log failed earlier: the log takes no more
    /// writes and no more fsyncs (after a failed fsync the kernel may have
    /// dropped the pages, so a later one succeeding proves nothing) until
    /// the next start recovers it from disk.
    #[error("{} is offline after a storage error ({reason}); fix the disk and restart the broker to recover it", path.display())]
    Failed { path: PathBuf, reason: String },
    /// A replicated batch starts below the log end: the follower and its
    /// leader disagree on the log, and it must truncate or refetch.
    #[error("a replicated batch starts at offset {got}, below the log end {expected}")]
    NotContiguous { expected: i64, got: i64 },
    /// Data that was valid when written no longer parses: the disk or some
    /// other process damaged the file after recovery.
    #[error("corrupt segment {} at byte {position}", path.display())]
    Corrupt { path: PathBuf, position: u64 },
}

impl LogError {
    pub fn io(operation: &'static str, path: &Path, source: std::io::Error) -> LogError {
        LogError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }
}
