//! Transaction markers and the aborted-transaction index through the
//! public API: markers are valid batches the log keeps like any other, and
//! the `.txnindex` entries answer `read_committed` lookups across segment
//! rolls, reopenings (clean and after a crash) and truncation.

use strom_log::batch::{self, testing, ControlType};
use strom_log::{AbortedTxn, AppendOptions, FileCache, Log, LogConfig, Recovery};

fn options() -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        log_append_time_ms: None,
        now_ms: 0,
    }
}

fn open(dir: &std::path::Path, recovery: Recovery) -> Log {
    Log::open(dir, LogConfig::default(), FileCache::new(8), recovery, 0).unwrap()
}

fn aborted(first: i64, last: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id: 7,
        first_offset: first,
        last_offset: last,
        last_stable_offset: last + 1,
    }
}

#[test]
fn a_control_batch_is_a_valid_batch_that_says_what_it_marks() {
    for control in [ControlType::Abort, ControlType::Commit] {
        let bytes = batch::control_batch(42, 3, control, 0, 1_000);
        let header = batch::validate(&bytes, true).expect("a valid batch");
        assert!(header.is_control() && header.is_transactional());
        assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
        assert_eq!(header.base_sequence, -1);
        assert_eq!(batch::control_type(&bytes), Some(control));
    }
    assert_eq!(batch::control_type(&testing::batch(1, 0, b"")), None);
}

#[test]
fn aborted_transactions_are_found_by_range_across_rolls_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), Recovery::Clean);
    // Offsets 0..10 in the first segment, with an abort marker at 9.
    for _ in 0..9 {
        log.append(&mut testing::batch(1, 0, b""), options())
            .unwrap();
    }
    let mut marker = batch::control_batch(7, 0, ControlType::Abort, 0, 0);
    let info = log.append(&mut marker, options()).unwrap();
    assert_eq!(info.base_offset, 9);
    log.add_aborted(aborted(2, 9)).unwrap();
    log.add_aborted(aborted(2, 9)).unwrap(); // a replay adds it again: no change
    log.roll(0).unwrap();
    // Offsets 10..20 in the second segment, with an abort marker at 19.
    for _ in 0..9 {
        log.append(&mut testing::batch(1, 0, b""), options())
            .unwrap();
    }
    let mut marker = batch::control_batch(7, 0, ControlType::Abort, 0, 0);
    log.append(&mut marker, options()).unwrap();
    log.add_aborted(aborted(12, 19)).unwrap();

    let check = |log: &Log| {
        assert_eq!(
            log.aborted_transactions(0, 20),
            vec![aborted(2, 9), aborted(12, 19)]
        );
        assert_eq!(log.aborted_transactions(0, 2), vec![], "before the first");
        assert_eq!(log.aborted_transactions(10, 20), vec![aborted(12, 19)]);
        assert_eq!(log.aborted_transactions(9, 12), vec![aborted(2, 9)]);
    };
    check(&log);
    drop(log);
    check(&open(dir.path(), Recovery::Clean));
    let mut log = open(dir.path(), Recovery::Unclean);
    check(&log);

    // Truncating below the second marker drops its entry, on disk as well.
    log.truncate_to(15, 0).unwrap();
    assert_eq!(log.aborted_transactions(0, 20), vec![aborted(2, 9)]);
    drop(log);
    let log = open(dir.path(), Recovery::Unclean);
    assert_eq!(log.aborted_transactions(0, 20), vec![aborted(2, 9)]);
}

#[test]
fn a_marker_visit_reports_its_type_and_starts_at_the_requested_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), Recovery::Clean);
    log.append(&mut testing::batch(2, 0, b""), options())
        .unwrap();
    log.append(
        &mut batch::control_batch(1, 0, ControlType::Commit, 0, 0),
        options(),
    )
    .unwrap();
    log.roll(0).unwrap();
    log.append(
        &mut batch::control_batch(1, 0, ControlType::Abort, 0, 0),
        options(),
    )
    .unwrap();
    let mut seen = Vec::new();
    log.for_each_batch_header(0, |header, marker| seen.push((header.base_offset, marker)))
        .unwrap();
    assert_eq!(
        seen,
        vec![
            (0, None),
            (2, Some(ControlType::Commit)),
            (3, Some(ControlType::Abort))
        ]
    );
    seen.clear();
    log.for_each_batch_header(2, |header, marker| seen.push((header.base_offset, marker)))
        .unwrap();
    assert_eq!(
        seen,
        vec![
            (2, Some(ControlType::Commit)),
            (3, Some(ControlType::Abort))
        ]
    );
}
