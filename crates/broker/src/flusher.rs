//! Group commit: fsyncs shared by every write waiting on a partition.
//!
//! Produce handlers ask for "partition P durable up to offset O" and, for
//! acks=all, wait for the answer. Each partition has at most one fsync
//! running, on a blocking thread that keeps going while anyone waits: when
//! an fsync ends, that thread answers the requests it covered and, if
//! writes arrived meanwhile, starts the next fsync at once. Under load many
//! produce requests therefore share one fsync per partition, an idle broker
//! fsyncs a lone write at once, a slow fsync of one partition never delays
//! another, and answering takes no hop through a coordinating task.
//!
//! The bookkeeping sits in a small map sharded by partition, so partitions
//! never wait on one lock. Fsyncs in flight are bounded (`slots`): each
//! holds its segment file open, and a blocking thread. A syncing thread
//! gives its slot back after every fsync and takes it again only if no
//! other partition is queued for one, so busy partitions take turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::runtime::Handle;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::partition::Partition;

/// The outcome of a flush: `Err` carries the storage error text.
pub type FlushResult = Result<(), String>;

const SHARDS: usize = 32;

/// Writes waiting on one partition's next fsync.
struct Queue {
    /// Offsets that must be durable, with whoever waits for them.
    waiters: Vec<(i64, oneshot::Sender<FlushResult>)>,
    /// The highest offset asked for without a waiter (acks=0 and acks=1).
    wanted: i64,
}

#[derive(Clone)]
pub struct Flusher {
    /// Partitions with an fsync running or due, keyed by the partition's
    /// address. A partition is in the map exactly while its syncing thread
    /// runs, and that thread holds the partition, so the key stays unique.
    shards: Arc<[Mutex<HashMap<usize, Queue>>]>,
    /// Fsyncs that may run at once.
    slots: Arc<Semaphore>,
    runtime: Handle,
}

impl Flusher {
    /// A flusher whose fsyncs, at most `slots` at once, run on the current
    /// runtime's blocking threads.
    pub fn start(slots: usize) -> Flusher {
        Flusher {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            slots: Arc::new(Semaphore::new(slots.max(1))),
            runtime: Handle::current(),
        }
    }

    /// Asks for `partition` to be durable up to `offset` and returns a
    /// receiver that resolves once it is.
    pub fn flush(&self, partition: Arc<Partition>, offset: i64) -> oneshot::Receiver<FlushResult> {
        let (done, receiver) = oneshot::channel();
        if partition.log().flushed_offset() >= offset {
            let _ = done.send(Ok(()));
        } else {
            self.enqueue(partition, offset, Some(done));
        }
        receiver
    }

    /// Asks for a background flush nobody waits for (acks=0 and acks=1).
    pub fn flush_in_background(&self, partition: Arc<Partition>, offset: i64) {
        if partition.log().flushed_offset() < offset {
            self.enqueue(partition, offset, None);
        }
    }

    fn shard(&self, key: usize) -> MutexGuard<'_, HashMap<usize, Queue>> {
        // Partitions are heap objects: spread the address with a
        // multiplicative hash and take the product's top bits.
        let index = ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn enqueue(
        &self,
        partition: Arc<Partition>,
        offset: i64,
        done: Option<oneshot::Sender<FlushResult>>,
    ) {
        let key = Arc::as_ptr(&partition) as usize;
        let start = {
            let mut shard = self.shard(key);
            let start = !shard.contains_key(&key);
            let queue = shard.entry(key).or_insert_with(|| Queue {
                waiters: Vec::new(),
                wanted: 0,
            });
            match done {
                Some(done) => queue.waiters.push((offset, done)),
                None => queue.wanted = queue.wanted.max(offset),
            }
            start
        };
        if start {
            self.schedule(key, partition);
        }
    }

    /// Runs the partition's syncing thread as soon as a slot is free.
    fn schedule(&self, key: usize, partition: Arc<Partition>) {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => self.run(key, partition, slot),
            Err(_) => {
                let flusher = self.clone();
                self.runtime.spawn(async move {
                    if let Ok(slot) = flusher.slots.clone().acquire_owned().await {
                        flusher.run(key, partition, slot);
                    }
                });
            }
        }
    }

    fn run(&self, key: usize, partition: Arc<Partition>, slot: OwnedSemaphorePermit) {
        let flusher = self.clone();
        let syncing = self
            .runtime
            .spawn_blocking(move || flusher.sync_while_needed(key, partition, slot));
        drop(syncing);
    }

    /// The syncing thread of one partition: fsyncs until nothing waits.
    fn sync_while_needed(
        &self,
        key: usize,
        partition: Arc<Partition>,
        mut slot: OwnedSemaphorePermit,
    ) {
        // Should this thread unwind, the partition leaves the map: its
        // waiters get an error (their senders drop) and the next flush
        // starts a new thread.
        let mut leave = LeaveOnUnwind {
            flusher: self,
            key: Some(key),
        };
        loop {
            let result = flush_partition(&partition);
            let flushed = partition.log().flushed_offset();
            let end = partition.log_end_offset();
            let mut shard = self.shard(key);
            let Some(queue) = shard.get_mut(&key) else {
                leave.key = None;
                return;
            };
            let waiters = std::mem::take(&mut queue.waiters);
            let mut answered = Vec::new();
            for (offset, done) in waiters {
                if result.is_err() || offset <= flushed {
                    answered.push((done, result.clone()));
                } else if offset > end {
                    // The log was cut back below it: no fsync will cover it.
                    answered.push((done, Err(format!("the log ends at {end}, before {offset}"))));
                } else {
                    // Written after this fsync began: the next one covers it.
                    queue.waiters.push((offset, done));
                }
            }
            let wanted = queue.wanted.min(end);
            let more = !queue.waiters.is_empty() || (result.is_ok() && wanted > flushed);
            if !more {
                shard.remove(&key);
                leave.key = None;
            }
            drop(shard);
            for (done, outcome) in answered {
                let _ = done.send(outcome);
            }
            if !more {
                return;
            }
            // Another turn, unless a partition is queued for the slot: a
            // released permit goes to the longest waiter first.
            drop(slot);
            slot = match self.slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    leave.key = None;
                    self.schedule(key, partition);
                    return;
                }
            };
        }
    }
}

/// Takes a partition out of the flusher's map if its syncing thread
/// unwinds (`key` is cleared on every normal exit).
struct LeaveOnUnwind<'a> {
    flusher: &'a Flusher,
    key: Option<usize>,
}

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.flusher.shard(key).remove(&key);
        }
    }
}

/// Fsyncs one partition's unflushed data; safe to call from any thread.
pub fn flush_partition(partition: &Partition) -> FlushResult {
    let target = partition.log().flush_target().map_err(|e| e.to_string())?;
    let Some(target) = target else {
        return Ok(());
    };
    if let Err(error) = target.sync() {
        // Never retried: the data it covered is never acknowledged.
        tracing::error!(topic = %partition.topic, partition = partition.index, %error, "fsync failed");
        partition.log().fail(&error.to_string());
        // Waiting acks=all produces see the partition offline.
        partition.data_arrived.notify_waiters();
        return Err(error.to_string());
    }
    partition.log().mark_flushed(target.offset);
    partition.note_flushed();
    partition.on_flushed();
    Ok(())
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
            replicated: false,
            checkpointed_high_watermark: None,
        };
        Arc::new(
            Partition::open(dir, identity, settings, FileCache::new(16), Recovery::Clean).unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_request_is_answered_once_its_offset_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let partitions = [partition(dir.path(), 0), partition(dir.path(), 1)];
        // One slot for two busy partitions: they must take turns.
        let flusher = Flusher::start(1);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_flushes_happen_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let partition = partition(dir.path(), 0);
        let flusher = Flusher::start(4);
        let mut end = 0;
        for round in 0..20 {
            let mut batch = testing::batch(1, round, b"x");
            if let crate::partition::Appended::Written(info) = partition.append(&mut batch).unwrap()
            {
                end = info.last_offset + 1;
            }
            flusher.flush_in_background(partition.clone(), end);
        }
        // A waiter behind the background requests is answered by the same
        // syncing thread, and the thread leaves once nothing is due.
        flusher
            .flush(partition.clone(), end)
            .await
            .unwrap()
            .unwrap();
        assert!(partition.log().flushed_offset() >= end);
        for _ in 0..10_000 {
            let queued: usize = flusher.shards.iter().map(|s| s.lock().unwrap().len()).sum();
            if queued == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("a syncing thread stayed with nothing to do");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_partition_hands_its_slot_to_a_waiting_one() {
        let dir = tempfile::tempdir().unwrap();
        let (busy, quiet) = (partition(dir.path(), 0), partition(dir.path(), 1));
        let flusher = Flusher::start(1);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let limit = 200_000;
        // Keeps `busy` with writes due all the time, from another thread.
        let writer = {
            let (busy, flusher, stop) = (busy.clone(), flusher.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rounds = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && rounds < limit {
                    let mut batch = testing::batch(1, rounds as i64, b"x");
                    if let crate::partition::Appended::Written(info) =
                        busy.append(&mut batch).unwrap()
                    {
                        flusher.flush_in_background(busy.clone(), info.last_offset + 1);
                    }
                    rounds += 1;
                }
                rounds
            })
        };
        while busy.log().flushed_offset() == 0 {
            tokio::task::yield_now().await;
        }
        let mut batch = testing::batch(1, 0, b"y");
        let end = match quiet.append(&mut batch).unwrap() {
            crate::partition::Appended::Written(info) => info.last_offset + 1,
            other => panic!("unexpected {other:?}"),
        };
        flusher.flush(quiet.clone(), end).await.unwrap().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rounds = writer.join().unwrap();
        assert!(
            rounds < limit,
            "the quiet partition was fsynced only after the busy one stopped writing"
        );
    }
}
