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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    pub node_id: i32,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// The id of the broker's data directory (kept in the directory): a new
    /// id means whatever the broker stored is gone.
    pub directory_id: Uuid,
}

/// A broker's heartbeat (Kafka's BrokerHeartbeat).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeartbeatReply {
    pub is_fenced: bool,
    pub in_controlled_shutdown: bool,
    /// Controlled shutdown is done: the broker leads nothing and knows it.
    pub should_shut_down: bool,
}

/// Producer ids `first .. first + size` belong to the broker that asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerIdBlock {
    pub first: i64,
    pub size: i64,
}

impl Controller {
    /// Registers a broker process. A retry of the same incarnation gets the
    /// same epoch back; a new incarnation from another data directory is
    /// refused while the old one is unfenced and its session lives (two
    /// processes were given one node id), and otherwise replaces it: the old
    /// incarnation's ISR memberships and leaderships are withdrawn, since the
    /// new process must earn them again under its new epoch. One whose data
    /// directory changed is no longer an eligible leader either.
    pub fn register_broker(
        &mut self,
        request: Registration,
        now_ms: i64,
    ) -> Result<Decision<i64>, ControllerError> {
        let mut lost_data = false;
        if let Some(existing) = self.image.broker(request.node_id) {
            if existing.incarnation_id == request.incarnation_id {
                let broker_epoch = existing.broker_epoch;
                self.renew_session(request.node_id, broker_epoch, 0, now_ms);
                return Ok(Decision {
                    reply: broker_epoch,
                    records: Vec::new(),
                });
            }
            // The same data directory means the same broker restarted: the
            // directory is locked while a process uses it, so the old one is
            // gone however recently it heartbeated.
            let same_directory = existing.directory_id == request.directory_id;
            if !same_directory && self.has_live_session(request.node_id, now_ms) {
                return Err(ControllerError::new(
                    ErrorKind::DuplicateBrokerRegistration,
                    format!(
                        "broker {} is registered by another process that is still alive; \
                         give each broker its own node.id",
                        request.node_id
                    ),
                ));
            }
            lost_data = existing.directory_id != request.directory_id;
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
                directory_id: request.directory_id,
            },
        );
        self.withdraw_broker(request.node_id, lost_data, &mut records);
        self.renew_session(request.node_id, broker_epoch, 0, now_ms);
        Ok(Decision {
            reply: broker_epoch,
            records,
        })
    }

    /// A heartbeat: renews the session, unfences a broker that has caught up
    /// with the metadata, and moves a broker asking to shut down out of
    /// every ISR and leadership. Controlled shutdown is granted (and the
    /// broker fenced) once every usable broker has applied the metadata up
    /// to the last leadership move, so the new leaders know they lead.
    pub fn heartbeat(
        &mut self,
        request: Heartbeat,
        now_ms: i64,
    ) -> Result<Decision<HeartbeatReply>, ControllerError> {
        let broker = self.current_broker(request.node_id, request.broker_epoch)?;
        let (node_id, broker_epoch) = (broker.node_id, broker.broker_epoch);
        let registered_at = broker.registered_at;
        let (fenced, shutting_down) = (broker.fenced, broker.in_controlled_shutdown);
        self.renew_session(node_id, broker_epoch, request.metadata_offset, now_ms);
        let mut records = Vec::new();
        if request.want_shutdown {
            if !shutting_down && !fenced {
                self.emit(
                    &mut records,
                    MetadataRecord::BrokerShuttingDown {
                        node_id,
                        broker_epoch,
                    },
                );
                self.withdraw_broker(node_id, false, &mut records);
            }
            let shutdown_offset = self.image.applied;
            let session = self.sessions.get_mut(&node_id).expect("renewed above");
            let shutdown_offset = *session.shutdown_offset.get_or_insert(shutdown_offset);
            if shutting_down && !fenced && self.all_usable_applied(shutdown_offset) {
                self.fence(node_id, broker_epoch, &mut records);
            }
        } else if request.want_fence {
            if !fenced {
                self.fence(node_id, broker_epoch, &mut records);
            }
        } else if fenced && !shutting_down && request.metadata_offset > registered_at {
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
        Ok(Decision {
            reply: HeartbeatReply {
                is_fenced: broker.fenced,
                in_controlled_shutdown: broker.in_controlled_shutdown,
                should_shut_down: broker.in_controlled_shutdown && broker.fenced,
            },
            records,
        })
    }

    /// Whether every usable broker has told this controller it applied the
    /// metadata up to `offset`. A broker that has not heartbeated to it yet
    /// (after a failover) has not.
    fn all_usable_applied(&self, offset: u64) -> bool {
        self.image
            .brokers
            .values()
            .filter(|broker| broker.is_usable())
            .all(|broker| {
                self.sessions.get(&broker.node_id).is_some_and(|session| {
                    session.broker_epoch == broker.broker_epoch && session.metadata_offset >= offset
                })
            })
    }

    fn renew_session(
        &mut self,
        node_id: i32,
        broker_epoch: i64,
        metadata_offset: u64,
        now_ms: i64,
    ) {
        let previous = self
            .sessions
            .get(&node_id)
            .filter(|session| session.broker_epoch == broker_epoch);
        let session = Session {
            broker_epoch,
            last_heartbeat_ms: now_ms,
            metadata_offset: previous
                .map_or(metadata_offset, |p| p.metadata_offset.max(metadata_offset)),
            shutdown_offset: previous.and_then(|p| p.shutdown_offset),
        };
        self.sessions.insert(node_id, session);
    }

    /// Removes a broker that left for good (Kafka's UnregisterBroker): it is
    /// taken out of every ISR and eligible-leader set first.
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
            self.emit(
                &mut records,
                MetadataRecord::BrokerFenced {
                    node_id,
                    broker_epoch,
                },
            );
        }
        self.withdraw_broker(node_id, true, &mut records);
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

    /// The broker's registration, if `broker_epoch` is its current epoch;
    /// STALE_BROKER_EPOCH otherwise, also for an id not registered at all
    /// (as Kafka's `checkBrokerEpoch`).
    fn current_broker(
        &self,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<&strom_metadata::BrokerRegistration, ControllerError> {
        match self.image.broker(node_id) {
            Some(broker) if broker.broker_epoch == broker_epoch => Ok(broker),
            Some(broker) => Err(ControllerError::new(
                ErrorKind::StaleBrokerEpoch,
                format!(
                    "broker {node_id} is registered with epoch {}, not {broker_epoch}",
                    broker.broker_epoch
                ),
            )),
            None => Err(ControllerError::new(
                ErrorKind::StaleBrokerEpoch,
                format!("broker {node_id} is not registered; register before heartbeating"),
            )),
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
        self.withdraw_broker(node_id, false, records);
    }

    /// When the session of this broker epoch ends, if nothing renews it. A
    /// broker that never heartbeated to this controller got a session when
    /// the controller became active.
    pub(crate) fn session_expiry(&self, node_id: i32, broker_epoch: i64) -> i64 {
        let last = match self.sessions.get(&node_id) {
            Some(session) if session.broker_epoch == broker_epoch => session.last_heartbeat_ms,
            _ => self.activated_ms,
        };
        last.saturating_add(self.config.session_timeout_ms)
    }

    /// An unfenced registration whose session has not ended: another process
    /// may not take its id.
    fn has_live_session(&self, node_id: i32, now_ms: i64) -> bool {
        self.image.broker(node_id).is_some_and(|broker| {
            !broker.fenced && now_ms < self.session_expiry(node_id, broker.broker_epoch)
        })
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
