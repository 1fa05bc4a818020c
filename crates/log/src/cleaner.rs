//! Log compaction: keep the latest record of every key.
//!
//! A cleaning runs in three steps so that producers are blocked only for
//! the short last one:
//!
//! 1. [`Log::plan_clean`] (under the partition's lock) picks the sealed
//!    segments that may be cleaned: all of them up to the first one younger
//!    than `min.compaction.lag.ms` or reaching the last stable offset, never
//!    the active segment; and decides whether the dirty share reaches
//!    `min.cleanable.dirty.ratio` (or `max.compaction.lag.ms` forces a
//!    clean). It also collects the aborted transactions that hold records
//!    in them.
//! 2. [`clean`] (no lock; sealed segments never change) builds a map from
//!    key to the offset of its latest record over those segments (as many
//!    segments as `max_keys` allows; the plan shrinks to them), then
//!    writes each segment again as `<segment>.log.cleaned`, keeping a record
//!    if it has no key, or if it is its key's latest record and not a
//!    tombstone older than `delete.retention.ms`. Kept records are copied
//!    byte for byte; a batch keeps its base offset and last offset, so
//!    offsets never move (gaps stay). Its I/O is throttled.
//!
//!    Transactions, as in Kafka: records of aborted transactions are
//!    dropped and never stand for their key; records of committed ones are
//!    ordinary records. Whether a transaction committed is known only once
//!    its marker is written, which is why nothing at or past the last stable
//!    offset is cleaned. Markers are kept: producer state rebuilt from the
//!    log needs them to close what the transaction's remaining batches open.
//! 3. [`Log::commit_clean`] (under the lock) checks the planned segments are
//!    still there, writes a commit marker listing them (the commit point),
//!    renames every `.cleaned` file over its segment, reopens them and
//!    removes the marker.
//!
//! Crash safety: at startup, a marker means the cleaning committed, so every
//! listed `.cleaned` file still present replaces its segment; no marker
//! means it did not, so `.cleaned` files are deleted. Either way the log is
//! entirely the old segments or entirely the new ones, never a mix (a mix
//! could resurrect a key whose tombstone one segment dropped while another
//! still held an older value).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::batch::BatchHeader;
use crate::error::LogError;
use crate::reader::{Next, SegmentReader};
use crate::records;
use crate::txn_index::AbortedTxn;

pub(crate) const COMMIT_MARKER: &str = "cleaner-commit";
const CLEANED_SUFFIX: &str = ".cleaned";
pub(crate) const CLEANER_CHECKPOINT: &str = "cleaner-offset";

/// The topic configs that govern compaction, and the cleaner's own limits.
#[derive(Debug, Clone, Copy)]
pub struct CleanerConfig {
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub now_ms: i64,
    /// The partition's last stable offset: records at or past it may belong
    /// to transactions not yet decided, so no cleaning reaches it.
    pub last_stable_offset: i64,
    /// Bytes per second the cleaner may read plus write.
    pub io_bytes_per_second: u64,
    /// Most distinct keys one cleaning tracks; segments beyond wait for the next.
    pub max_keys: usize,
}

/// One sealed segment a cleaning rewrites.
#[derive(Debug, Clone)]
pub struct PlannedSegment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    pub size: u64,
}

/// What [`Log::plan_clean`](crate::Log::plan_clean) chose.
#[derive(Debug, Clone)]
pub struct CleanPlan {
    pub dir: PathBuf,
    pub segments: Vec<PlannedSegment>,
    /// Offset after the cleaned range: the next first dirty offset.
    pub end_offset: i64,
    /// Aborted transactions with records in the range.
    pub aborted: Vec<AbortedTxn>,
}

impl CleanPlan {
    /// Keeps only the first `count` segments.
    fn shorten_to(&mut self, count: usize) {
        if count < self.segments.len() {
            self.end_offset = self.segments[count].base_offset;
            self.segments.truncate(count);
        }
    }
}

/// Which transactional batches belong to aborted transactions.
struct AbortedRanges(HashMap<i64, Vec<(i64, i64)>>);

impl AbortedRanges {
    fn new(aborted: &[AbortedTxn]) -> AbortedRanges {
        let mut ranges: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for entry in aborted {
            ranges
                .entry(entry.producer_id)
                .or_default()
                .push((entry.first_offset, entry.last_offset));
        }
        AbortedRanges(ranges)
    }

    /// A producer has one transaction open at a time, so a data batch of an
    /// aborted transaction lies between its first offset and its marker.
    fn contains(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && self.0.get(&header.producer_id).is_some_and(|ranges| {
                ranges.iter().any(|(first, marker)| {
                    *first <= header.base_offset && header.base_offset < *marker
                })
            })
    }
}

/// What a cleaning removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanOutcome {
    pub segments: u64,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Timestamp of the oldest tombstone the cleaning kept (too young to
    /// drop), so that a later pass drops it even if nothing new arrives.
    pub oldest_kept_tombstone_ms: Option<i64>,
    /// Offset after the last record the key map took in: the plan's end,
    /// or further when the map filled up in a segment it then left out
    /// (older records of keys seen there were still dropped).
    pub mapped_end: i64,
}

/// Keeps the cleaner's reads and writes under a byte rate.
struct Throttle {
    started: Instant,
    bytes: u64,
    rate: u64,
}

impl Throttle {
    fn account(&mut self, bytes: u64) {
        self.bytes += bytes;
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// Reads the batches of a sealed segment file one by one.
fn for_each_batch(
    path: &Path,
    throttle: &mut Throttle,
    mut visit: impl FnMut(&[u8], &BatchHeader) -> Result<ControlFlow<()>, LogError>,
) -> Result<ControlFlow<()>, LogError> {
    let mut reader = SegmentReader::open(path)?;
    loop {
        let position = reader.position();
        match reader.next()? {
            Next::End => return Ok(ControlFlow::Continue(())),
            // Sealed segments were validated at recovery: damage now is corruption.
            Next::Torn { .. } => {
                return Err(LogError::Corrupt {
                    path: path.to_path_buf(),
                    position,
                })
            }
            Next::Batch(header) => {
                throttle.account(header.total_size() as u64);
                if visit(reader.batch(), &header)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
    }
}

/// Step 2: builds the key map and writes the `.cleaned` files (fsynced).
/// Runs without the partition's lock. If the keys of all planned segments
/// would not fit in `max_keys`, the plan shrinks to the segments that fit
/// (always at least one), and the rest wait for the next cleaning.
pub fn clean(plan: &mut CleanPlan, config: &CleanerConfig) -> Result<CleanOutcome, LogError> {
    let mut throttle = Throttle {
        started: Instant::now(),
        bytes: 0,
        rate: config.io_bytes_per_second,
    };
    let aborted = AbortedRanges::new(&plan.aborted);
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    // Each producer's last batch, which stays (empty if need be), as in
    // Kafka: producer state rebuilt from the log needs its sequence.
    let mut last_of_producer: HashMap<i64, i64> = HashMap::new();
    let mut mapped_end = plan.end_offset;
    for index in 0..plan.segments.len() {
        // The first segment is mapped whole whatever its size: a segment is
        // rewritten only if all its keys are in the map. A later one that
        // fills the map is not rewritten, but what it mapped is still true
        // (those records are later than anything in the segments before).
        let filled = for_each_batch(
            &plan.segments[index].log_path,
            &mut throttle,
            |batch, header| {
                mapped_end = header.next_offset();
                if header.producer_id >= 0 && !header.is_control() {
                    last_of_producer.insert(header.producer_id, header.base_offset);
                }
                if header.is_control() || aborted.contains(header) {
                    return Ok(ControlFlow::Continue(()));
                }
                if let Ok((_, records)) = records::parse_records(batch) {
                    for record in records {
                        if let Some(key) = record.key {
                            latest.insert(key, record.offset);
                        }
                    }
                }
                Ok(if index > 0 && latest.len() >= config.max_keys {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            },
        )?;
        if filled.is_break() {
            tracing::info!(
                dir = %plan.dir.display(),
                keys = latest.len(),
                segments = index,
                "the cleaner's key map is full; later segments wait for the next cleaning"
            );
            plan.shorten_to(index);
            break;
        }
    }
    let tombstone_horizon = config.now_ms.saturating_sub(config.delete_retention_ms);
    let mut outcome = CleanOutcome {
        mapped_end: mapped_end.max(plan.end_offset),
        ..CleanOutcome::default()
    };
    for segment in &plan.segments {
        let cleaned_path = cleaned_path(&segment.log_path);
        let mut output = std::io::BufWriter::with_capacity(
            1 << 20,
            File::create(&cleaned_path).map_err(|e| LogError::io("create", &cleaned_path, e))?,
        );
        let mut written = 0u64;
        // Reads every batch: this visitor never stops early.
        let _ = for_each_batch(&segment.log_path, &mut throttle, |batch, header| {
            let kept = if aborted.contains(header) {
                outcome.records_removed += header.record_count.max(0) as u64;
                None
            } else {
                clean_batch(batch, header, &latest, tombstone_horizon, &mut outcome)
            };
            let last_of_its_producer = header.producer_id >= 0
                && last_of_producer.get(&header.producer_id) == Some(&header.base_offset);
            let kept = match kept {
                None if last_of_its_producer => Some(records::empty_batch(batch)),
                kept => kept,
            };
            if let Some(bytes) = kept {
                output
                    .write_all(&bytes)
                    .map_err(|e| LogError::io("write", &cleaned_path, e))?;
                written += bytes.len() as u64;
            }
            Ok(ControlFlow::Continue(()))
        })?;
        throttle.account(written);
        let file = output
            .into_inner()
            .map_err(|e| LogError::io("write", &cleaned_path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| LogError::io("fsync", &cleaned_path, e))?;
        outcome.segments += 1;
        outcome.bytes_before += segment.size;
        outcome.bytes_after += written;
    }
    Ok(outcome)
}

/// The batch as it survives cleaning: unchanged, rebuilt with fewer
/// records, or gone (`None`).
fn clean_batch(
    batch: &[u8],
    header: &BatchHeader,
    latest: &HashMap<Vec<u8>, i64>,
    tombstone_horizon: i64,
    outcome: &mut CleanOutcome,
) -> Option<Vec<u8>> {
    // Markers are kept whole: the producer state rebuilt from the log needs
    // them. (Batches of aborted transactions never get here.)
    if header.is_control() {
        return Some(batch.to_vec());
    }
    let Ok((bytes, records)) = records::parse_records(batch) else {
        // A batch we cannot read is kept as it is rather than lost.
        tracing::warn!(
            base_offset = header.base_offset,
            "cleaner keeps a batch it cannot parse"
        );
        return Some(batch.to_vec());
    };
    let keep: Vec<&records::RecordView> = records
        .iter()
        .filter(|record| match &record.key {
            None => true,
            Some(key) => {
                latest.get(key) == Some(&record.offset)
                    && !(record.is_tombstone && record.timestamp < tombstone_horizon)
            }
        })
        .collect();
    for record in keep.iter().filter(|record| record.is_tombstone) {
        let oldest = outcome
            .oldest_kept_tombstone_ms
            .get_or_insert(record.timestamp);
        *oldest = (*oldest).min(record.timestamp);
    }
    outcome.records_removed += (records.len() - keep.len()) as u64;
    if keep.is_empty() {
        // Also a batch an earlier cleaning emptied: kept again only if it
        // is still its producer's last.
        return None;
    }
    if keep.len() == records.len() {
        return Some(batch.to_vec());
    }
    match records::rebuild_batch(batch, &bytes, &keep) {
        Ok(rebuilt) => Some(rebuilt),
        Err(error) => {
            tracing::warn!(%error, "cleaner keeps a batch it cannot rebuild");
            Some(batch.to_vec())
        }
    }
}

pub(crate) fn cleaned_path(log_path: &Path) -> PathBuf {
    let mut name = log_path.as_os_str().to_owned();
    name.push(CLEANED_SUFFIX);
    PathBuf::from(name)
}

/// Writes the commit marker (the commit point): the segments whose
/// `.cleaned` files replace them.
#[doc(hidden)]
pub fn write_commit_marker(dir: &Path, plan: &CleanPlan) -> Result<(), LogError> {
    let path = dir.join(COMMIT_MARKER);
    let text: String = plan
        .segments
        .iter()
        .map(|segment| format!("{}\n", segment.base_offset))
        .collect();
    let mut file = File::create(&path).map_err(|e| LogError::io("create", &path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| LogError::io("write", &path, e))?;
    sync_dir(dir)
}

fn remove_commit_marker(dir: &Path) -> Result<(), LogError> {
    let path = dir.join(COMMIT_MARKER);
    std::fs::remove_file(&path).map_err(|e| LogError::io("delete", &path, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Finishes a committed cleaning (right after its commit, or after a crash)
/// or abandons an uncommitted one. Returns the base
/// offsets of segments whose content was replaced (their indexes must be
/// rebuilt).
/// `names` are the file names in `dir` (the caller has listed it already).
pub(crate) fn recover(dir: &Path, names: &[String]) -> Result<Vec<i64>, LogError> {
    let marker = dir.join(COMMIT_MARKER);
    let committed: Option<Vec<i64>> = if names.iter().any(|name| name == COMMIT_MARKER) {
        let text =
            std::fs::read_to_string(&marker).map_err(|e| LogError::io("read", &marker, e))?;
        Some(
            text.lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect(),
        )
    } else {
        None
    };
    let mut replaced = Vec::new();
    for name in names {
        let Some(log_name) = name.strip_suffix(CLEANED_SUFFIX) else {
            continue;
        };
        let path = dir.join(name);
        let base = crate::segment::parse_log_file_name(log_name);
        match (&committed, base) {
            (Some(bases), Some(base)) if bases.contains(&base) => {
                let target = dir.join(log_name);
                std::fs::rename(&path, &target).map_err(|e| LogError::io("rename", &path, e))?;
                replaced.push(base);
                tracing::info!(segment = %target.display(), "swapped in a cleaned segment");
            }
            _ => {
                std::fs::remove_file(&path).map_err(|e| LogError::io("delete", &path, e))?;
                tracing::info!(file = %path.display(), "discarded the output of an uncommitted cleaning");
            }
        }
    }
    if committed.is_some() {
        sync_dir(dir)?;
        remove_commit_marker(dir)?;
    }
    Ok(replaced)
}
