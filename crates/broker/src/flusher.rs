//! Group commit: one task makes writes durable for everybody.
//!
//! Produce handlers submit "make partition P durable up to offset O" and,
//! for acks=all, wait for the answer. The flusher takes every request that
//! queued up while the previous round of fsyncs ran, fsyncs each dirty
//! partition once (the partitions in parallel, off the async threads), and
//! answers all of them. Under load many produce requests therefore share one
//! fsync per partition, and an idle broker fsyncs a lone write at once.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

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

async fn run(mut receiver: mpsc::UnboundedReceiver<FlushRequest>) {
    while let Some(first) = receiver.recv().await {
        let mut round = vec![first];
        while let Ok(more) = receiver.try_recv() {
            round.push(more);
        }
        // One fsync per partition per round, whatever the number of requests.
        let mut by_partition: HashMap<usize, Arc<Partition>> = HashMap::new();
        for request in &round {
            let already_durable = request.partition.log().flushed_offset() >= request.offset;
            if !already_durable {
                by_partition
                    .entry(Arc::as_ptr(&request.partition) as usize)
                    .or_insert_with(|| request.partition.clone());
            }
        }
        let syncs: Vec<_> = by_partition
            .into_values()
            .map(|partition| {
                tokio::task::spawn_blocking(move || {
                    let result = flush_partition(&partition);
                    (Arc::as_ptr(&partition) as usize, result)
                })
            })
            .collect();
        // Keyed by the partition's address, which identifies it for this round.
        let mut failures: HashMap<usize, String> = HashMap::new();
        for sync in syncs {
            match sync.await {
                Ok((partition, Err(error))) => {
                    failures.insert(partition, error);
                }
                Ok((_, Ok(()))) => {}
                Err(join_error) => {
                    tracing::error!(error = %join_error, "flush task failed");
                }
            }
        }
        for request in round {
            let Some(done) = request.done else { continue };
            let result = match failures.get(&(Arc::as_ptr(&request.partition) as usize)) {
                Some(error) => Err(error.clone()),
                None if request.partition.log().flushed_offset() >= request.offset => Ok(()),
                None => Err("flush did not reach the requested offset".to_string()),
            };
            let _ = done.send(result);
        }
    }
}
