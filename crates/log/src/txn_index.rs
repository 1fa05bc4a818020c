//! The aborted-transaction index of a segment (`.txnindex`), in Kafka's
//! layout: one 34-byte entry per transaction whose abort marker lies in the
//! segment, in marker order.
//!
//! ```text
//! version i16 (0) | producer id i64 | first offset i64 |
//! last offset i64 (the abort marker) | last stable offset i64
//! ```
//!
//! A `read_committed` fetch asks which aborted transactions overlap the
//! offsets it returns, and gets them from these entries (kept in memory per
//! segment) instead of scanning batches. A sealed segment's index is
//! fsynced with it; the active segment's entries, which a crash can lose,
//! are re-added at startup when the partition replays the markers after its
//! newest producer-state snapshot. (A sealed index deleted by hand is not
//! rebuilt, as in Kafka.)

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// One aborted transaction of one producer in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch in the partition.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
    /// The partition's last stable offset once the abort was written.
    pub last_stable_offset: i64,
}

pub const ENTRY_SIZE: usize = 34;
const VERSION: i16 = 0;

impl AbortedTxn {
    pub fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut bytes = [0u8; ENTRY_SIZE];
        bytes[0..2].copy_from_slice(&VERSION.to_be_bytes());
        bytes[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        bytes[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        bytes[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        bytes[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(buf)
        };
        if bytes.len() < ENTRY_SIZE || i16::from_be_bytes([bytes[0], bytes[1]]) != VERSION {
            return None;
        }
        Some(AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }

    /// Does the transaction hold records in `[from, to)`?
    pub fn overlaps(&self, from: i64, to: i64) -> bool {
        self.last_offset >= from && self.first_offset < to
    }
}

/// Reads the entries of a `.txnindex` file: whole entries only, in order,
/// each with its marker in `[base_offset, next_offset)`. Anything else (a
/// torn tail, an entry a truncation left behind) ends the list.
pub fn load(file: &File, base_offset: i64, next_offset: i64) -> std::io::Result<Vec<AbortedTxn>> {
    let mut bytes = Vec::new();
    (&*file).read_to_end(&mut bytes)?;
    let mut entries = Vec::with_capacity(bytes.len() / ENTRY_SIZE);
    for chunk in bytes.chunks_exact(ENTRY_SIZE) {
        match AbortedTxn::decode(chunk) {
            Some(entry)
                if entry.last_offset >= base_offset
                    && entry.last_offset < next_offset
                    && entries
                        .last()
                        .is_none_or(|last: &AbortedTxn| last.last_offset < entry.last_offset) =>
            {
                entries.push(entry)
            }
            _ => break,
        }
    }
    Ok(entries)
}

/// The whole file's bytes for `entries`.
pub fn encode_all(entries: &[AbortedTxn]) -> Vec<u8> {
    entries.iter().flat_map(|entry| entry.encode()).collect()
}

/// `<stem>.txnindex` beside the segment's `.log`.
pub fn path(dir: &Path, stem: &str) -> std::path::PathBuf {
    dir.join(format!("{stem}.txnindex"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entry(first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: 7,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn entries_round_trip_and_a_torn_or_stale_tail_is_dropped() {
        let mut file = tempfile::tempfile().unwrap();
        let mut bytes = encode_all(&[entry(0, 5), entry(3, 9), entry(10, 40)]);
        bytes.extend_from_slice(&entry(41, 42).encode()[..20]);
        file.write_all(&bytes).unwrap();
        use std::io::Seek;
        file.rewind().unwrap();
        // The segment now ends at offset 20: the marker at 40 was truncated away.
        let loaded = load(&file, 0, 20).unwrap();
        assert_eq!(loaded, vec![entry(0, 5), entry(3, 9)]);
    }

    #[test]
    fn overlap_is_by_first_and_marker_offsets() {
        let aborted = entry(10, 20);
        assert!(aborted.overlaps(0, 11));
        assert!(!aborted.overlaps(0, 10));
        assert!(aborted.overlaps(20, 30));
        assert!(!aborted.overlaps(21, 30));
    }
}
