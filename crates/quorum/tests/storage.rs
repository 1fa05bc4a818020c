//! The quorum's storage against openraft's storage conformance suite, and
//! what the suite does not cover: reopening, a torn tail, damage.

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader};
use strom_metadata::MetadataRecord;
use strom_quorum::log_store::LogStore;
use strom_quorum::state_machine::StateMachine;
use strom_quorum::types::{Command, Entry, StorageError, TypeConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = LogStore::open(dir.path())?;
        let (applied, _) = tokio::sync::mpsc::unbounded_channel();
        let machine = StateMachine::open(dir.path(), applied)?;
        Ok((dir, log, machine))
    }
}

#[test]
fn the_storage_passes_openraft_conformance_suite() {
    Suite::test_all(Builder).unwrap();
}

fn entry(term: u64, index: u64, topic: &str) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Command::Records(vec![MetadataRecord::ClusterCreated {
            cluster_id: topic.to_string(),
        }])),
    }
}

async fn append(log: &mut LogStore, entries: Vec<Entry>) {
    // LogFlushed has no public constructor: go through openraft's blocking helper.
    use openraft::storage::RaftLogStorageExt;
    log.blocking_append(entries).await.unwrap();
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[tokio::test]
async fn entries_vote_and_purge_survive_a_reopen_and_a_torn_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        append(&mut log, (1..=5).map(|i| entry(1, i, "a")).collect()).await;
        log.save_vote(&openraft::Vote::new(2, 3)).await.unwrap();
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 4))
            .await
            .unwrap();
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 1))
            .await
            .unwrap();
        append(&mut log, vec![entry(2, 4, "b")]).await;
    }
    // A crash in the middle of the next append leaves half a line.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("raft.log"))
        .unwrap();
    file.write_all(b"0badc0de {\"log_id\":").unwrap();
    drop(file);

    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut log).await, vec![2, 3, 4]);
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(openraft::Vote::new(2, 3))
    );
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(1));
    assert_eq!(
        state.last_log_id,
        Some(LogId::new(CommittedLeaderId::new(2, 1), 4))
    );
    // The cut-off tail is gone from the file: the next append follows it.
    append(&mut log, vec![entry(2, 5, "c")]).await;
    drop(log);
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut log).await, vec![2, 3, 4, 5]);
}

#[tokio::test]
async fn a_damaged_entry_before_others_is_refused_not_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        append(&mut log, (1..=5).map(|i| entry(1, i, "a")).collect()).await;
    }
    // A flipped bit in the second of five lines: not what a crash leaves.
    let path = dir.path().join("raft.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 20;
    bytes[second] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    assert!(LogStore::open(dir.path()).is_err());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the damaged log was changed"
    );

    // The same damage in the last line is a torn tail: cut off.
    let last = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 20;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[second] ^= 0x01;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_damaged_vote_is_refused_rather_than_believed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        log.save_vote(&openraft::Vote::new(7, 2)).await.unwrap();
    }
    let path = dir.path().join("vote");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 4;
    bytes[last] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    assert!(LogStore::open(dir.path()).is_err());
}

#[tokio::test]
async fn a_snapshot_restores_the_image_after_a_reopen() {
    use openraft::RaftSnapshotBuilder;
    let dir = tempfile::tempdir().unwrap();
    let (applied, mut batches) = tokio::sync::mpsc::unbounded_channel();
    {
        let mut machine = StateMachine::open(dir.path(), applied.clone()).unwrap();
        let offsets = machine
            .apply(vec![entry(1, 1, "one"), entry(1, 2, "two")])
            .await
            .unwrap();
        assert_eq!(offsets, vec![1, 2]);
        assert_eq!(
            batches.recv().await.unwrap().image.cluster_id.as_deref(),
            Some("one")
        );
        let mut builder = machine.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap();
    }
    let mut machine = StateMachine::open(dir.path(), applied).unwrap();
    let (last, _) = machine.applied_state().await.unwrap();
    assert_eq!(last.map(|id| id.index), Some(2));
    assert_eq!(machine.shared_image().applied, 2);
    assert_eq!(machine.shared_image().cluster_id.as_deref(), Some("one"));
}
