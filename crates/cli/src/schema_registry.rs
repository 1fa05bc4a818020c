//! The schema registry inside `strom serve`: its state replayed from the
//! `_schemas` topic at start, its writes appended there (durable, on every
//! in-sync replica, before they are answered), its API on its own listener.

use std::sync::Arc;

use strom_broker::internal_topics::{self, InternalLog};
use strom_broker::Broker;
use strom_registry::records::{Record, TOPIC};
use strom_registry::{Registry, Store};

/// `_schemas` has one partition, as Confluent's (the order of writes is the
/// order of ids).
const PARTITIONS: i32 = 1;

struct SchemasTopic {
    log: InternalLog,
}

impl Store for SchemasTopic {
    fn write(
        &self,
        record: Record,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> {
        let log = self.log.clone();
        Box::pin(async move {
            internal_topics::create_with(&log, TOPIC, PARTITIONS)
                .await
                .map_err(|error| error.message)?;
            // Until writes are forwarded, the node leading _schemas takes them.
            let partition = log
                .partition(TOPIC, 0)
                .filter(|partition| partition.is_leader())
                .ok_or_else(|| match log.metadata().leader_of(TOPIC, 0) {
                    Some(leader) => format!(
                        "this node does not lead _schemas; register through the schema registry of node {} (the node at {}:{})",
                        leader.node_id, leader.host, leader.port
                    ),
                    None => "_schemas has no leader now; try again shortly".to_string(),
                })?;
            internal_topics::append(&log, partition, vec![record]).await
        })
    }
}

/// The registry as `_schemas` has it on this node.
fn replay(broker: &Broker) -> Registry {
    let mut registry = Registry::default();
    if let Some(partition) = broker.internal_log.partition(TOPIC, 0) {
        let records = internal_topics::replay(TOPIC, &partition, |record| {
            if let Some(key) = &record.key {
                registry.apply(key, record.value.as_deref());
            }
        });
        tracing::info!(records, "loaded the schema registry from _schemas");
    }
    registry
}

/// The registry's listener, bound before the broker starts so that a busy
/// address stops `strom serve` before anything else happens.
pub async fn bind(address: &str) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(address).await.with_context(|| {
        format!("the schema registry cannot listen on {address}; pick another address with --schema-registry-listener, or turn it off with --schema-registry-listener none")
    })
}

/// Serves the registry on `listener`, its state replayed from `_schemas`.
pub fn start(broker: &Arc<Broker>, listener: tokio::net::TcpListener) {
    let service = strom_registry::Service::new(
        replay(broker),
        SchemasTopic {
            log: broker.internal_log.clone(),
        },
    );
    tokio::spawn(async move {
        if let Err(error) = strom_registry::serve(listener, service).await {
            tracing::error!(%error, "the schema registry stopped");
        }
    });
}
