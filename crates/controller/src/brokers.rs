//! The broker lifecycle (Kafka's ClusterControlManager and
//! BrokerHeartbeatManager): registration, heartbeats, fencing after the
//! session timeout, unfencing once caught up with the metadata, controlled
//! shutdown; and the producer-id blocks brokers ask for.
//!
//! ```text
//!   register ──► fenced ──(caught up with the metadata)──► unfenced
//!                  ▲                                          │
//!                  └──── session timeout / asked to fence ────┤
//!                  └──── exits after controlled shutdown ◄────┘ (shutting down)
//! ```
//!
//! A fenced or shutting-down broker is in no ISR and leads nothing: the
//! records that fence it are followed, in the same decision, by the
//! partition changes that take it out (see `partitions.rs`).

use strom_metadata::{Endpoint, MetadataRecord};
use uuid::Uuid;

use crate::controller::{Controller, Decision, Session};
use crate::error::{ControllerError, ErrorKind};

/// A broker process announcing itself (Kafka's BrokerRegistration).
#[derive(Debug, Clone)]
pub struct Registration {
    pub node_id: i32,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
}

/// A broker's heartbeat (Kafka's BrokerHeartbeat).
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub node_id: i32,
    pub broker_epoch: i64,
    /// How far the broker has applied the metadata log.
    pub metadata_offset: u64,
    /// The broker wants to stay fenced (it is still recovering).
    pub want_fence: bool,
    /// The broker is shutting down and asks to be moved out first.
    pub want_shutdown: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub is_fenced: bool,
    pub in_controlled_shutdown: bool,
    /// Controlled shutdown is done: the broker leads nothing and knows it.
    pub should_shut_down: bool,
}

/// Producer ids `first .. first + size` belong to the broker that asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    pub first: i64,
    pub size: i64,
}

impl Controller {
    /// Registers a broker process. A retry of the same incarnation gets the
    /// same epoch back; a new incarnation is refused while the old one still
    /// has a live session, and otherwise replaces it: the old incarnation's
    /// ISR memberships and leaderships are withdrawn, since the new process
    /// must earn them again under its new epoch.
    pub fn register_broker(
        &mut self,
        request: Registration,
        now_ms: i64,
    ) -> Result<Decision<i64>, ControllerError> {
        if let Some(existing) = self.image.broker(request.node_id) {
            if existing.incarnation_id == request.incarnation_id {
                return Ok(Decision {
                    reply: existing.broker_epoch,
                    records: Vec::new(),
                });
            }
            if self.has_live_session(request.node_id, existing.broker_epoch, now_ms) {
                return Err(ControllerError::new(
                    ErrorKind::DuplicateBrokerRegistration,
                    format!(
                        "broker {} is registered by another process that is still alive; \
                         give each broker its own node.id",
                        request.node_id
                    ),
                ));
            }
        }
        let broker_epoch = self.image.last_broker_epoch + 1;
        let mut records = Vec::new();
        self.emit(
            &mut records,
            MetadataRecord::BrokerRegistered {
                node_id: request.node_id,
                incarnation_id: request.incarnation_id,
                broker_epoch,
                endpoints: request.endpoints,
                rack: request.rack,
            },
        );
        self.withdraw_broker(request.node_id, &mut records);
        self.sessions.insert(
            request.node_id,
            Session {
                broker_epoch,
                last_heartbeat_ms: now_ms,
                shutdown_offset: None,
            },
        );
        Ok(Decision {
            reply: broker_epoch,
            records,
        })
    }

    /// A heartbeat: renews the session, unfences a broker that has caught up
    /// with the metadata, and moves a broker asking to shut down out of
    /// every ISR and leadership.
    pub fn heartbeat(
        &mut self,
        request: Heartbeat,
        now_ms: i64,
    ) -> Result<Decision<HeartbeatReply>, ControllerError> {
        let broker = self.current_broker(request.node_id, request.broker_epoch)?;
        let (node_id, broker_epoch) = (broker.node_id, broker.broker_epoch);
        let registered_at = broker.registered_at;
        let shutdown_offset = self
            .sessions
            .get(&node_id)
            .filter(|session| session.broker_epoch == broker_epoch)
            .and_then(|session| session.shutdown_offset)
            // A controller that took over from one that began the shutdown:
            // the leadership moves are in the log it took over.
            .or(broker.in_controlled_shutdown.then_some(self.image.applied));
        self.sessions.insert(
            node_id,
            Session {
                broker_epoch,
                last_heartbeat_ms: now_ms,
                shutdown_offset,
            },
        );
        let mut records = Vec::new();
        let broker = self.image.broker(node_id).expect("checked above");
        if request.want_shutdown {
            if !broker.in_controlled_shutdown {
                self.emit(
                    &mut records,
                    MetadataRecord::BrokerShuttingDown {
                        node_id,
                        broker_epoch,
                    },
                );
                self.withdraw_broker(node_id, &mut records);
                let done_at = self.image.applied;
                if let Some(session) = self.sessions.get_mut(&node_id) {
                    session.shutdown_offset = Some(done_at);
                }
            }
        } else if request.want_fence {
            if !broker.fenced {
                self.fence(node_id, broker_epoch, &mut records);
            }
        } else if broker.fenced && request.metadata_offset > registered_at {
            self.emit(
                &mut records,
                MetadataRecord::BrokerUnfenced {
                    node_id,
                    broker_epoch,
                },
            );
            self.elect_leaderless(&mut records);
        }
        let broker = self.image.broker(node_id).expect("checked above");
        let shutdown_offset = self.sessions.get(&node_id).and_then(|s| s.shutdown_offset);
        let should_shut_down = broker.in_controlled_shutdown
            && (broker.fenced
                || shutdown_offset.is_some_and(|offset| request.metadata_offset >= offset));
        Ok(Decision {
            reply: HeartbeatReply {
                is_fenced: broker.fenced,
                in_controlled_shutdown: broker.in_controlled_shutdown,
                should_shut_down,
            },
            records,
        })
    }

    /// Removes a broker that left for good (Kafka's UnregisterBroker).
    pub fn unregister_broker(&mut self, node_id: i32) -> Result<Decision<()>, ControllerError> {
        let Some(broker) = self.image.broker(node_id) else {
            return Err(ControllerError::new(
                ErrorKind::BrokerIdNotRegistered,
                format!("broker {node_id} is not registered"),
            ));
        };
        let broker_epoch = broker.broker_epoch;
        let mut records = Vec::new();
        if !broker.fenced {
            self.fence(node_id, broker_epoch, &mut records);
        }
        self.emit(
            &mut records,
            MetadataRecord::BrokerUnregistered {
                node_id,
                broker_epoch,
            },
        );
        self.sessions.remove(&node_id);
        Ok(Decision { reply: (), records })
    }

    /// Hands the next block of producer ids to a broker.
    pub fn allocate_producer_ids(
        &mut self,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<Decision<ProducerIdBlock>, ControllerError> {
        self.current_broker(node_id, broker_epoch)?;
        let block = ProducerIdBlock {
            first: self.image.next_producer_id,
            size: self.config.producer_id_block_size,
        };
        let mut records = Vec::new();
        self.emit(
            &mut records,
            MetadataRecord::ProducerIdsAllocated {
                next: block.first + block.size,
                node_id: Some(node_id),
            },
        );
        Ok(Decision {
            reply: block,
            records,
        })
    }

    /// The broker's registration, if `broker_epoch` is its current epoch.
    fn current_broker(
        &self,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<&strom_metadata::BrokerRegistration, ControllerError> {
        match self.image.broker(node_id) {
            None => Err(ControllerError::new(
                ErrorKind::BrokerIdNotRegistered,
                format!("broker {node_id} is not registered"),
            )),
            Some(broker) if broker.broker_epoch != broker_epoch => Err(ControllerError::new(
                ErrorKind::StaleBrokerEpoch,
                format!(
                    "broker {node_id} is registered with epoch {}, not {broker_epoch}",
                    broker.broker_epoch
                ),
            )),
            Some(broker) => Ok(broker),
        }
    }

    fn fence(&mut self, node_id: i32, broker_epoch: i64, records: &mut Vec<MetadataRecord>) {
        self.emit(
            records,
            MetadataRecord::BrokerFenced {
                node_id,
                broker_epoch,
            },
        );
        self.withdraw_broker(node_id, records);
    }

    /// When the session of this broker epoch ends, if nothing renews it.
    pub(crate) fn session_expiry(&self, node_id: i32, broker_epoch: i64) -> i64 {
        let last = match self.sessions.get(&node_id) {
            Some(session) if session.broker_epoch == broker_epoch => session.last_heartbeat_ms,
            _ => self.activated_ms,
        };
        last.saturating_add(self.config.session_timeout_ms)
    }

    fn has_live_session(&self, node_id: i32, broker_epoch: i64, now_ms: i64) -> bool {
        self.sessions
            .get(&node_id)
            .is_some_and(|session| session.broker_epoch == broker_epoch)
            && now_ms < self.session_expiry(node_id, broker_epoch)
    }

    pub(crate) fn fence_expired(&mut self, now_ms: i64, records: &mut Vec<MetadataRecord>) {
        let expired: Vec<(i32, i64)> = self
            .image
            .brokers
            .values()
            .filter(|broker| !broker.fenced)
            .filter(|broker| now_ms >= self.session_expiry(broker.node_id, broker.broker_epoch))
            .map(|broker| (broker.node_id, broker.broker_epoch))
            .collect();
        for (node_id, broker_epoch) in expired {
            self.fence(node_id, broker_epoch, records);
        }
    }
}
