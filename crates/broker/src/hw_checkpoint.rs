//! The high-watermark checkpoint: one file per data directory,
//! `replication-offset-checkpoint`, listing the high watermark of every
//! replicated partition this node holds (Kafka's file of the same name and
//! format: a version line `0`, a count, then `topic partition offset`).
//!
//! A replicated partition cannot trust its own log end after a restart: the
//! records at its end may never have been committed. Without a checkpoint it
//! opens with its high watermark at the log start, so a node that leads
//! again at once (a whole cluster restarted) shows consumers nothing until
//! its followers fetch. With it, the partition opens at the checkpointed
//! high watermark, clamped to what its log holds.
//!
//! A high watermark only grows while committed, so an old checkpoint is
//! safe, only behind; a missing or unreadable one is the log start. The
//! file is replaced atomically (temporary file, fsync, rename, directory
//! fsync) every `replica.high.watermark.checkpoint.interval.ms` when
//! something changed, and at clean shutdown.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const FILE_NAME: &str = "replication-offset-checkpoint";
const VERSION: &str = "0";

/// High watermarks by topic name and partition index.
pub type HighWatermarks = HashMap<(String, i32), i64>;

/// The file's text for `entries`, sorted so that equal contents compare equal.
pub fn encode(entries: &HighWatermarks) -> String {
    let mut lines: Vec<String> = entries
        .iter()
        .map(|((topic, index), offset)| format!("{topic} {index} {offset}"))
        .collect();
    lines.sort();
    let mut text = format!("{VERSION}\n{}\n", lines.len());
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Parses the file's text; a damaged file is an error, and its caller
/// starts as if there were none.
pub fn decode(text: &str) -> Result<HighWatermarks, String> {
    let mut lines = text.lines();
    if lines.next() != Some(VERSION) {
        return Err("unknown version".to_string());
    }
    let count: usize = lines
        .next()
        .and_then(|line| line.parse().ok())
        .ok_or("no entry count")?;
    let mut entries = HighWatermarks::with_capacity(count);
    for line in lines {
        let mut fields = line.split(' ');
        let (Some(topic), Some(index), Some(offset), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("malformed line {line:?}"));
        };
        let index = index
            .parse()
            .map_err(|_| format!("bad partition in {line:?}"))?;
        let offset = offset
            .parse()
            .map_err(|_| format!("bad offset in {line:?}"))?;
        entries.insert((topic.to_string(), index), offset);
    }
    if entries.len() != count {
        return Err(format!(
            "{} entries where {count} were announced",
            entries.len()
        ));
    }
    Ok(entries)
}

/// Reads `data_dir`'s checkpoint: empty when there is none, and, with a
/// warning, when it cannot be read.
pub fn read(data_dir: &Path) -> HighWatermarks {
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(&text).unwrap_or_else(|problem| {
            tracing::warn!(path = %path.display(), %problem, "ignoring a damaged high-watermark checkpoint; replicated partitions learn their high watermarks from their leaders");
            HighWatermarks::new()
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => HighWatermarks::new(),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the high-watermark checkpoint; replicated partitions learn their high watermarks from their leaders");
            HighWatermarks::new()
        }
    }
}

/// Replaces `data_dir`'s checkpoint with `text` (from [`encode`]), durably.
pub fn write(data_dir: &Path, text: &str) -> std::io::Result<()> {
    let path = data_dir.join(FILE_NAME);
    let temporary = data_dir.join(format!("{FILE_NAME}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    File::open(data_dir)?.sync_all()
}

/// A data directory's checkpoint while the broker runs: the entries read at
/// start, each taken by its partition when that opens, and the text last
/// written.
pub struct Checkpoint {
    data_dir: PathBuf,
    /// Read at start and not yet taken. Written out again with the open
    /// partitions' until the startup opened every partition, so that a
    /// write before then loses nothing.
    unopened: Mutex<HighWatermarks>,
    written: Mutex<String>,
}

impl Checkpoint {
    pub fn open(data_dir: &Path) -> Checkpoint {
        let entries = read(data_dir);
        Checkpoint {
            data_dir: data_dir.to_path_buf(),
            written: Mutex::new(encode(&entries)),
            unopened: Mutex::new(entries),
        }
    }

    /// The checkpointed high watermark of a partition that opens.
    pub fn take(&self, topic: &str, index: i32) -> Option<i64> {
        lock(&self.unopened).remove(&(topic.to_string(), index))
    }

    /// The startup opened every partition of this node: entries nobody took
    /// belong to partitions it no longer holds.
    pub fn forget_unopened(&self) {
        lock(&self.unopened).clear();
    }

    /// Writes the high watermarks of `partitions` (topic, index, high
    /// watermark), unless the file says that already.
    pub fn write(
        &self,
        partitions: impl IntoIterator<Item = (String, i32, i64)>,
    ) -> std::io::Result<()> {
        // One writer at a time, each reading the high watermarks only once
        // it is its turn: a slow periodic write cannot put older values over
        // the shutdown's.
        let mut written = lock(&self.written);
        let mut entries = lock(&self.unopened).clone();
        entries.extend(
            partitions
                .into_iter()
                .map(|(topic, index, hw)| ((topic, index), hw)),
        );
        let text = encode(&entries);
        if *written != text {
            write(&self.data_dir, &text)?;
            *written = text;
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a replicated partition's high watermark starts when it opens: the
/// checkpointed one if any, within its log, else its log start.
pub fn opening_high_watermark(checkpointed: Option<i64>, log_start: i64, log_end: i64) -> i64 {
    checkpointed.map_or(log_start, |hw| hw.clamp(log_start, log_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_the_round_trip_and_encode_in_one_order() {
        let mut entries = HighWatermarks::new();
        entries.insert(("orders".to_string(), 2), 1_000);
        entries.insert(("__consumer_offsets".to_string(), 17), 0);
        entries.insert(("orders".to_string(), 0), 7);
        let text = encode(&entries);
        assert_eq!(
            text,
            "0\n3\n__consumer_offsets 17 0\norders 0 7\norders 2 1000\n"
        );
        assert_eq!(decode(&text).unwrap(), entries);
    }

    #[test]
    fn a_damaged_file_is_refused_not_half_read() {
        for text in [
            "",
            "1\n0\n",
            "0\n2\norders 0 7\n",
            "0\n1\norders x 7\n",
            "0\n1\norders 0 7 9\n",
            "0\n1\norders 0\n",
        ] {
            assert!(decode(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn the_opening_high_watermark_stays_within_the_log() {
        assert_eq!(opening_high_watermark(None, 5, 50), 5);
        assert_eq!(opening_high_watermark(Some(30), 5, 50), 30);
        // A log cut back (a lost tail, a truncation) or retention ahead of it.
        assert_eq!(opening_high_watermark(Some(80), 5, 50), 50);
        assert_eq!(opening_high_watermark(Some(2), 5, 50), 5);
    }

    #[test]
    fn a_written_checkpoint_is_read_back_and_a_missing_one_is_empty() {
        let dir = std::env::temp_dir().join(format!("strom-hw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(read(&dir).is_empty());
        let mut entries = HighWatermarks::new();
        entries.insert(("t".to_string(), 0), 42);
        write(&dir, &encode(&entries)).unwrap();
        assert_eq!(read(&dir), entries);
        std::fs::write(dir.join(FILE_NAME), "garbage").unwrap();
        assert!(read(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Entries read at start and not yet taken by an opening partition are
    /// written out again, until the startup has opened everything.
    #[test]
    fn a_write_before_every_partition_opened_keeps_their_entries() {
        let dir = std::env::temp_dir().join(format!("strom-hw-keep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut entries = HighWatermarks::new();
        entries.insert(("a".to_string(), 0), 10);
        entries.insert(("b".to_string(), 0), 20);
        write(&dir, &encode(&entries)).unwrap();
        let checkpoint = Checkpoint::open(&dir);
        assert_eq!(checkpoint.take("a", 0), Some(10));
        assert_eq!(checkpoint.take("a", 0), None, "taken once");
        checkpoint.write([("a".to_string(), 0, 15)]).unwrap();
        let back = read(&dir);
        assert_eq!(
            (back[&("a".to_string(), 0)], back[&("b".to_string(), 0)]),
            (15, 20)
        );
        checkpoint.forget_unopened();
        checkpoint.write([("a".to_string(), 0, 15)]).unwrap();
        assert_eq!(read(&dir).len(), 1, "b is no longer held here");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
