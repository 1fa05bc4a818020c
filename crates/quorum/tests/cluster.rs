//! Three voters and a broker-only node on loopback, in one process: a
//! leader is elected, batches reach every node in order, the quorum
//! survives its leader stopping, and a restarted voter catches up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::MetadataRecord;
use strom_quorum::{Applied, Quorum, QuorumConfig, Timing};
use tokio::sync::mpsc;

const WITHIN: Duration = Duration::from_secs(10);

fn record(n: u64) -> MetadataRecord {
    MetadataRecord::ProducerIdsAllocated {
        next: n as i64,
        node_id: Some(1),
    }
}

fn timing() -> Timing {
    Timing {
        heartbeat_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        rpc_timeout_ms: 1000,
    }
}

struct Member {
    quorum: Quorum,
    applied: mpsc::UnboundedReceiver<Applied>,
}

async fn start(id: i32, voters: &BTreeMap<i32, String>, dir: &std::path::Path) -> Member {
    let mut config = QuorumConfig::new(id, voters.clone(), dir.join(id.to_string()));
    config.timing = timing();
    config.snapshot_after_entries = 5;
    if let Some(address) = voters.get(&id) {
        config.listener = Some(tokio::net::TcpListener::bind(address).await.unwrap());
    }
    let (sender, applied) = mpsc::unbounded_channel();
    Member {
        quorum: Quorum::start(config, None, sender).await.unwrap(),
        applied,
    }
}

async fn leader(members: &BTreeMap<i32, Member>) -> i32 {
    for _ in 0..200 {
        for (id, member) in members {
            if member.quorum.leadership().borrow().local_ready {
                return *id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader elected");
}

/// A loopback address free now, its port below the kernel's ephemeral range
/// so that no outgoing connection of a test running beside this one takes
/// it before the member binds it.
fn free_address() -> String {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let port = 20_000 + NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().unwrap().to_string();
        }
    }
}

/// Every batch a member has received, flattened into the producer-id
/// offsets it carried.
fn received(member: &mut Member) -> Vec<i64> {
    let mut seen = Vec::new();
    while let Ok(batch) = member.applied.try_recv() {
        assert!(
            !batch.from_snapshot,
            "no member was far enough behind for a snapshot"
        );
        for record in batch.records {
            if let MetadataRecord::ProducerIdsAllocated { next, .. } = record {
                seen.push(next);
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_and_an_observer_agree_and_survive_the_leader_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let voters: BTreeMap<i32, String> = (1..=3).map(|id| (id, free_address())).collect();
    let mut members = BTreeMap::new();
    for id in 1..=4 {
        members.insert(id, start(id, &voters, dir.path()).await);
    }
    let first = leader(&members).await;
    let mut offset = 0;
    for n in 1..=3 {
        offset = members[&first]
            .quorum
            .append(vec![record(n)], WITHIN)
            .await
            .unwrap();
    }
    // A follower refuses appends and names the leader.
    let follower = (1..=3).find(|&id| id != first).unwrap();
    match members[&follower]
        .quorum
        .append(vec![record(99)], WITHIN)
        .await
    {
        Err(strom_quorum::AppendError::NotLeader {
            leader: Some((id, _)),
        }) => assert_eq!(id, first),
        other => panic!("a follower appended: {:?}", other.map(|_| ())),
    }
    for member in members.values() {
        assert!(
            member
                .quorum
                .wait_applied(offset, Duration::from_secs(10))
                .await
        );
    }
    for (id, member) in members.iter_mut() {
        assert_eq!(received(member), vec![1, 2, 3], "node {id}");
    }

    // Requests reach the leader's application from any node.
    for member in members.values() {
        let me = first;
        member.quorum.set_app_handler(Arc::new(move |request| {
            Box::pin(async move { serde_json::json!({"leader": me, "echo": request}) })
        }));
    }
    let answer = members[&4]
        .quorum
        .call_leader(serde_json::json!("hello"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"leader": first, "echo": "hello"})
    );

    // The leader stops; the two others elect a new one and go on.
    let stopped = members.remove(&first).unwrap();
    stopped.quorum.shutdown().await;
    drop(stopped);
    let second = leader(&members).await;
    assert_ne!(second, first);
    for n in 4..=9 {
        offset = members[&second]
            .quorum
            .append(vec![record(n)], WITHIN)
            .await
            .unwrap();
    }
    for member in members.values() {
        assert!(
            member
                .quorum
                .wait_applied(offset, Duration::from_secs(10))
                .await
        );
    }
    assert_eq!(members[&4].quorum.image().next_producer_id, 9);

    // The stopped voter comes back from its files and catches up.
    members.insert(first, start(first, &voters, dir.path()).await);
    assert!(
        members[&first]
            .quorum
            .wait_applied(offset, Duration::from_secs(10))
            .await
    );
    assert_eq!(members[&first].quorum.image().next_producer_id, 9);
    assert_eq!(members[&first].quorum.image().applied, offset);

    // Without a majority the leader cannot commit: the append gives up at
    // its deadline rather than waiting forever.
    let current = leader(&members).await;
    for id in [1, 2, 3] {
        if id != current {
            let stopped = members.remove(&id).unwrap();
            stopped.quorum.shutdown().await;
        }
    }
    match members[&current]
        .quorum
        .append(vec![record(10)], Duration::from_millis(500))
        .await
    {
        Err(strom_quorum::AppendError::Timeout(_))
        | Err(strom_quorum::AppendError::NotLeader { .. }) => {}
        other => panic!(
            "a leader without a majority answered {:?}",
            other.map(|_| ())
        ),
    }
    // Nor does it go on calling itself the leader once no majority answers.
    let mut leadership = members[&current].quorum.leadership();
    tokio::time::timeout(
        Duration::from_secs(10),
        leadership.wait_for(|l| !l.local_ready && l.leader.is_none()),
    )
    .await
    .expect("a leader without a majority still says it leads")
    .unwrap();
    for member in members.values() {
        member.quorum.shutdown().await;
    }
}

#[tokio::test]
async fn a_quorum_of_one_needs_no_network_and_keeps_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let voters = BTreeMap::from([(1, String::new())]);
    let member = start_alone(&voters, dir.path()).await;
    let offset = member.append(vec![record(7)], WITHIN).await.unwrap();
    assert_eq!(offset, 1);
    member.shutdown().await;
    drop(member);
    let member = start_alone(&voters, dir.path()).await;
    assert!(member.wait_applied(1, Duration::from_secs(10)).await);
    assert_eq!(member.image().next_producer_id, 7);
    assert_eq!(member.append(vec![record(8)], WITHIN).await.unwrap(), 2);
    member.shutdown().await;
    drop(member);

    // Its voters are fixed: started as one of three, it refuses, rather
    // than leading a quorum of its own beside the others' quorum.
    let voters: BTreeMap<i32, String> = (1..=3).map(|id| (id, free_address())).collect();
    let mut config = QuorumConfig::new(1, voters.clone(), dir.path().to_path_buf());
    config.timing = timing();
    config.listener = Some(tokio::net::TcpListener::bind(&voters[&1]).await.unwrap());
    let (sender, _applied) = mpsc::unbounded_channel();
    match Quorum::start(config, None, sender).await {
        Err(strom_quorum::QuorumError::Config(message)) => {
            assert!(
                message.contains("cannot change a quorum's voters"),
                "{message}"
            )
        }
        other => panic!(
            "a one-node quorum started as one of three: {:?}",
            other.map(|_| ())
        ),
    }
}

async fn start_alone(voters: &BTreeMap<i32, String>, dir: &std::path::Path) -> Quorum {
    let mut config = QuorumConfig::new(1, voters.clone(), dir.to_path_buf());
    config.timing = timing();
    let (sender, _applied) = mpsc::unbounded_channel();
    std::mem::forget(_applied);
    let quorum = Quorum::start(config, None, sender).await.unwrap();
    let mut leadership = quorum.leadership();
    tokio::time::timeout(
        Duration::from_secs(10),
        leadership.wait_for(|l| l.local_ready),
    )
    .await
    .unwrap()
    .unwrap();
    quorum
}
