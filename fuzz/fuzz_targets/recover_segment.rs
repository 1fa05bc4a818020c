//! A crashed segment: whole valid batches (built from the input) followed by
//! arbitrary bytes (what a torn write leaves). Recovery must never panic,
//! must keep every whole batch before the damage, and must leave only whole
//! valid batches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_log::batch::testing;
use strom_log::{FileCache, Log, LogConfig, Recovery};

fuzz_target!(|data: &[u8]| {
    // The first byte says how many valid batches to build; each takes two
    // more bytes (record count, payload length); the rest is the torn tail.
    let Some((&batches, rest)) = data.split_first() else {
        return;
    };
    let mut segment = Vec::new();
    let mut next_offset = 0i64;
    let mut input = rest;
    for _ in 0..(batches % 16) {
        let [count, length, tail @ ..] = input else {
            break;
        };
        input = tail;
        let count = (*count % 8) as i32 + 1;
        let mut batch = testing::batch(count, 1_000, &vec![0xab; *length as usize]);
        strom_log::batch::set_base_offset(&mut batch, next_offset);
        next_offset += count as i64;
        segment.extend_from_slice(&batch);
    }
    let whole = segment.len();
    segment.extend_from_slice(input);

    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("p-0");
    std::fs::create_dir_all(&path).expect("partition directory");
    let log_path = path.join("00000000000000000000.log");
    std::fs::write(&log_path, &segment).expect("segment");
    let log = Log::open(
        &path,
        LogConfig::default(),
        FileCache::new(16),
        Recovery::Unclean,
        0,
    )
    .expect("recovery succeeds on any bytes");
    let check = strom_log::check_segment(&log_path).expect("readable");
    assert!(
        check.problem.is_none(),
        "recovery left damage: {:?}",
        check.problem
    );
    assert!(
        check.valid_bytes as usize >= whole,
        "recovery kept every whole batch before the damage"
    );
    assert!(log.log_end_offset() >= next_offset);
});
