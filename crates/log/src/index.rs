//! Sparse indexes of one segment, kept in memory and mirrored to files.
//!
//! * The offset index maps a relative offset to the byte position of the
//!   batch that starts there: 8 bytes an entry (u32 relative offset, u32
//!   position, big-endian), Kafka's `.index` layout.
//! * The time index maps the largest timestamp seen so far to the relative
//!   offset where it was reached: 12 bytes an entry (i64 timestamp, u32
//!   relative offset), Kafka's `.timeindex` layout.
//!
//! An entry is added once `index.interval.bytes` have been appended since the
//! previous one, so a lookup reads at most that many bytes of batch headers.
//! Index files are never the source of truth: recovery rebuilds them from the
//! log whenever they are missing, torn or inconsistent.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub const OFFSET_ENTRY_SIZE: usize = 8;
pub const TIME_ENTRY_SIZE: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// The last entry whose key is at most `target`, by binary search over a
/// sorted slice.
fn floor<T: Copy, K: Ord>(entries: &[T], target: K, key: impl Fn(&T) -> K) -> Option<T> {
    let count = entries.partition_point(|entry| key(entry) <= target);
    count.checked_sub(1).map(|index| entries[index])
}

/// Byte position to start scanning from for `relative_offset`.
pub fn lookup_position(entries: &[OffsetEntry], relative_offset: u32) -> u32 {
    floor(entries, relative_offset, |entry| entry.relative_offset)
        .map(|entry| entry.position)
        .unwrap_or(0)
}

/// Relative offset to start scanning from when looking for the first record
/// with a timestamp at or after `timestamp`: the offset where a maximum
/// strictly below the target was reached (everything up to it is older).
pub fn lookup_time(entries: &[TimeEntry], timestamp: i64) -> u32 {
    floor(entries, timestamp.saturating_sub(1), |entry| {
        entry.timestamp
    })
    .map(|entry| entry.relative_offset)
    .unwrap_or(0)
}

pub fn encode_offset_entry(entry: OffsetEntry) -> [u8; OFFSET_ENTRY_SIZE] {
    let mut bytes = [0u8; OFFSET_ENTRY_SIZE];
    bytes[..4].copy_from_slice(&entry.relative_offset.to_be_bytes());
    bytes[4..].copy_from_slice(&entry.position.to_be_bytes());
    bytes
}

pub fn encode_time_entry(entry: TimeEntry) -> [u8; TIME_ENTRY_SIZE] {
    let mut bytes = [0u8; TIME_ENTRY_SIZE];
    bytes[..8].copy_from_slice(&entry.timestamp.to_be_bytes());
    bytes[8..].copy_from_slice(&entry.relative_offset.to_be_bytes());
    bytes
}

fn read_all(file: &File) -> io::Result<Vec<u8>> {
    let length = file.metadata()?.len() as usize;
    let mut bytes = vec![0u8; length];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// Loads an offset index file. Returns `None` if the file is not a sequence
/// of strictly increasing entries that all point inside `log_size` bytes; the
/// caller then rebuilds the index from the log.
pub fn load_offset_index(file: &File, log_size: u64) -> io::Result<Option<Vec<OffsetEntry>>> {
    let bytes = read_all(file)?;
    if bytes.len() % OFFSET_ENTRY_SIZE != 0 {
        return Ok(None);
    }
    let mut entries = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_SIZE);
    for chunk in bytes.chunks_exact(OFFSET_ENTRY_SIZE) {
        let entry = OffsetEntry {
            relative_offset: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            position: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
        };
        let increasing = entries.last().is_none_or(|last: &OffsetEntry| {
            entry.relative_offset > last.relative_offset && entry.position > last.position
        });
        if !increasing || entry.position as u64 >= log_size {
            return Ok(None);
        }
        entries.push(entry);
    }
    Ok(Some(entries))
}

/// Loads a time index file; `None` when torn or not monotonic.
pub fn load_time_index(file: &File) -> io::Result<Option<Vec<TimeEntry>>> {
    let bytes = read_all(file)?;
    if bytes.len() % TIME_ENTRY_SIZE != 0 {
        return Ok(None);
    }
    let mut entries = Vec::with_capacity(bytes.len() / TIME_ENTRY_SIZE);
    for chunk in bytes.chunks_exact(TIME_ENTRY_SIZE) {
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&chunk[..8]);
        let entry = TimeEntry {
            timestamp: i64::from_be_bytes(timestamp),
            relative_offset: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
        };
        let increasing = entries.last().is_none_or(|last: &TimeEntry| {
            entry.timestamp > last.timestamp && entry.relative_offset >= last.relative_offset
        });
        if !increasing {
            return Ok(None);
        }
        entries.push(entry);
    }
    Ok(Some(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_lookup_takes_the_floor_entry() {
        let entries = [
            OffsetEntry {
                relative_offset: 10,
                position: 100,
            },
            OffsetEntry {
                relative_offset: 20,
                position: 200,
            },
        ];
        assert_eq!(lookup_position(&entries, 5), 0);
        assert_eq!(lookup_position(&entries, 10), 100);
        assert_eq!(lookup_position(&entries, 19), 100);
        assert_eq!(lookup_position(&entries, 25), 200);
    }

    #[test]
    fn time_lookup_starts_after_everything_older() {
        let entries = [
            TimeEntry {
                timestamp: 100,
                relative_offset: 4,
            },
            TimeEntry {
                timestamp: 200,
                relative_offset: 9,
            },
        ];
        assert_eq!(lookup_time(&entries, 50), 0);
        assert_eq!(lookup_time(&entries, 100), 0);
        assert_eq!(lookup_time(&entries, 101), 4);
        assert_eq!(lookup_time(&entries, 250), 9);
    }
}
