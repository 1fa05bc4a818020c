//! Where a follower's log and its leader's part, by leader epochs (KIP-101,
//! KIP-320, KIP-595): the leader's check of a follower's fetch, and the
//! follower's truncation when told it diverged. Both sides look epochs up
//! with "end offset for epoch" on their leader-epoch cache: the start of the
//! first epoch above the one asked for (the log end for the latest epoch),
//! together with the highest epoch at or below it, `(-1, -1)` when none is.

/// The leader's verdict on a follower's fetch position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPosition {
    /// The logs agree up to the fetch offset: read from it.
    Agrees,
    /// The follower's log has records the leader's does not: it must
    /// truncate, told where the leader's `epoch` ends (Kafka's
    /// DivergingEpoch).
    Diverging { epoch: i32, end_offset: i64 },
    /// The fetch offset is outside the leader's log.
    OutOfRange,
}

/// The leader's check of a fetch at `fetch_offset` whose last batch the
/// follower holds is of `last_fetched_epoch` (`None`: it did not say).
/// `end_for_epoch` is the leader's end offset for that epoch.
pub fn check_fetch(
    fetch_offset: i64,
    last_fetched_epoch: Option<i32>,
    end_for_epoch: (i32, i64),
    log_start_offset: i64,
    log_end_offset: i64,
) -> FetchPosition {
    if fetch_offset < log_start_offset {
        return FetchPosition::OutOfRange;
    }
    if let Some(last_fetched) = last_fetched_epoch {
        let (epoch, end_offset) = end_for_epoch;
        if epoch < 0 || end_offset < 0 {
            return FetchPosition::OutOfRange;
        }
        if epoch < last_fetched || end_offset < fetch_offset {
            return FetchPosition::Diverging { epoch, end_offset };
        }
    }
    if fetch_offset > log_end_offset {
        return FetchPosition::OutOfRange;
    }
    FetchPosition::Agrees
}

/// Where a follower truncates after its leader said its log diverged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Truncate the log to this offset (keep what is below it).
    pub offset: i64,
    /// The follower never saw the leader's epoch: fetch again from `offset`
    /// naming this epoch as the last fetched, to find out how much of it
    /// the leader shares.
    pub refetch_with_epoch: Option<i32>,
}

/// The follower's side: the leader's epoch `epoch` ends at `leader_end`;
/// `local_end_for_epoch` is the follower's own end offset for `epoch`.
pub fn truncation(
    epoch: i32,
    leader_end: i64,
    local_end_for_epoch: (i32, i64),
    log_end_offset: i64,
) -> Truncation {
    match local_end_for_epoch {
        (-1, _) | (_, -1) => Truncation {
            offset: leader_end.min(log_end_offset),
            refetch_with_epoch: None,
        },
        (local, local_end) if local == epoch => Truncation {
            offset: leader_end.min(local_end).min(log_end_offset),
            refetch_with_epoch: None,
        },
        (local, local_end) => Truncation {
            offset: local_end.min(log_end_offset),
            refetch_with_epoch: Some(local),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_in_agreement_reads_on() {
        // Leader epochs: 0 from 0, 2 from 10; log 0..20. The follower has
        // 0..15, last batch of epoch 2.
        assert_eq!(
            check_fetch(15, Some(2), (2, 20), 0, 20),
            FetchPosition::Agrees
        );
        assert_eq!(
            check_fetch(20, Some(2), (2, 20), 0, 20),
            FetchPosition::Agrees
        );
        // Without an epoch (an old client, a consumer) only the range counts.
        assert_eq!(check_fetch(5, None, (-1, -1), 0, 20), FetchPosition::Agrees);
        assert_eq!(
            check_fetch(21, None, (-1, -1), 0, 20),
            FetchPosition::OutOfRange
        );
        assert_eq!(
            check_fetch(3, Some(0), (0, 10), 5, 20),
            FetchPosition::OutOfRange
        );
    }

    #[test]
    fn a_deposed_leaders_tail_is_found_and_cut() {
        // The old leader wrote 10..14 in epoch 1, which the new leader (epoch
        // 2 from 10) never got: its epoch 1 ends where epoch 2 starts, 10.
        let verdict = check_fetch(14, Some(1), (1, 10), 0, 20);
        assert_eq!(
            verdict,
            FetchPosition::Diverging {
                epoch: 1,
                end_offset: 10
            }
        );
        // The follower knows epoch 1 up to its log end 14: cut at 10.
        assert_eq!(
            truncation(1, 10, (1, 14), 14),
            Truncation {
                offset: 10,
                refetch_with_epoch: None
            }
        );
    }

    #[test]
    fn an_epoch_the_follower_never_saw_makes_it_ask_again() {
        // The leader's epoch 3 ends at 30, but the follower's highest epoch
        // at or below 3 is 1, ending at its log end 25: cut there and ask
        // with epoch 1.
        assert_eq!(
            truncation(3, 30, (1, 25), 25),
            Truncation {
                offset: 25,
                refetch_with_epoch: Some(1)
            }
        );
        // Nothing known: trust the leader's end, never beyond our own.
        assert_eq!(
            truncation(3, 30, (-1, -1), 12),
            Truncation {
                offset: 12,
                refetch_with_epoch: None
            }
        );
    }

    #[test]
    fn an_epoch_above_all_the_leaders_is_out_of_range() {
        assert_eq!(
            check_fetch(5, Some(9), (-1, -1), 0, 20),
            FetchPosition::OutOfRange
        );
    }
}
