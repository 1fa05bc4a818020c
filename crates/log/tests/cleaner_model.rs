//! Property tests: log compaction against a model.
//!
//! Random keyed appends (with tombstones), rolls, cleanings, cleanings cut
//! short by a crash before or after their commit point, and restarts. After
//! every step the records in the log must be exactly the model's: in a
//! cleaned range, the latest record of each key unless it is a tombstone
//! older than `delete.retention.ms`, and every record without a key;
//! everything after the range untouched; offsets never change.

use proptest::prelude::*;
use strom_log::batch::testing;
use strom_log::cleaner::{self, CleanerConfig};
use strom_log::{AppendOptions, FileCache, Log, LogConfig, Recovery};

#[derive(Debug, Clone)]
enum Step {
    Append {
        records: Vec<(Option<u8>, bool)>,
        timestamp: i64,
    },
    Roll,
    Clean {
        delete_retention_ms: i64,
    },
    /// A crash during a cleaning: before the commit point or just after it.
    CrashedClean {
        committed: bool,
    },
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let record = (
        proptest::option::weighted(0.9, 0u8..6),
        proptest::bool::weighted(0.2),
    );
    prop_oneof![
        6 => (proptest::collection::vec(record, 1..6), 0i64..1_000)
            .prop_map(|(records, timestamp)| Step::Append { records, timestamp }),
        2 => Just(Step::Roll),
        2 => (0i64..1_200).prop_map(|delete_retention_ms| Step::Clean { delete_retention_ms }),
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
}

const NOW: i64 = 1_000;

fn config(delete_retention_ms: i64) -> CleanerConfig {
    CleanerConfig {
        delete_retention_ms,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        min_cleanable_dirty_ratio: 0.0,
        now_ms: NOW,
        io_bytes_per_second: 0,
        max_keys: 1 << 20,
    }
}

/// What the model looks like after cleaning everything below `end_offset`.
fn model_clean(model: &mut Vec<ModelRecord>, end_offset: i64, delete_retention_ms: i64) {
    let mut latest = std::collections::HashMap::new();
    for record in model.iter().filter(|record| record.offset < end_offset) {
        if let Some(key) = &record.key {
            latest.insert(key.clone(), record.offset);
        }
    }
    model.retain(|record| {
        if record.offset >= end_offset {
            return true;
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

fn read_back(log: &Log) -> Vec<ModelRecord> {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut out = Vec::new();
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
            for record in records {
                out.push(ModelRecord {
                    offset: record.offset,
                    key: record.key,
                    tombstone: record.is_tombstone,
                    timestamp: record.timestamp,
                });
            }
            let header = strom_log::batch::BatchHeader::parse(batch).unwrap();
            offset = header.next_offset();
        }
    }
    out
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
    for step in steps {
        match step {
            Step::Append { records, timestamp } => {
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
                let options = AppendOptions {
                    leader_epoch: 0,
                    log_append_time_ms: None,
                    now_ms: 0,
                };
                let info = log.append(&mut batch, options).unwrap();
                for (index, ((_, tombstone), key)) in records.iter().zip(keys).enumerate() {
                    model.push(ModelRecord {
                        offset: info.base_offset + index as i64,
                        key,
                        tombstone: *tombstone,
                        timestamp,
                    });
                }
            }
            Step::Roll => log.roll(0).unwrap(),
            Step::Clean {
                delete_retention_ms,
            } => {
                let config = config(delete_retention_ms);
                if let Some(plan) = log.plan_clean(&config).unwrap() {
                    let outcome = cleaner::clean(&plan, &config).unwrap();
                    assert!(log.commit_clean(&plan, &outcome, 0).unwrap());
                    model_clean(&mut model, plan.end_offset, delete_retention_ms);
                }
            }
            Step::CrashedClean { committed } => {
                let config = config(0);
                if let Some(plan) = log.plan_clean(&config).unwrap() {
                    cleaner::clean(&plan, &config).unwrap();
                    log.flush().unwrap();
                    if committed {
                        cleaner::write_commit_marker(&plan.dir, &plan).unwrap();
                        model_clean(&mut model, plan.end_offset, 0);
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
        let actual = read_back(&log);
        let offsets: Vec<i64> = actual.iter().map(|record| record.offset).collect();
        assert!(
            offsets.windows(2).all(|pair| pair[0] < pair[1]),
            "offsets increase"
        );
        assert_eq!(actual, model, "the log holds exactly the model's records");
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
