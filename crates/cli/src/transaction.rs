//! `strom transaction`: list and describe transactions and the producers
//! partitions remember, as Kafka's `kafka-transactions.sh` does, with
//! ListTransactions (to every broker), DescribeTransactions (to each id's
//! coordinator) and DescribeProducers (to each partition's leader), which
//! librdkafka does not expose, sent through [`RawClient`].

use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use crate::client::{CliError, CliResult, ClientArgs, Output};
use crate::output;
use crate::raw::{self, RawClient};

/// Transactions of transactional producers: who holds one open, since when,
/// on which partitions.
///
/// Examples:
///   strom transaction list
///   strom transaction list --state Ongoing --longer-than 60000
///   strom transaction describe payments-processor
///   strom transaction describe-producers --topic payments
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TransactionArgs {
    #[command(subcommand)]
    command: TransactionCommand,
}

#[derive(Subcommand, Debug)]
enum TransactionCommand {
    /// Transactional ids the broker coordinates, with producer id and state.
    ///
    /// States: Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
    /// CompleteAbort, Dead, PrepareEpochFence.
    ///
    /// Examples:
    ///   strom transaction list
    ///   strom transaction list --state Ongoing
    ///   strom transaction list --state Ongoing --longer-than 60000   # hanging?
    #[command(verbatim_doc_comment)]
    List {
        /// Only these states (repeatable).
        #[arg(long, value_name = "STATE")]
        state: Vec<String>,
        /// Only this producer id (repeatable).
        #[arg(long, value_name = "ID")]
        producer_id: Vec<i64>,
        /// Only transactions open for at least this many milliseconds.
        #[arg(long, value_name = "MS")]
        longer_than: Option<i64>,
    },
    /// One transactional id: producer id and epoch, state, timeout, start
    /// time and the partitions of its open transaction.
    ///
    /// Examples:
    ///   strom transaction describe payments-processor
    ///   strom transaction describe payments-processor -o json
    #[command(verbatim_doc_comment)]
    Describe {
        #[arg(required = true, value_name = "TRANSACTIONAL_ID")]
        transactional_ids: Vec<String>,
    },
    /// The idempotent and transactional producers a topic's partitions
    /// remember: epoch, last sequence, timestamp of the latest batch, and
    /// the first offset of an open transaction (-1 if none). A transaction
    /// that has been open here for long while its producer is gone is a
    /// hanging one. Producers are forgotten after producer.id.expiration.ms
    /// without a batch, unless a transaction is open.
    ///
    /// Examples:
    ///   strom transaction describe-producers --topic payments
    ///   strom transaction describe-producers --topic payments --partition 0 -o json
    #[command(verbatim_doc_comment)]
    DescribeProducers {
        #[arg(long)]
        topic: String,
        /// Only these partitions (repeatable; default: all of them).
        #[arg(long, value_name = "PARTITION")]
        partition: Vec<i32>,
    },
}

pub fn run(args: TransactionArgs, client: &ClientArgs) -> CliResult {
    let mut raw = RawClient::connect(client)?;
    match args.command {
        TransactionCommand::List {
            state,
            producer_id,
            longer_than,
        } => list(client, state, producer_id, longer_than),
        TransactionCommand::Describe { transactional_ids } => {
            describe(client, &mut raw, transactional_ids)
        }
        TransactionCommand::DescribeProducers { topic, partition } => {
            describe_producers(client, &mut raw, topic, partition)
        }
    }
}

fn describe_producers(
    client: &ClientArgs,
    raw: &mut RawClient,
    topic: String,
    mut partitions: Vec<i32>,
) -> CliResult {
    if partitions.is_empty() {
        let consumer = client.consumer(None)?;
        let metadata = client.metadata(&consumer, Some(&topic))?;
        partitions = metadata
            .topics()
            .iter()
            .filter(|found| found.name() == topic && found.error().is_none())
            .flat_map(|found| found.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(CliError::Failed(format!(
                "topic '{topic}' does not exist (strom topic list shows the topics there are)"
            )));
        }
        partitions.sort_unstable();
    }
    // Each partition is asked of its leader.
    let leaders = raw::leaders(raw, &topic)?.unwrap_or_default();
    let brokers = raw::brokers(raw)?;
    let mut by_leader: std::collections::BTreeMap<i32, Vec<i32>> = Default::default();
    for partition in partitions {
        match leaders.get(&partition) {
            Some(leader) if *leader >= 0 => by_leader.entry(*leader).or_default().push(partition),
            Some(_) => {
                return Err(CliError::Failed(format!(
                    "partition {partition} of '{topic}' has no leader now; try again shortly"
                )))
            }
            None => {
                return Err(CliError::Failed(format!(
                    "topic '{topic}' has no partition {partition}"
                )))
            }
        }
    }
    let mut responses = Vec::new();
    for (leader, partitions) in by_leader {
        let request = DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_partition_indexes(partitions)]);
        let response: DescribeProducersResponse = raw::connect_node(client, &brokers, leader)?
            .call(ApiKey::DescribeProducers, 0, &request)?;
        responses.push(response);
    }
    let mut answered: Vec<_> = responses
        .iter()
        .flat_map(|response| &response.topics)
        .flat_map(|t| &t.partitions)
        .collect();
    answered.sort_by_key(|partition| partition.partition_index);
    let mut rows = Vec::new();
    for partition in answered {
        if partition.error_code != 0 {
            return Err(CliError::Failed(format!(
                "partition {} of '{topic}': {}",
                partition.partition_index,
                partition.error_message.as_deref().map_or_else(
                    || format!("error code {}", partition.error_code),
                    str::to_string
                )
            )));
        }
        for producer in &partition.active_producers {
            rows.push((
                partition.partition_index,
                producer.producer_id.0,
                producer.producer_epoch,
                producer.last_sequence,
                producer.last_timestamp,
                producer.current_txn_start_offset,
            ));
        }
    }
    match client.output {
        Output::Json => output::json(&json!(rows
            .iter()
            .map(|(partition, id, epoch, sequence, timestamp, start)| json!({
                "partition": partition,
                "producer_id": id,
                "producer_epoch": epoch,
                "last_sequence": sequence,
                "last_timestamp_ms": timestamp,
                "transaction_start_offset": start,
            }))
            .collect::<Vec<_>>())),
        Output::Table => output::table(
            &[
                "PARTITION",
                "PRODUCER",
                "EPOCH",
                "LAST_SEQUENCE",
                "LAST_TIMESTAMP_MS",
                "TXN_START_OFFSET",
            ],
            &rows
                .iter()
                .map(|(partition, id, epoch, sequence, timestamp, start)| {
                    vec![
                        partition.to_string(),
                        id.to_string(),
                        epoch.to_string(),
                        sequence.to_string(),
                        timestamp.to_string(),
                        start.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

fn list(
    client: &ClientArgs,
    states: Vec<String>,
    producer_ids: Vec<i64>,
    longer_than: Option<i64>,
) -> CliResult {
    let version = if longer_than.is_some() { 1 } else { 0 };
    let request = ListTransactionsRequest::default()
        .with_state_filters(states.into_iter().map(StrBytes::from_string).collect())
        .with_producer_id_filters(producer_ids.into_iter().map(ProducerId).collect())
        .with_duration_filter(longer_than.unwrap_or(-1));
    // Each broker lists the transactions it coordinates.
    let responses: Vec<ListTransactionsResponse> =
        raw::each_broker(client, ApiKey::ListTransactions, version, &request)?;
    if let Some(failed) = responses.iter().find(|response| response.error_code != 0) {
        return Err(CliError::Failed(format!(
            "listing transactions failed with error code {}",
            failed.error_code
        )));
    }
    if let Some(unknown) = responses
        .iter()
        .flat_map(|response| &response.unknown_state_filters)
        .next()
    {
        return Err(CliError::Usage(format!(
            "unknown transaction state '{}' (states: Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, Dead, PrepareEpochFence)",
            unknown.as_str()
        )));
    }
    let mut rows: Vec<(String, i64, String)> = responses
        .iter()
        .flat_map(|response| &response.transaction_states)
        .map(|state| {
            (
                state.transactional_id.to_string(),
                state.producer_id.0,
                state.transaction_state.to_string(),
            )
        })
        .collect();
    rows.sort();
    rows.dedup_by(|a, b| a.0 == b.0);
    match client.output {
        Output::Json => output::json(&json!(rows
            .iter()
            .map(|(id, producer, state)| json!({
                "transactional_id": id,
                "producer_id": producer,
                "state": state,
            }))
            .collect::<Vec<_>>())),
        Output::Table => output::table(
            &["TRANSACTIONAL_ID", "PRODUCER", "STATE"],
            &rows
                .iter()
                .map(|(id, producer, state)| vec![id.clone(), producer.to_string(), state.clone()])
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

fn describe(client: &ClientArgs, raw: &mut RawClient, ids: Vec<String>) -> CliResult {
    // Each id is asked of its coordinator.
    let brokers = raw::brokers(raw)?;
    let mut states = Vec::new();
    for id in &ids {
        let coordinator = raw::coordinator(raw, id, 1)?;
        let request = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.clone()))]);
        let response: DescribeTransactionsResponse = raw::connect_node(
            client,
            &brokers,
            coordinator,
        )?
        .call(ApiKey::DescribeTransactions, 0, &request)?;
        states.extend(response.transaction_states);
    }
    let mut described = Vec::new();
    for state in &states {
        let id = state.transactional_id.to_string();
        match state.error_code {
            0 => {}
            105 => {
                return Err(CliError::Failed(format!(
                    "no transactional id '{id}' is known to the coordinator"
                )))
            }
            code => {
                return Err(CliError::Failed(format!(
                    "describing '{id}' failed with error code {code}"
                )))
            }
        }
        let partitions: Vec<String> = state
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(move |partition| format!("{}-{partition}", topic.topic.as_str()))
            })
            .collect();
        described.push((id, state, partitions));
    }
    match client.output {
        Output::Json => output::json(&json!(described
            .iter()
            .map(|(id, state, partitions)| json!({
                "transactional_id": id,
                "producer_id": state.producer_id.0,
                "producer_epoch": state.producer_epoch,
                "state": state.transaction_state.as_str(),
                "timeout_ms": state.transaction_timeout_ms,
                "start_time_ms": state.transaction_start_time_ms,
                "partitions": partitions,
            }))
            .collect::<Vec<_>>())),
        Output::Table => output::table(
            &[
                "TRANSACTIONAL_ID",
                "PRODUCER",
                "EPOCH",
                "STATE",
                "TIMEOUT_MS",
                "STARTED_MS",
                "PARTITIONS",
            ],
            &described
                .iter()
                .map(|(id, state, partitions)| {
                    vec![
                        id.clone(),
                        state.producer_id.0.to_string(),
                        state.producer_epoch.to_string(),
                        state.transaction_state.to_string(),
                        state.transaction_timeout_ms.to_string(),
                        state.transaction_start_time_ms.to_string(),
                        partitions.join(","),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}
