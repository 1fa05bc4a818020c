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
        let bytes = batch::control_batch(42, 3, control, 5, 1_000);
        let header = batch::validate(&bytes, true).expect("a valid batch");
        assert!(header.is_control() && header.is_transactional());
        assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
        assert_eq!(header.base_sequence, -1);
        assert_eq!(
            batch::marker(&bytes),
            Some(batch::Marker {
                control,
                coordinator_epoch: 5
            })
        );
    }
    assert_eq!(batch::marker(&testing::batch(1, 0, b"")), None);
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
fn a_marker_visit_reports_its_type_and_coordinator_epoch_and_starts_at_the_requested_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), Recovery::Clean);
    log.append(&mut testing::batch(2, 0, b""), options())
        .unwrap();
    log.append(
        &mut batch::control_batch(1, 0, ControlType::Commit, 7, 0),
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
    log.for_each_batch_header(0, |header, marker| {
        seen.push((header.base_offset, marker.map(|m| m.control)))
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            (0, None),
            (2, Some(ControlType::Commit)),
            (3, Some(ControlType::Abort))
        ]
    );
    let mut epochs = Vec::new();
    log.for_each_batch_header(0, |_, marker| {
        epochs.extend(marker.map(|m| m.coordinator_epoch))
    })
    .unwrap();
    assert_eq!(epochs, vec![7, 0]);
    seen.clear();
    log.for_each_batch_header(2, |header, marker| {
        seen.push((header.base_offset, marker.map(|m| m.control)))
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            (2, Some(ControlType::Commit)),
            (3, Some(ControlType::Abort))
        ]
    );
}

#[test]
fn a_follower_appends_the_leaders_batches_as_they_are() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let mut leader = open(leader_dir.path(), Recovery::Clean);
    for epoch in [0, 0, 3, 5] {
        let options = AppendOptions {
            leader_epoch: epoch,
            ..options()
        };
        leader
            .append(&mut testing::batch(2, 1_000 + epoch as i64, b"v"), options)
            .unwrap();
    }
    let mut follower = open(follower_dir.path(), Recovery::Clean);
    // The whole leader log, fetched as bytes, in two pieces.
    let end = leader.log_end_offset();
    let bytes = leader
        .read(0, usize::MAX, end, true)
        .unwrap()
        .unwrap()
        .read()
        .unwrap();
    let sizes = batch::split(&bytes).unwrap();
    let cut = sizes[0] + sizes[1];
    let first = follower.append_replicated(&bytes[..cut], 0).unwrap();
    assert_eq!(first.len(), 2);
    // Out of order or overlapping: refused, nothing written.
    let refused = follower.append_replicated(&bytes[..cut], 0).unwrap_err();
    assert!(
        matches!(
            refused,
            strom_log::LogError::NotContiguous {
                expected: 4,
                got: 0
            }
        ),
        "{refused}"
    );
    follower.append_replicated(&bytes[cut..], 0).unwrap();
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    let copied = follower
        .read(0, usize::MAX, end, true)
        .unwrap()
        .unwrap()
        .read()
        .unwrap();
    assert_eq!(
        copied, bytes,
        "the follower's log is byte for byte the leader's"
    );
    for epoch in [0, 3, 5, 7] {
        assert_eq!(
            follower.end_offset_for_epoch(epoch),
            leader.end_offset_for_epoch(epoch),
            "epoch {epoch}"
        );
    }
    // A damaged batch is refused before anything of it is stored.
    let mut damaged = bytes[cut..].to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = open(other_dir.path(), Recovery::Clean);
    other.append_replicated(&bytes[..cut], 0).unwrap();
    assert!(other.append_replicated(&damaged, 0).is_err());
    assert_eq!(other.log_end_offset(), 4);
    assert!(!other.is_offline(), "a bad batch is not a storage error");
}
