//! The metadata quorum as the broker sees it: requests go to the active
//! controller, whose records the Raft quorum (`strom-quorum`) commits and
//! every node applies to its committed image, in that order.
//!
//! The active controller runs in the process of the quorum's leader, built
//! from the committed image when that node's term began (and again after a
//! failed commit, since its own image ran ahead of the log). Decisions are
//! serialized, each committed before the next is made, so the log's order
//! is the order in which they took effect. Any other node forwards its
//! requests over the controller listener to the leader's
//! [`MetadataQuorum::serve`]; a request that finds no controller (an
//! election under way) is retried until its deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use strom_controller::{
    Controller, ControllerConfig, ControllerError, ControllerReply, ControllerRequest, Decision,
};
use strom_metadata::{MetadataImage, MetadataRecord};
use strom_quorum::{AppendError, Quorum, QuorumStatus};

use crate::partition::now_ms;

/// Why a request did not take effect.
#[derive(Debug)]
pub enum DecideError {
    /// The controller refused the request.
    Refused(ControllerError),
    /// No active controller answered before the deadline; nothing is known
    /// to have changed.
    Unavailable(String),
    /// The active controller could not store the records (a storage
    /// error): not retried.
    Storage(String),
}

/// What one node asks the active controller's node, over the controller
/// listener.
#[derive(Debug, Serialize, Deserialize)]
enum NodeRequest {
    Decide(ControllerRequest),
    /// The quorum as its leader sees it (DescribeQuorum).
    Describe,
}

/// The controller quorum as its leader sees it, for DescribeQuorum.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuorumView {
    pub leader: i32,
    pub term: u64,
    pub high_watermark: i64,
    pub voters: Vec<ReplicaView>,
    pub observers: Vec<ReplicaView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaView {
    pub node_id: i32,
    pub log_end_offset: i64,
    pub last_fetch_ms: i64,
    pub last_caught_up_ms: i64,
}

/// The answer to a forwarded request, on the wire between nodes.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    /// The reply, and the metadata offset once its records are applied.
    Decided(ControllerReply, u64),
    Refused(ControllerError),
    Described(QuorumView),
    /// This node is not (or no longer) the active controller.
    NotController,
    /// The records could not be stored.
    Storage(String),
    Failed(String),
}

/// The active controller of this node's term as leader.
struct Active {
    term: u64,
    controller: Controller,
}

pub struct MetadataQuorum {
    node_id: i32,
    quorum: Quorum,
    config: ControllerConfig,
    active: tokio::sync::Mutex<Option<Active>>,
    /// How long a request waits for an active controller.
    deadline: Duration,
}

impl MetadataQuorum {
    pub fn new(
        node_id: i32,
        quorum: Quorum,
        config: ControllerConfig,
        deadline: Duration,
    ) -> Arc<MetadataQuorum> {
        let metadata = Arc::new(MetadataQuorum {
            node_id,
            quorum,
            config,
            active: tokio::sync::Mutex::new(None),
            deadline,
        });
        let serving = metadata.clone();
        metadata
            .quorum
            .set_app_handler(Arc::new(move |request| serving.clone().serve(request)));
        metadata
    }

    /// Runs `read` on this node's committed image.
    pub fn read<T>(&self, read: impl FnOnce(&MetadataImage) -> T) -> T {
        read(&self.quorum.image())
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.quorum.image()
    }

    /// The active controller's node id, if one is known.
    pub fn leader(&self) -> Option<i32> {
        self.quorum.leadership().borrow().leader
    }

    /// The quorum as its leader sees it: here if this node leads it, else
    /// asked of the leader.
    pub async fn describe(&self) -> Result<QuorumView, String> {
        if self.quorum.leadership().borrow().leader == Some(self.node_id) {
            return self
                .view()
                .ok_or_else(|| "leadership moved; retry".to_string());
        }
        let request = serde_json::to_value(NodeRequest::Describe).expect("serializes");
        let answer = self
            .quorum
            .call_leader(request, self.deadline)
            .await
            .map_err(|error| error.to_string())?;
        match serde_json::from_value(answer) {
            Ok(Answer::Described(view)) => Ok(view),
            Ok(Answer::NotController) => Err("the quorum has no leader now; retry".to_string()),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(error) => Err(format!("answer not understood: {error}")),
        }
    }

    fn view(&self) -> Option<QuorumView> {
        let status: QuorumStatus = self.quorum.status();
        let replica = |r: &strom_quorum::ReplicaStatus| ReplicaView {
            node_id: r.node_id,
            log_end_offset: r.log_end_offset,
            last_fetch_ms: r.last_fetch_ms,
            last_caught_up_ms: r.last_caught_up_ms,
        };
        Some(QuorumView {
            leader: status.leader.filter(|&leader| leader == self.node_id)?,
            term: status.term,
            high_watermark: status.high_watermark as i64,
            voters: status.voters.iter().map(replica).collect(),
            observers: status.observers.iter().map(replica).collect(),
        })
    }

    /// Stops this node's part in the quorum (at shutdown, once clients are
    /// gone): no more batches are applied to the partitions being flushed.
    pub async fn shutdown(&self) {
        self.quorum.shutdown().await;
    }

    /// Waits until this node has applied the metadata up to `offset`.
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        self.quorum.wait_applied(offset, timeout).await
    }

    /// Has the active controller, here or on the node that leads the
    /// quorum, answer `request`. Returns the reply and the metadata offset
    /// at which its records (if any) were committed.
    pub async fn decide(
        &self,
        request: ControllerRequest,
    ) -> Result<(ControllerReply, u64), DecideError> {
        let started = Instant::now();
        let mut last_problem = String::from("no active controller yet");
        loop {
            let answer = if self.quorum.leadership().borrow().local_ready {
                self.decide_here(request.clone()).await
            } else {
                self.forward(&request).await
            };
            match answer {
                Answer::Decided(reply, offset) => return Ok((reply, offset)),
                Answer::Refused(refused) => return Err(DecideError::Refused(refused)),
                Answer::Storage(problem) => return Err(DecideError::Storage(problem)),
                Answer::NotController => {}
                Answer::Failed(problem) => last_problem = problem,
                Answer::Described(_) => last_problem = "a reply to another request".to_string(),
            }
            if started.elapsed() >= self.deadline {
                return Err(DecideError::Unavailable(format!(
                    "{} found no active controller within {} ms ({last_problem}); check that a majority of the controller quorum voters are running and can reach each other",
                    request.name(),
                    self.deadline.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn forward(&self, request: &ControllerRequest) -> Answer {
        let body = serde_json::to_value(NodeRequest::Decide(request.clone()))
            .expect("controller requests always serialize");
        match self.quorum.call_leader(body, self.deadline).await {
            Ok(answer) => serde_json::from_value(answer).unwrap_or_else(|error| {
                Answer::Failed(format!(
                    "the controller's answer was not understood: {error}"
                ))
            }),
            Err(error) => Answer::Failed(error.to_string()),
        }
    }

    /// The controller listener's side: a request forwarded by another node.
    fn serve(self: Arc<Self>, request: serde_json::Value) -> BoxFuture<'static, serde_json::Value> {
        Box::pin(async move {
            let answer = match serde_json::from_value::<NodeRequest>(request) {
                Ok(NodeRequest::Decide(request)) => self.decide_here(request).await,
                Ok(NodeRequest::Describe) => match self.view() {
                    Some(view) => Answer::Described(view),
                    None => Answer::NotController,
                },
                Err(error) => {
                    tracing::warn!(%error, "a forwarded controller request was not understood");
                    Answer::Failed(format!("request not understood: {error}"))
                }
            };
            serde_json::to_value(answer).expect("answers always serialize")
        })
    }

    /// Decides `request` with this node's active controller, if it is one.
    async fn decide_here(&self, request: ControllerRequest) -> Answer {
        let now = now_ms();
        self.with_active(now, |controller| controller.handle(request, now))
            .await
    }

    /// The active controller's periodic work (fencing brokers whose session
    /// ended, moving leadership back to preferred leaders), when this node
    /// is the active controller.
    pub async fn tick(&self) {
        if !self.quorum.leadership().borrow().local_ready {
            return;
        }
        let now = now_ms();
        let answer = self
            .with_active(now, |controller| {
                Ok(Decision {
                    reply: ControllerReply::Done,
                    records: controller.tick(now),
                })
            })
            .await;
        if let Answer::Failed(problem) = answer {
            tracing::warn!(%problem, "the controller's periodic work failed; retrying");
        }
    }

    async fn with_active(
        &self,
        now: i64,
        decide: impl FnOnce(&mut Controller) -> Result<Decision<ControllerReply>, ControllerError>,
    ) -> Answer {
        let mut active = self.active.lock().await;
        let leadership = self.quorum.leadership().borrow().clone();
        if !leadership.local_ready {
            *active = None;
            return Answer::NotController;
        }
        if active.as_ref().is_none_or(|a| a.term != leadership.term) {
            match self.activate(now).await {
                Ok(controller) => {
                    *active = Some(Active {
                        term: leadership.term,
                        controller,
                    })
                }
                Err(answer) => return answer,
            }
        }
        // Out of the slot while its records commit: should this future be
        // dropped before they do (a caller's timeout), the controller,
        // whose image already runs ahead of the log, is not used again;
        // the next decision starts over from the committed image.
        let mut state = active.take().expect("activated above");
        let Decision { reply, records } = match decide(&mut state.controller) {
            Ok(decision) => decision,
            Err(refused) => {
                *active = Some(state);
                return Answer::Refused(refused);
            }
        };
        if records.is_empty() {
            let applied = state.controller.image().applied;
            *active = Some(state);
            return Answer::Decided(reply, applied);
        }
        match self.quorum.append(records, self.deadline).await {
            Ok(offset) => {
                debug_assert_eq!(offset, state.controller.image().applied);
                *active = Some(state);
                Answer::Decided(reply, offset)
            }
            Err(error) => {
                match error {
                    AppendError::NotLeader { .. } => Answer::NotController,
                    // Perhaps committed later: the caller hears that the
                    // outcome is unknown, and the next controller starts
                    // from whatever the log then holds.
                    AppendError::Timeout(_) => Answer::Failed(error.to_string()),
                    AppendError::Fatal(problem) => {
                        tracing::error!(%problem, "committing metadata records failed");
                        Answer::Storage(problem)
                    }
                }
            }
        }
    }

    /// A controller over the committed image, for a term that just began;
    /// the first active controller of a new cluster records its id.
    async fn activate(&self, now: i64) -> Result<Controller, Answer> {
        // A batch appended earlier may still be in the log uncommitted (its
        // commit timed out, or its caller stopped waiting): it will commit
        // before anything appended now, so the new controller must start
        // from an image that includes it, not from one before it.
        if !self.quorum.wait_caught_up(self.deadline).await {
            return Err(Answer::Failed(
                "an earlier metadata change is not committed yet: no majority of the controller quorum voters answered".to_string(),
            ));
        }
        let image = self.quorum.image();
        if image.cluster_id.is_none() {
            let record = MetadataRecord::ClusterCreated {
                cluster_id: new_cluster_id(),
            };
            if let Err(error) = self.quorum.append(vec![record], self.deadline).await {
                return Err(match error {
                    AppendError::NotLeader { .. } => Answer::NotController,
                    AppendError::Timeout(_) => Answer::Failed(error.to_string()),
                    AppendError::Fatal(problem) => Answer::Storage(problem),
                });
            }
        }
        let image = (*self.quorum.image()).clone();
        tracing::info!(
            metadata_offset = image.applied,
            "this node is the active controller"
        );
        Ok(Controller::new(self.config.clone(), image, now))
    }
}

/// A new cluster id: 16 random bytes in URL-safe base64 without padding, as Kafka writes them.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut bits = 0u32;
    let mut count = 0;
    let mut id = String::new();
    for byte in bytes {
        bits = (bits << 8) | byte as u32;
        count += 8;
        while count >= 6 {
            count -= 6;
            id.push(ALPHABET[((bits >> count) & 63) as usize] as char);
        }
    }
    if count > 0 {
        id.push(ALPHABET[((bits << (6 - count)) & 63) as usize] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = super::new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
