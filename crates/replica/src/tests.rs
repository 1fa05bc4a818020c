//! The leader's replication as stories: three replicas, broker 1 leading.

use super::*;

const LAG_MS: i64 = 1_000;

fn state(isr: &[i32], partition_epoch: i32) -> PartitionState {
    PartitionState {
        leader_epoch: 4,
        partition_epoch,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
    }
}

fn leader(isr: &[i32], min_insync_replicas: usize) -> Leader {
    let config = ReplicaConfig {
        replica_lag_time_max_ms: LAG_MS,
        min_insync_replicas,
    };
    Leader::new(1, &state(isr, 7), 100, 100, 90, config, 0)
}

fn members(proposal: &IsrProposal) -> Vec<i32> {
    proposal.isr.iter().map(|(member, _)| *member).collect()
}

#[test]
fn the_high_watermark_is_the_lowest_durable_offset_over_the_isr() {
    let mut leader = leader(&[1, 2, 3], 2);
    // Appended to 120, fsynced to 110 on the leader.
    leader.on_local_log(120, 110);
    assert_eq!(
        leader.high_watermark(),
        90,
        "followers have not fetched yet"
    );
    leader.on_fetch(2, 120, 11, 10);
    leader.on_fetch(3, 95, 12, 10);
    assert_eq!(leader.high_watermark(), 95, "follower 3 has 95 on disk");
    leader.on_fetch(3, 120, 12, 20);
    assert_eq!(
        leader.high_watermark(),
        110,
        "the leader's own durable end bounds it"
    );
    leader.on_local_log(120, 120);
    assert_eq!(leader.high_watermark(), 120);
    // It never goes back, whatever a follower sends.
    leader.on_fetch(2, 100, 11, 30);
    assert_eq!(leader.high_watermark(), 120);
    // A fetch offset past the leader's log counts only up to its end.
    leader.on_fetch(2, 500, 11, 40);
    assert_eq!(leader.follower(2).unwrap().durable_offset, 120);
}

#[test]
fn acks_all_waits_for_the_high_watermark_and_min_insync_replicas() {
    let mut leader = leader(&[1, 2], 2);
    assert!(leader.admits_acks_all());
    leader.on_local_log(130, 130);
    assert_eq!(leader.acks_all(130), AcksAll::Waiting);
    leader.on_fetch(2, 130, 11, 10);
    assert_eq!(leader.acks_all(130), AcksAll::Acknowledged);
    // The ISR shrinks to the leader alone: new writes are refused before
    // they are appended, and one appended before is indeterminate.
    leader.on_local_log(140, 140);
    leader.on_committed(&state(&[1], 8));
    assert!(!leader.admits_acks_all());
    assert_eq!(leader.high_watermark(), 140, "the leader alone is the ISR");
    assert_eq!(leader.acks_all(140), AcksAll::NotEnoughReplicasAfterAppend);
}

#[test]
fn a_lagging_follower_is_proposed_out_and_counted_until_the_change_commits() {
    let mut leader = leader(&[1, 2, 3], 1);
    leader.on_local_log(150, 150);
    leader.on_fetch(2, 150, 11, 100);
    leader.on_fetch(3, 120, 12, 100);
    assert_eq!(leader.high_watermark(), 120);
    assert_eq!(leader.tick(LAG_MS / 2), None, "within the lag time");
    // Follower 2 keeps up; 3 stays behind past the lag time.
    leader.on_fetch(2, 150, 11, LAG_MS);
    let proposal = leader.tick(LAG_MS + 1).expect("a shrink");
    assert_eq!(members(&proposal), vec![1, 2]);
    assert_eq!(
        (proposal.leader_epoch, proposal.partition_epoch),
        (4, 7),
        "based on the committed epochs"
    );
    assert_eq!(
        proposal.isr[1],
        (2, 11),
        "members carry their broker epochs"
    );
    assert_eq!(leader.tick(LAG_MS + 2), None, "one change at a time");
    assert_eq!(
        leader.high_watermark(),
        120,
        "a pending shrink still waits for 3"
    );
    assert!(leader.on_committed(&state(&[1, 2], 8)));
    assert_eq!(leader.high_watermark(), 150);
}

#[test]
fn a_caught_up_follower_is_proposed_in_and_counted_at_once() {
    let mut leader = leader(&[1, 2], 1);
    leader.on_local_log(150, 150);
    leader.on_fetch(2, 150, 11, 10);
    assert_eq!(leader.high_watermark(), 150);
    leader.on_local_log(160, 160);
    // 3 has not reached this leader epoch's start (100) yet: not in sync.
    leader.on_fetch(3, 95, 12, 10);
    assert_eq!(leader.tick(20), None);
    leader.on_fetch(3, 150, 12, 30);
    let proposal = leader.tick(40).expect("an expansion");
    assert_eq!(members(&proposal), vec![1, 2, 3]);
    leader.on_fetch(2, 160, 11, 50);
    assert_eq!(
        leader.high_watermark(),
        150,
        "the joining member already counts"
    );
    // The controller refused it (say, 3 restarted meanwhile): proposed
    // again once 3 fetched again, under the epoch it has now.
    leader.on_refused(&proposal, Refusal::NotApplied);
    assert_eq!(leader.tick(60), None, "not on its old fetches");
    leader.on_fetch(3, 160, 13, 70);
    let again = leader.tick(80).expect("proposed again");
    assert_eq!(again.isr.iter().find(|(m, _)| *m == 3), Some(&(3, 13)));
}

/// An expansion whose outcome is unknown (the answer was lost, or the
/// controller already holds a newer partition epoch) may have been
/// committed: the joining member still counts for the high watermark, and
/// the same proposal goes out again until the metadata settles it. Found by
/// the replication simulation: reverting to the committed ISR let the high
/// watermark pass a member the controller had just added.
#[test]
fn an_expansion_of_unknown_outcome_stays_counted_and_is_sent_again() {
    let mut leader = leader(&[1, 2], 1);
    leader.on_local_log(150, 150);
    leader.on_fetch(2, 150, 11, 10);
    leader.on_fetch(3, 150, 12, 10);
    let proposal = leader.tick(20).expect("an expansion");
    leader.on_local_log(160, 160);
    leader.on_fetch(2, 160, 11, 30);
    leader.on_refused(&proposal, Refusal::Unknown);
    assert_eq!(leader.high_watermark(), 150, "3 still counts");
    assert_eq!(leader.tick(40), Some(proposal.clone()), "sent again");
    assert_eq!(leader.tick(50), None, "once per unknown outcome");
    assert!(leader.on_committed(&state(&[1, 2, 3], 8)));
    leader.on_fetch(3, 160, 12, 60);
    assert_eq!(leader.high_watermark(), 160);
}

/// A follower whose fetches carry no broker epoch (an old fetch version, or
/// sent before its broker registered) is not proposed for the ISR, however
/// caught up: the controller could not tell which incarnation made the claim.
#[test]
fn a_follower_without_a_broker_epoch_is_not_proposed_in() {
    let mut leader = leader(&[1, 2], 1);
    leader.on_local_log(150, 150);
    leader.on_fetch(2, 150, 11, 10);
    leader.on_fetch(3, 150, -1, 10);
    assert_eq!(leader.tick(20), None);
    leader.on_fetch(3, 150, 12, 30);
    let proposal = leader
        .tick(40)
        .expect("an expansion once the epoch is known");
    assert_eq!(proposal.isr.iter().find(|(m, _)| *m == 3), Some(&(3, 12)));
}

/// A member the controller removed (its broker was fenced) is not proposed
/// back on the strength of fetches it made before: a dead broker's last
/// fetch would otherwise look caught up on a quiet partition forever.
#[test]
fn a_member_removed_by_the_controller_rejoins_only_after_fetching_again() {
    let mut leader = leader(&[1, 2, 3], 2);
    leader.on_local_log(150, 150);
    leader.on_fetch(2, 150, 11, 10);
    leader.on_fetch(3, 150, 12, 10);
    assert!(leader.on_committed(&state(&[1, 2], 8)), "3 was fenced");
    assert_eq!(leader.tick(20), None, "3 has not fetched since");
    leader.on_fetch(3, 150, 13, 30);
    let proposal = leader.tick(40).expect("an expansion after a new fetch");
    assert_eq!(proposal.isr.iter().find(|(m, _)| *m == 3), Some(&(3, 13)));
}

#[test]
fn a_replaced_leader_learns_it_from_the_metadata() {
    let mut leader = leader(&[1, 2, 3], 2);
    let mut newer = state(&[2, 3], 9);
    newer.leader_epoch = 5;
    assert!(
        !leader.on_committed(&newer),
        "another epoch: become a follower"
    );
}

/// The metadata touched the topic (another partition's ISR, a config) and
/// hands the leader the state it already has: a pending expansion stays
/// pending and counted, since the controller may yet commit it. Found by the
/// replication simulation: clearing it let the high watermark pass the
/// joining member, which the controller then added.
#[test]
fn the_same_committed_state_again_keeps_a_pending_expansion_counted() {
    let mut leader = leader(&[1, 2], 1);
    leader.on_local_log(150, 150);
    leader.on_fetch(2, 150, 11, 10);
    leader.on_fetch(3, 150, 12, 10);
    leader.tick(20).expect("an expansion");
    assert!(
        leader.on_committed(&state(&[1, 2], 7)),
        "the same state again"
    );
    leader.on_local_log(160, 160);
    leader.on_fetch(2, 160, 11, 30);
    assert_eq!(leader.high_watermark(), 150, "3 still counts");
    assert_eq!(leader.tick(40), None, "still pending");
}
