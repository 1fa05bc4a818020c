//! The leader-epoch cache of a partition: at which offset each leader epoch
//! began (Kafka's `LeaderEpochFileCache`). It answers OffsetForLeaderEpoch,
//! which followers use to find where their log forked from the leader's and
//! consumers use to detect truncation after a leader change.
//!
//! Every batch carries the epoch of the leader that wrote it, so the cache is
//! derived data: the first batch of each epoch gives its entry. An epoch in
//! which nothing was written has an entry only while it is current (a leader
//! assigns its epoch when it starts leading); nobody can hold records of it,
//! so no answer after a restart depends on it. The file is therefore a
//! checkpoint that saves reading headers at startup, not a source of truth:
//!
//! ```text
//! strom-leader-epochs 1
//! covered <offset>          every batch below this (all durable) is in the entries
//! <epoch> <start offset>    one line per epoch, both ascending
//! ...
//! crc <crc32c of the lines above, hex>
//! ```
//!
//! It is written (atomically: temporary file, rename) when a segment rolls,
//! at clean shutdown and after a truncation; [`crate::Log::open`] reads it,
//! drops entries past the log end and reads the headers after `covered`.
//! A missing or damaged file means reading every header once.

use std::path::Path;

/// One leader epoch and the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Entries ascending in both epoch and start offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

pub(crate) const FILE_NAME: &str = "leader-epochs";
const HEADER: &str = "strom-leader-epochs 1";

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|entry| entry.epoch)
    }

    /// Notes that `epoch` starts at `start_offset`, as Kafka's `assign`: the
    /// latest epoch again at a later offset changes nothing; anything else
    /// replaces every entry it conflicts with (an epoch at or above it, or a
    /// start at or after it), as when a follower's log is rewritten by a new
    /// leader. Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        assert!(
            epoch >= 0 && start_offset >= 0,
            "epoch {epoch} at {start_offset}"
        );
        if self
            .entries
            .last()
            .is_some_and(|latest| latest.epoch == epoch && latest.start_offset <= start_offset)
        {
            return false;
        }
        self.entries
            .retain(|entry| entry.epoch < epoch && entry.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `requested` and
    /// the offset where the next epoch after it starts (`log_end_offset` for
    /// the latest epoch); `(-1, -1)` when `requested` is above every epoch
    /// known or is -1. For an epoch below every entry, the requested epoch
    /// with the start of the first entry.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (-1, -1);
        if requested < 0 {
            return UNDEFINED;
        }
        match self.entries.last() {
            None => UNDEFINED,
            Some(latest) if latest.epoch == requested => (requested, log_end_offset),
            Some(_) => {
                let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
                    return UNDEFINED;
                };
                match self.entries.iter().rev().find(|e| e.epoch <= requested) {
                    Some(floor) => (floor.epoch, higher.start_offset),
                    None => (requested, higher.start_offset),
                }
            }
        }
    }

    /// Drops the entries of epochs that start at or after `end_offset` (the
    /// log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Drops the entries wholly below `start_offset` (the log start moved):
    /// those whose successor starts at or below it; the first one left then
    /// starts there, as in Kafka.
    pub fn truncate_from_start(&mut self, start_offset: i64) {
        let keep_from = self
            .entries
            .iter()
            .rposition(|entry| entry.start_offset <= start_offset)
            .unwrap_or(0);
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = first.start_offset.max(start_offset);
        }
    }

    fn check(&self) {
        for pair in self.entries.windows(2) {
            assert!(
                pair[0].epoch < pair[1].epoch && pair[0].start_offset < pair[1].start_offset,
                "leader epochs ascend: {:?}",
                self.entries
            );
        }
    }

    /// The checkpoint text, covering the log up to `covered`.
    pub(crate) fn encode(&self, covered: i64) -> String {
        self.check();
        let mut text = format!("{HEADER}\ncovered {covered}\n");
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        let crc = crc32c::crc32c(text.as_bytes());
        text.push_str(&format!("crc {crc:08x}\n"));
        text
    }

    /// Parses a checkpoint: the entries and the offset they cover, or `None`
    /// if the text is not a whole, intact checkpoint.
    pub(crate) fn decode(text: &str) -> Option<(LeaderEpochCache, i64)> {
        let body_end = text.trim_end_matches('\n').rfind('\n')? + 1;
        let (body, crc_line) = text.split_at(body_end);
        let crc = u32::from_str_radix(crc_line.trim().strip_prefix("crc ")?, 16).ok()?;
        if crc32c::crc32c(body.as_bytes()) != crc {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let covered = lines.next()?.strip_prefix("covered ")?.parse().ok()?;
        let mut cache = LeaderEpochCache::default();
        for line in lines {
            let (epoch, start) = line.split_once(' ')?;
            let entry = EpochEntry {
                epoch: epoch.parse().ok()?,
                start_offset: start.parse().ok()?,
            };
            if cache.entries.last().is_some_and(|last| {
                last.epoch >= entry.epoch || last.start_offset >= entry.start_offset
            }) {
                return None;
            }
            cache.entries.push(entry);
        }
        Some((cache, covered))
    }

    /// Reads the checkpoint in `dir`, if there is an intact one.
    pub(crate) fn load(dir: &Path) -> Option<(LeaderEpochCache, i64)> {
        let text = std::fs::read_to_string(dir.join(FILE_NAME)).ok()?;
        let loaded = LeaderEpochCache::decode(&text);
        if loaded.is_none() {
            tracing::warn!(dir = %dir.display(), "leader epoch checkpoint is damaged; rebuilding it from the batches");
        }
        loaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            assert!(cache.assign(epoch, start));
        }
        cache
    }

    #[test]
    fn end_offsets_answer_as_kafkas_cache_does() {
        let cache = cache(&[(0, 0), (2, 100), (5, 250)]);
        assert_eq!(
            cache.end_offset_for(5, 400),
            (5, 400),
            "latest: the log end"
        );
        assert_eq!(cache.end_offset_for(2, 400), (2, 250));
        assert_eq!(
            cache.end_offset_for(3, 400),
            (2, 250),
            "a gap: the epoch before it"
        );
        assert_eq!(cache.end_offset_for(0, 400), (0, 100));
        assert_eq!(
            cache.end_offset_for(6, 400),
            (-1, -1),
            "newer than any known"
        );
        assert_eq!(cache.end_offset_for(-1, 400), (-1, -1));
        let later = self::cache(&[(3, 50)]);
        assert_eq!(later.end_offset_for(1, 90), (1, 50), "older than any known");
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 0), (-1, -1));
    }

    #[test]
    fn assigning_keeps_epochs_and_offsets_ascending() {
        let mut cache = cache(&[(0, 0), (2, 100)]);
        assert!(
            !cache.assign(2, 150),
            "the same epoch later changes nothing"
        );
        // A follower rewritten by a new leader: epoch 3 from offset 80
        // replaces epoch 2 at 100.
        assert!(cache.assign(3, 80));
        assert_eq!(
            cache.entries(),
            &[
                EpochEntry {
                    epoch: 0,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 80
                }
            ]
        );
        cache.check();
    }

    #[test]
    fn truncation_drops_entries_at_either_end() {
        let mut cache = cache(&[(0, 0), (2, 100), (5, 250)]);
        assert!(cache.truncate_from_end(250));
        assert_eq!(cache.latest_epoch(), Some(2));
        assert!(!cache.truncate_from_end(300));
        cache.truncate_from_start(120);
        assert_eq!(
            cache.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 120
            }]
        );
    }

    #[test]
    fn the_checkpoint_round_trips_and_refuses_damage() {
        let cache = cache(&[(0, 0), (4, 17)]);
        let text = cache.encode(30);
        assert_eq!(LeaderEpochCache::decode(&text), Some((cache.clone(), 30)));
        let damaged = text.replace("4 17", "4 18");
        assert_eq!(LeaderEpochCache::decode(&damaged), None);
        assert_eq!(LeaderEpochCache::decode(&text[..text.len() - 4]), None);
        assert_eq!(LeaderEpochCache::decode(""), None);
        let empty = LeaderEpochCache::default().encode(0);
        assert_eq!(
            LeaderEpochCache::decode(&empty),
            Some((LeaderEpochCache::default(), 0))
        );
    }
}
