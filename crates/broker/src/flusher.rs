//! Group commit: one task makes writes durable for everybody.
//!
//! Produce handlers submit "make partition P durable up to offset O" and,
//! for acks=all, wait for the answer. Each partition has at most one fsync
//! running (off the async threads); requests that arrive while it runs wait
//! for it if it covers them, else for the partition's next fsync, which
//! starts as soon as the running one ends. Under load many produce requests
//! therefore share one fsync per partition, an idle broker fsyncs a lone
//! write at once, and a slow fsync of one partition never delays another.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::partition::Partition;

/// The outcome of a flush: `Err` carries the storage error text.
pub type FlushResult = Result<(), String>;

struct FlushRequest {
    partition: Arc<Partition>,
    offset: i64,
    done: Option<oneshot::Sender<FlushResult>>,
}

#[derive(Clone)]
pub struct Flusher {
    requests: mpsc::UnboundedSender<FlushRequest>,
}

impl Flusher {
    /// Starts the flusher task on the current runtime.
    pub fn start() -> Flusher {
        let (requests, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(receiver));
        Flusher { requests }
    }

    /// Asks for `partition` to be durable up to `offset` and returns a
    /// receiver that resolves once it is.
    pub fn flush(&self, partition: Arc<Partition>, offset: i64) -> oneshot::Receiver<FlushResult> {
        let (done, receiver) = oneshot::channel();
        let request = FlushRequest {
            partition,
            offset,
            done: Some(done),
        };
        if let Err(rejected) = self.requests.send(request) {
            // The flusher is gone (shutdown): flush inline instead.
            let request = rejected.0;
            let result = flush_partition(&request.partition);
            if let Some(done) = request.done {
                let _ = done.send(result);
            }
        }
        receiver
    }

    /// Asks for a background flush nobody waits for (acks=0 and acks=1).
    pub fn flush_in_background(&self, partition: Arc<Partition>, offset: i64) {
        let _ = self.requests.send(FlushRequest {
            partition,
            offset,
            done: None,
        });
    }
}

/// Fsyncs one partition's unflushed data; safe to call from any thread.
pub fn flush_partition(partition: &Partition) -> FlushResult {
    let target = partition.log().flush_target().map_err(|e| e.to_string())?;
    let Some(target) = target else {
        return Ok(());
    };
    target.sync().map_err(|e| {
        tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "fsync failed");
        e.to_string()
    })?;
    partition.log().mark_flushed(target.offset);
    partition.note_flushed();
    Ok(())
}

/// Requests waiting for one partition's next fsync.
struct Waiting {
    partition: Arc<Partition>,
    requests: Vec<FlushRequest>,
}

async fn run(mut receiver: mpsc::UnboundedReceiver<FlushRequest>) {
    // Keyed by the partition's address, which identifies it while it is held.
    let mut waiting: HashMap<usize, Waiting> = HashMap::new();
    let mut syncing: HashSet<usize> = HashSet::new();
    let mut syncs: JoinSet<(usize, FlushResult)> = JoinSet::new();
    let mut open = true;
    loop {
        tokio::select! {
            request = receiver.recv(), if open => match request {
                Some(request) => {
                    enqueue(&mut waiting, request);
                    while let Ok(more) = receiver.try_recv() {
                        enqueue(&mut waiting, more);
                    }
                }
                None => open = false,
            },
            Some(finished) = syncs.join_next(), if !syncs.is_empty() => match finished {
                Ok((key, result)) => {
                    syncing.remove(&key);
                    answer(&mut waiting, key, result);
                }
                Err(join_error) => {
                    tracing::error!(error = %join_error, "flush task failed");
                }
            },
            else => break,
        }
        // Each partition with requests not yet covered gets an fsync, unless
        // one is running: that one's requests are answered when it ends, and
        // what arrived meanwhile goes in the partition's next fsync.
        for (key, entry) in &waiting {
            if !entry.requests.is_empty() && syncing.insert(*key) {
                let partition = entry.partition.clone();
                let key = *key;
                syncs.spawn_blocking(move || (key, flush_partition(&partition)));
            }
        }
        waiting.retain(|key, entry| !entry.requests.is_empty() || syncing.contains(key));
        if !open && syncs.is_empty() && waiting.is_empty() {
            break;
        }
    }
}

fn enqueue(waiting: &mut HashMap<usize, Waiting>, request: FlushRequest) {
    if request.partition.log().flushed_offset() >= request.offset {
        if let Some(done) = request.done {
            let _ = done.send(Ok(()));
        }
        return;
    }
    let key = Arc::as_ptr(&request.partition) as usize;
    waiting
        .entry(key)
        .or_insert_with(|| Waiting {
            partition: request.partition.clone(),
            requests: Vec::new(),
        })
        .requests
        .push(request);
}

/// An fsync of partition `key` ended: answers the requests it covered (all
/// of them if it failed).
fn answer(waiting: &mut HashMap<usize, Waiting>, key: usize, result: FlushResult) {
    let Some(entry) = waiting.get_mut(&key) else {
        return;
    };
    let flushed = entry.partition.log().flushed_offset();
    let requests = std::mem::take(&mut entry.requests);
    for request in requests {
        let outcome = match &result {
            Err(error) => Err(error.clone()),
            Ok(()) if flushed >= request.offset => Ok(()),
            Ok(()) => {
                // Written after this fsync began: the next one covers it.
                entry.requests.push(request);
                continue;
            }
        };
        if let Some(done) = request.done {
            let _ = done.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configs::BrokerOverrides;
    use crate::partition::PartitionIdentity;
    use strom_log::{batch::testing, FileCache, Recovery};

    fn partition(dir: &std::path::Path, index: i32) -> Arc<Partition> {
        let settings =
            BrokerOverrides::from_static(Default::default()).topic_settings(&Default::default());
        let identity = PartitionIdentity {
            topic: "t".to_string(),
            topic_id: uuid::Uuid::nil(),
            index,
            leader_epoch: 0,
        };
        Arc::new(
            Partition::open(dir, identity, settings, FileCache::new(16), Recovery::Clean).unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_request_is_answered_once_its_offset_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let partitions = [partition(dir.path(), 0), partition(dir.path(), 1)];
        let flusher = Flusher::start();
        let mut waits = Vec::new();
        for round in 0..50 {
            for partition in &partitions {
                let mut batch = testing::batch(1, round, b"x");
                let end = match partition.append(&mut batch).unwrap() {
                    crate::partition::Appended::Written(info) => info.last_offset + 1,
                    other => panic!("unexpected {other:?}"),
                };
                waits.push((
                    partition.clone(),
                    end,
                    flusher.flush(partition.clone(), end),
                ));
            }
        }
        for (partition, end, wait) in waits {
            wait.await.unwrap().unwrap();
            assert!(
                partition.log().flushed_offset() >= end,
                "answered before offset {end} was durable"
            );
        }
        // Already durable: answered at once.
        let end = partitions[0].log_end_offset();
        flusher
            .flush(partitions[0].clone(), end)
            .await
            .unwrap()
            .unwrap();
    }
}
