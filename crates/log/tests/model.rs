//! Property tests: the log against a simple in-memory model.
//!
//! Random sequences of appends, rolls, reopenings (clean and after a crash),
//! truncations and damaged tails are applied to a real [`Log`] on disk and to
//! a `Vec` of batches. After every step the log must agree with the model on
//! its end offset, on what a read by offset returns, on what a lookup by
//! timestamp finds and on where each leader epoch began.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use strom_log::batch::{testing, BatchHeader};
use strom_log::{AppendOptions, FileCache, Log, LogConfig, Recovery};

#[derive(Debug, Clone)]
enum Step {
    Append {
        count: i32,
        timestamp: i64,
        payload: usize,
    },
    Roll,
    /// A new leader: later appends carry a higher epoch; with `assign`, the
    /// leader starts its epoch before appending anything (it may never).
    NewEpoch {
        increase: i32,
        assign: bool,
    },
    Reopen {
        clean: bool,
    },
    /// Cut the log back to (model length * fraction) batches.
    Truncate {
        keep_percent: u8,
    },
    /// A crash tore the last write: garbage or a partial batch at the end.
    TornTail {
        garbage: Vec<u8>,
        partial: bool,
    },
    Read {
        at_percent: u8,
        max_bytes: usize,
    },
    FindTimestamp {
        timestamp: i64,
    },
    /// DeleteRecords up to (end offset * percent).
    DeleteRecords {
        at_percent: u8,
    },
    /// A retention pass with these limits, at time 1000.
    Retention {
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1i32..20, 0i64..1_000, 0usize..700)
            .prop_map(|(count, timestamp, payload)| Step::Append { count, timestamp, payload }),
        1 => Just(Step::Roll),
        1 => (1i32..3, any::<bool>()).prop_map(|(increase, assign)| Step::NewEpoch { increase, assign }),
        1 => any::<bool>().prop_map(|clean| Step::Reopen { clean }),
        1 => (0u8..=100).prop_map(|keep_percent| Step::Truncate { keep_percent }),
        1 => (proptest::collection::vec(any::<u8>(), 1..100), any::<bool>())
            .prop_map(|(garbage, partial)| Step::TornTail { garbage, partial }),
        3 => (0u8..=100, 1usize..5_000).prop_map(|(at_percent, max_bytes)| Step::Read { at_percent, max_bytes }),
        2 => (0i64..1_100).prop_map(|timestamp| Step::FindTimestamp { timestamp }),
        1 => (0u8..=100).prop_map(|at_percent| Step::DeleteRecords { at_percent }),
        1 => (proptest::option::of(0i64..1_000), proptest::option::of(0u64..6_000))
            .prop_map(|(retention_ms, retention_bytes)| Step::Retention { retention_ms, retention_bytes }),
    ]
}

/// One batch as the model remembers it (bytes with the offsets patched).
#[derive(Debug, Clone)]
struct Stored {
    bytes: Vec<u8>,
    header: BatchHeader,
}

struct Harness {
    dir: PathBuf,
    config: LogConfig,
    files: FileCache,
    log: Option<Log>,
    model: Vec<Stored>,
    /// The model's log start offset.
    log_start: i64,
    /// The leader epoch appends carry.
    epoch: i32,
}

impl Harness {
    fn log(&mut self) -> &mut Log {
        self.log.as_mut().expect("log is open")
    }

    fn reopen(&mut self, recovery: Recovery) {
        drop(self.log.take());
        self.log = Some(
            Log::open(&self.dir, self.config, self.files.clone(), recovery, 0).expect("reopen"),
        );
    }

    fn next_offset(&self) -> i64 {
        self.model
            .last()
            .map_or(0, |stored| stored.header.next_offset())
    }

    fn active_segment(&self) -> PathBuf {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        logs.sort();
        logs.pop().expect("a segment")
    }

    fn check_end_offset(&mut self) {
        let expected = self.next_offset();
        assert_eq!(self.log().log_end_offset(), expected, "log end offset");
        let start = self.log_start.min(expected);
        assert_eq!(self.log().log_start_offset(), start, "log start offset");
        self.check_epochs();
    }

    /// Where each epoch began, by the model: the first batch of each epoch,
    /// the first entry moved up to the log start. Epochs that start at the
    /// end (nothing written in them yet) are not derivable from the log and
    /// are left out on both sides.
    fn check_epochs(&mut self) {
        let end = self.next_offset();
        let start = self.log_start.min(end);
        let mut expected: Vec<(i32, i64)> = Vec::new();
        for stored in &self.model {
            let epoch = stored.header.partition_leader_epoch;
            if expected.last().is_none_or(|last| last.0 != epoch) {
                expected.push((epoch, stored.header.base_offset));
            }
        }
        let keep_from = expected.iter().rposition(|e| e.1 <= start).unwrap_or(0);
        expected.drain(..keep_from);
        if let Some(first) = expected.first_mut() {
            first.1 = first.1.max(start);
        }
        expected.retain(|e| e.1 < end);
        let actual: Vec<(i32, i64)> = self
            .log()
            .leader_epochs()
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .filter(|e| e.1 < end)
            .collect();
        assert_eq!(actual, expected, "leader epochs");
    }
}

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

fn run(steps: Vec<Step>) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("topic-0");
    let config = LogConfig {
        segment_bytes: 2_000,
        segment_ms: i64::MAX,
        index_interval_bytes: 300,
    };
    let files = FileCache::new(8);
    let log = Log::open(&dir, config, files.clone(), Recovery::Clean, 0).unwrap();
    let mut harness = Harness {
        dir,
        config,
        files,
        log: Some(log),
        model: Vec::new(),
        log_start: 0,
        epoch: 0,
    };
    for step in steps {
        match step {
            Step::Append {
                count,
                timestamp,
                payload,
            } => {
                let mut bytes = testing::batch(count, timestamp, &vec![7u8; payload]);
                let epoch = harness.epoch;
                let info = harness
                    .log()
                    .append(
                        &mut bytes,
                        AppendOptions {
                            leader_epoch: epoch,
                            log_append_time_ms: None,
                            now_ms: 0,
                        },
                    )
                    .unwrap();
                assert_eq!(info.base_offset, harness.next_offset());
                let header = BatchHeader::parse(&bytes).unwrap();
                assert_eq!(header.partition_leader_epoch, epoch);
                harness.model.push(Stored { bytes, header });
            }
            Step::Roll => harness.log().roll(0).unwrap(),
            Step::NewEpoch { increase, assign } => {
                harness.epoch += increase;
                let epoch = harness.epoch;
                if assign {
                    harness.log().assign_leader_epoch(epoch);
                    assert_eq!(harness.log().leader_epochs().latest_epoch(), Some(epoch));
                    let end = harness.next_offset();
                    assert_eq!(harness.log().end_offset_for_epoch(epoch), (epoch, end));
                }
            }
            Step::Reopen { clean } => {
                if clean {
                    harness.log().flush().unwrap();
                }
                harness.reopen(if clean {
                    Recovery::Clean
                } else {
                    Recovery::Unclean
                });
            }
            Step::Truncate { keep_percent } => {
                let keep = harness.model.len() * keep_percent as usize / 100;
                harness.model.truncate(keep);
                let offset = harness.next_offset();
                harness.log_start = harness.log_start.min(offset);
                harness.log().truncate_to(offset, 0).unwrap();
                // Also when nothing was cut: an epoch assigned without a
                // batch in it is gone, so a follower's last fetched epoch is
                // that of its last batch.
                let left = harness.log().leader_epochs().entries().to_vec();
                assert!(
                    left.iter().all(|e| e.start_offset < offset),
                    "epochs starting at or past the truncation offset {offset} remain: {left:?}"
                );
            }
            Step::TornTail { garbage, partial } => {
                harness.log().flush().unwrap();
                drop(harness.log.take());
                let segment = harness.active_segment();
                match (partial, harness.model.last()) {
                    (true, Some(last)) if std::fs::metadata(&segment).unwrap().len() > 0 => {
                        // The last batch was only partly written before the crash.
                        let length = std::fs::metadata(&segment).unwrap().len();
                        let keep = length - (last.bytes.len() as u64 / 2).max(1);
                        OpenOptions::new()
                            .write(true)
                            .open(&segment)
                            .unwrap()
                            .set_len(keep)
                            .unwrap();
                        harness.model.pop();
                        harness.log_start = harness.log_start.min(harness.next_offset());
                    }
                    _ => append_raw(&segment, &garbage),
                }
                harness.reopen(Recovery::Unclean);
                let check = strom_log::check_segment(&harness.active_segment()).unwrap();
                assert_eq!(check.problem, None, "recovery leaves whole batches only");
            }
            Step::Read {
                at_percent,
                max_bytes,
            } => {
                let end = harness.next_offset();
                let offset = end * at_percent as i64 / 100;
                if offset < harness.log_start {
                    assert!(
                        harness.log().read(offset, max_bytes, end, true).is_err(),
                        "below the log start"
                    );
                    harness.check_end_offset();
                    continue;
                }
                let slice = harness.log().read(offset, max_bytes, end, true).unwrap();
                match slice {
                    None => assert_eq!(offset, end, "only the end offset has nothing to read"),
                    Some(slice) => {
                        let bytes = slice.read().unwrap();
                        let first = harness
                            .model
                            .iter()
                            .position(|stored| stored.header.last_offset() >= offset)
                            .expect("a batch holds the offset");
                        let expected: Vec<u8> = harness.model[first..]
                            .iter()
                            .flat_map(|stored| stored.bytes.iter().copied())
                            .collect();
                        assert!(!bytes.is_empty());
                        assert!(
                            expected.starts_with(&bytes),
                            "read returns the model's batches from {offset}"
                        );
                        assert_eq!(
                            slice.first_batch_offset,
                            harness.model[first].header.base_offset
                        );
                        // Whole batches only, and within max_bytes unless one batch alone is larger.
                        assert!(strom_log::batch::split(&bytes).is_ok());
                        let first_size = harness.model[first].bytes.len();
                        assert!(bytes.len() <= max_bytes.max(first_size));
                    }
                }
            }
            Step::FindTimestamp { timestamp } => {
                let found = harness.log().find_by_timestamp(timestamp).unwrap();
                // Segments wholly below the log start may be gone.
                let first_kept = harness.log().first_segment_base_offset();
                let expected = harness
                    .model
                    .iter()
                    .filter(|stored| stored.header.base_offset >= first_kept)
                    .find(|stored| stored.header.max_timestamp >= timestamp)
                    .map(|stored| stored.bytes.clone());
                assert_eq!(
                    found, expected,
                    "first batch with a timestamp at or after {timestamp}"
                );
            }
            Step::DeleteRecords { at_percent } => {
                let offset = harness.next_offset() * at_percent as i64 / 100;
                harness.log().delete_records_before(offset).unwrap();
                harness.log_start = harness.log_start.max(offset);
            }
            Step::Retention {
                retention_ms,
                retention_bytes,
            } => {
                let end = harness.next_offset();
                let before = harness.log().log_start_offset();
                harness
                    .log()
                    .apply_retention(retention_ms, retention_bytes, end, 1_000)
                    .unwrap();
                let after = harness.log().log_start_offset();
                assert!(after >= before, "retention never moves the start back");
                if after > before {
                    // Whole segments went: the new start is a batch boundary.
                    assert!(
                        after == end
                            || harness
                                .model
                                .iter()
                                .any(|stored| stored.header.base_offset == after),
                        "log start {after} is a batch boundary"
                    );
                    harness.log_start = after;
                }
                if let Some(limit) = retention_bytes {
                    let size = harness.log().size_bytes();
                    let segments = harness.log().segment_count();
                    // Kafka's rule: the oldest segment goes while what stays is
                    // still at least the limit; a segment holds at most 2000 bytes.
                    assert!(
                        size < limit + 2_000 || segments == 1,
                        "size retention leaves {size} bytes"
                    );
                }
            }
        }
        harness.check_end_offset();
    }
    // Finally everything survives a clean restart byte for byte.
    harness.log().flush().unwrap();
    harness.reopen(Recovery::Clean);
    let end = harness.next_offset();
    let mut offset = harness.log().log_start_offset();
    let first = harness
        .model
        .iter()
        .position(|stored| stored.header.last_offset() >= offset);
    let mut all = Vec::new();
    while offset < end {
        let slice = harness
            .log()
            .read(offset, 1 << 20, end, true)
            .unwrap()
            .expect("data up to the end");
        let bytes = slice.read().unwrap();
        let sizes = strom_log::batch::split(&bytes).unwrap();
        let last = BatchHeader::parse(&bytes[bytes.len() - sizes.last().unwrap()..]).unwrap();
        offset = last.next_offset();
        all.extend(bytes);
    }
    let expected: Vec<u8> = harness.model[first.unwrap_or(harness.model.len())..]
        .iter()
        .flat_map(|stored| stored.bytes.iter().copied())
        .collect();
    assert!(
        all == expected,
        "after a clean restart the log holds the model's batches from {}: {} bytes read, {} expected",
        harness.log().log_start_offset(),
        all.len(),
        expected.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(steps in proptest::collection::vec(step(), 1..60)) {
        run(steps);
    }
}

/// A case the model found: a crash restart after a truncation whose
/// leader-epoch checkpoint covered less than the sealed segments.
#[test]
fn epochs_survive_a_crash_after_a_roll_and_a_truncation() {
    let append = || Step::Append {
        count: 1,
        timestamp: 0,
        payload: 0,
    };
    run(vec![
        append(),
        Step::Roll,
        append(),
        Step::NewEpoch {
            increase: 1,
            assign: false,
        },
        append(),
        append(),
        Step::Truncate { keep_percent: 75 },
        Step::Reopen { clean: false },
    ]);
}

/// A leader that assigned its epoch and wrote nothing in it, then follows:
/// truncating to its own log end drops that epoch, as Kafka's truncateTo
/// does (a follower naming it as its last fetched epoch was told it
/// diverged, truncated to where it already ended, and asked again, forever).
#[test]
fn truncating_to_the_log_end_drops_an_epoch_without_batches() {
    let append = || Step::Append {
        count: 2,
        timestamp: 0,
        payload: 0,
    };
    run(vec![
        append(),
        Step::NewEpoch {
            increase: 2,
            assign: true,
        },
        Step::Truncate { keep_percent: 100 },
        append(),
        Step::Reopen { clean: true },
    ]);
}
