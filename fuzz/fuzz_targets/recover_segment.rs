//! Arbitrary bytes as the active segment of a log: recovery must never
//! panic, must leave only whole valid batches, and must accept appends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_log::{FileCache, Log, LogConfig, Recovery};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("p-0");
    std::fs::create_dir_all(&path).expect("partition directory");
    std::fs::write(path.join("00000000000000000000.log"), data).expect("segment");
    let files = FileCache::new(16);
    let log = Log::open(&path, LogConfig::default(), files, Recovery::Unclean, 0)
        .expect("recovery succeeds on any bytes");
    let check = strom_log::check_segment(&path.join("00000000000000000000.log")).expect("readable");
    assert!(check.problem.is_none(), "recovery left damage: {:?}", check.problem);
    assert!(log.log_end_offset() >= 0);
});
