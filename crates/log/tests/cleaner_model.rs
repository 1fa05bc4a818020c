//! Property tests: log compaction against a model.
//!
//! Random keyed appends (with tombstones), rolls, cleanings, cleanings cut
//! short by a crash before or after their commit point, and restarts. After
//! every step the records in the log must be exactly the model's: in a
//! cleaned range, the latest record of each key unless it is a tombstone
//! older than `delete.retention.ms`, and every record without a key;
//! everything after the range untouched; offsets never change. Some
//! appends are transactional: records of aborted transactions go at the
//! first cleaning, committed ones are ordinary records, markers stay, and
//! no cleaning reaches the first record of an open transaction.

use proptest::prelude::*;
use strom_log::batch::{testing, ControlType};
use strom_log::cleaner::{self, CleanerConfig};
use strom_log::{AbortedTxn, AppendOptions, FileCache, Log, LogConfig, Recovery};

#[derive(Debug, Clone)]
enum Step {
    Append {
        records: Vec<(Option<u8>, bool)>,
        timestamp: i64,
        /// Written by transactional producer 0 or 1.
        producer: Option<i64>,
    },
    /// The producer's open transaction ends (if it has one).
    EndTransaction {
        producer: i64,
        commit: bool,
    },
    Roll,
    Clean {
        delete_retention_ms: i64,
        max_keys: usize,
    },
    /// A crash during a cleaning: before the commit point or just after it.
    CrashedClean {
        committed: bool,
    },
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let record = (
        proptest::option::weighted(0.9, 0u8..16),
        proptest::bool::weighted(0.2),
    );
    prop_oneof![
        6 => (
            proptest::collection::vec(record, 1..6),
            0i64..1_000,
            proptest::option::weighted(0.3, 0i64..2)
        )
            .prop_map(|(records, timestamp, producer)| Step::Append {
                records,
                timestamp,
                producer
            }),
        2 => (0i64..2, proptest::bool::weighted(0.6))
            .prop_map(|(producer, commit)| Step::EndTransaction { producer, commit }),
        2 => Just(Step::Roll),
        2 => (0i64..1_200, prop_oneof![Just(1 << 20), 1usize..6])
            .prop_map(|(delete_retention_ms, max_keys)| Step::Clean {
                delete_retention_ms,
                max_keys
            }),
        1 => any::<bool>().prop_map(|committed| Step::CrashedClean { committed }),
        1 => Just(Step::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelRecord {
    offset: i64,
    key: Option<Vec<u8>>,
    tombstone: bool,
    timestamp: i64,
    /// Part of a transaction: open or committed (false), or aborted (true).
    aborted: bool,
    /// A transaction marker (only ever compared by its key).
    control: bool,
}

const NOW: i64 = 1_000;
const PRODUCER_BASE: i64 = 100;

fn config(delete_retention_ms: i64, max_keys: usize, last_stable_offset: i64) -> CleanerConfig {
    CleanerConfig {
        delete_retention_ms,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        min_cleanable_dirty_ratio: 0.0,
        now_ms: NOW,
        last_stable_offset,
        io_bytes_per_second: 0,
        max_keys,
    }
}

/// What the model looks like after cleaning everything below `end_offset`
/// with a key map of the records below `mapped_end`.
fn model_clean(
    model: &mut Vec<ModelRecord>,
    end_offset: i64,
    mapped_end: i64,
    delete_retention_ms: i64,
) {
    let mut latest = std::collections::HashMap::new();
    for record in model.iter().filter(|record| record.offset < mapped_end) {
        if record.control || record.aborted {
            continue;
        }
        if let Some(key) = &record.key {
            latest.insert(key.clone(), record.offset);
        }
    }
    model.retain(|record| {
        if record.offset >= end_offset || record.control {
            return true;
        }
        if record.aborted {
            return false;
        }
        match &record.key {
            None => true,
            Some(key) => {
                latest[key] == record.offset
                    && !(record.tombstone && record.timestamp < NOW - delete_retention_ms)
            }
        }
    });
}

/// The records in the log, and the (producer id, base offset, record
/// count) of every batch that is not a marker.
fn read_back(log: &Log) -> (Vec<ModelRecord>, Vec<(i64, i64, i32)>) {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut out = Vec::new();
    let mut batches = Vec::new();
    while offset < end {
        let Some(slice) = log.read(offset, 1 << 20, end, true).unwrap() else {
            break;
        };
        let bytes = slice.read().unwrap();
        let mut rest = &bytes[..];
        for size in strom_log::batch::split(&bytes).unwrap() {
            let batch = &rest[..size];
            rest = &rest[size..];
            let (_, records) = strom_log::records::parse_records(batch).unwrap();
            let header = strom_log::batch::BatchHeader::parse(batch).unwrap();
            if !header.is_control() {
                batches.push((header.producer_id, header.base_offset, header.record_count));
            }
            for record in records {
                out.push(ModelRecord {
                    offset: record.offset,
                    key: record.key,
                    tombstone: record.is_tombstone,
                    timestamp: record.timestamp,
                    aborted: false,
                    control: header.is_control(),
                });
            }
            offset = header.next_offset();
        }
    }
    (out, batches)
}

fn run(steps: Vec<Step>) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("compacted-0");
    let log_config = LogConfig {
        segment_bytes: 600,
        segment_ms: i64::MAX,
        index_interval_bytes: 200,
    };
    let files = FileCache::new(8);
    let open = |recovery| Log::open(&dir, log_config, files.clone(), recovery, 0).unwrap();
    let mut log = open(Recovery::Clean);
    let mut model: Vec<ModelRecord> = Vec::new();
    // Open transactions: producer -> offsets of its records.
    let mut open_transactions: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    // Each transactional producer's last batch (its base offset).
    let mut last_batch: std::collections::BTreeMap<i64, i64> = Default::default();
    let options = AppendOptions {
        leader_epoch: 0,
        log_append_time_ms: None,
        now_ms: 0,
    };
    let last_stable_offset = |log: &Log, open: &std::collections::BTreeMap<i64, Vec<i64>>| {
        open.values()
            .map(|offsets| offsets[0])
            .min()
            .unwrap_or(log.log_end_offset())
    };
    for step in steps {
        match step {
            Step::Append {
                records,
                timestamp,
                producer,
            } => {
                let keys: Vec<Option<Vec<u8>>> = records
                    .iter()
                    .map(|(key, _)| key.map(|k| vec![b'k', k]))
                    .collect();
                let values: Vec<testing::KeyValue<'_>> = records
                    .iter()
                    .zip(&keys)
                    .map(|((_, tombstone), key)| {
                        (
                            key.as_deref(),
                            if *tombstone {
                                None
                            } else {
                                Some(b"v".as_slice())
                            },
                        )
                    })
                    .collect();
                let mut batch = testing::keyed_batch(0, timestamp, &values);
                if let Some(producer) = producer {
                    testing::make_transactional(&mut batch, PRODUCER_BASE + producer);
                }
                let info = log.append(&mut batch, options).unwrap();
                if let Some(producer) = producer {
                    last_batch.insert(PRODUCER_BASE + producer, info.base_offset);
                }
                for (index, ((_, tombstone), key)) in records.iter().zip(keys).enumerate() {
                    let offset = info.base_offset + index as i64;
                    model.push(ModelRecord {
                        offset,
                        key,
                        tombstone: *tombstone,
                        timestamp,
                        aborted: false,
                        control: false,
                    });
                    if let Some(producer) = producer {
                        open_transactions.entry(producer).or_default().push(offset);
                    }
                }
            }
            Step::EndTransaction { producer, commit } => {
                let Some(offsets) = open_transactions.remove(&producer) else {
                    continue;
                };
                let control = if commit {
                    ControlType::Commit
                } else {
                    ControlType::Abort
                };
                let producer_id = PRODUCER_BASE + producer;
                let mut marker = strom_log::batch::control_batch(producer_id, 0, control, 0, 500);
                let info = log.append(&mut marker, options).unwrap();
                model.push(ModelRecord {
                    offset: info.base_offset,
                    key: Some(vec![0, 0, 0, commit as u8]),
                    tombstone: false,
                    timestamp: 500,
                    aborted: false,
                    control: true,
                });
                if !commit {
                    for record in model.iter_mut() {
                        record.aborted |= offsets.contains(&record.offset);
                    }
                    log.add_aborted(AbortedTxn {
                        producer_id,
                        first_offset: offsets[0],
                        last_offset: info.base_offset,
                        last_stable_offset: last_stable_offset(&log, &open_transactions),
                    })
                    .unwrap();
                }
            }
            Step::Roll => log.roll(0).unwrap(),
            Step::Clean {
                delete_retention_ms,
                max_keys,
            } => {
                let stable = last_stable_offset(&log, &open_transactions);
                let config = config(delete_retention_ms, max_keys, stable);
                if let Some(mut plan) = log.plan_clean(&config).unwrap() {
                    let planned = plan.segments.len();
                    let outcome = cleaner::clean(&mut plan, &config).unwrap();
                    assert!(
                        plan.end_offset <= stable,
                        "never past the last stable offset"
                    );
                    // The key map stays under max_keys: a segment after the
                    // first is rewritten only if it fit whole, and the plan
                    // shrinks only when the map filled up.
                    let keys_below = |end: i64| {
                        model
                            .iter()
                            .filter(|r| r.offset < end && !r.control && !r.aborted)
                            .filter_map(|r| r.key.clone())
                            .collect::<std::collections::HashSet<_>>()
                            .len()
                    };
                    // (The map is checked after each data batch of a later
                    // segment; one with only markers cannot fill it.)
                    if let Some(second) = plan.segments.get(1) {
                        let data_after_first = model.iter().any(|r| {
                            r.offset >= second.base_offset
                                && r.offset < plan.end_offset
                                && !r.control
                                && !r.aborted
                        });
                        let cleaned = keys_below(plan.end_offset);
                        assert!(
                            !data_after_first || cleaned < max_keys,
                            "{cleaned} keys, max_keys {max_keys}"
                        );
                    }
                    if plan.segments.len() == planned {
                        assert_eq!(outcome.mapped_end, plan.end_offset, "mapped all it cleaned");
                    }
                    if plan.segments.len() < planned {
                        assert!(
                            outcome.mapped_end > plan.end_offset,
                            "mapped into the next segment"
                        );
                        let mapped = keys_below(outcome.mapped_end);
                        assert!(mapped >= max_keys, "shrank with {mapped} keys mapped");
                    }
                    assert!(log.commit_clean(&plan, &outcome, 0).unwrap());
                    model_clean(
                        &mut model,
                        plan.end_offset,
                        outcome.mapped_end,
                        delete_retention_ms,
                    );
                }
            }
            Step::CrashedClean { committed } => {
                let stable = last_stable_offset(&log, &open_transactions);
                let config = config(0, 1 << 20, stable);
                if let Some(mut plan) = log.plan_clean(&config).unwrap() {
                    let outcome = cleaner::clean(&mut plan, &config).unwrap();
                    log.flush().unwrap();
                    if committed {
                        cleaner::write_commit_marker(&plan.dir, &plan).unwrap();
                        model_clean(&mut model, plan.end_offset, outcome.mapped_end, 0);
                    }
                    drop(log);
                    log = open(Recovery::Unclean);
                }
            }
            Step::Reopen => {
                log.flush().unwrap();
                drop(log);
                log = open(Recovery::Clean);
            }
        }
        let (actual, batches) = read_back(&log);
        for (producer, base_offset) in &last_batch {
            assert!(
                batches
                    .iter()
                    .any(|(id, base, _)| (id, base) == (producer, base_offset)),
                "producer {producer}'s last batch (at {base_offset}) stays"
            );
        }
        // An emptied batch is dropped once a later cleaning finds a later
        // batch of its producer: never more than one per producer.
        for producer in last_batch.keys() {
            let emptied = batches
                .iter()
                .filter(|(id, _, count)| id == producer && *count == 0)
                .count();
            assert!(
                emptied <= 1,
                "producer {producer} has {emptied} emptied batches"
            );
        }
        let offsets: Vec<i64> = actual.iter().map(|record| record.offset).collect();
        assert!(
            offsets.windows(2).all(|pair| pair[0] < pair[1]),
            "offsets increase"
        );
        let expected: Vec<ModelRecord> = model
            .iter()
            .map(|record| ModelRecord {
                aborted: false,
                ..record.clone()
            })
            .collect();
        assert_eq!(
            actual, expected,
            "the log holds exactly the model's records"
        );
        assert_eq!(
            log.log_end_offset(),
            model
                .last()
                .map_or(log.log_end_offset(), |r| r.offset + 1)
                .max(log.log_end_offset())
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn cleaning_matches_the_model(steps in proptest::collection::vec(step(), 1..40)) {
        run(steps);
    }
}
