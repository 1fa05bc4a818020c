//! `strom cluster`: info (brokers, controller quorum), leader elections and
//! broker configs.

use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, ElectLeadersRequest, ElectLeadersResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use crate::client::{key_value, CliError, CliResult, ClientArgs, Output};
use crate::output;
use crate::raw::{self, RawClient};

/// The cluster: brokers, controller quorum, leader elections and broker configs.
///
/// Examples:
///   strom cluster info
///   strom cluster elect-leaders
///   strom cluster config get log.retention.ms
///   strom cluster config set log.retention.ms=86400000
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Cluster id, brokers, the controller quorum (leader, epoch, how far
    /// each voter is behind) and the number of topics.
    ///
    /// Examples:
    ///   strom cluster info
    ///   strom cluster info -o json --bootstrap kafka-1:9092
    #[command(verbatim_doc_comment)]
    Info,
    /// Move leadership to the preferred replica (the first listed), or with
    /// --unclean give a partition without a leader any replica, even one
    /// that may lack acknowledged records.
    ///
    /// Examples:
    ///   strom cluster elect-leaders
    ///   strom cluster elect-leaders --topic orders
    ///   strom cluster elect-leaders --topic orders --partition 3 --unclean
    #[command(verbatim_doc_comment)]
    ElectLeaders {
        /// Only this topic's partitions [default: every partition].
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of --topic.
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// An unclean election: may lose acknowledged records.
        #[arg(long)]
        unclean: bool,
    },
    /// Read or change broker configs.
    ///
    /// Examples:
    ///   strom cluster config get
    ///   strom cluster config set log.retention.ms=86400000
    #[command(verbatim_doc_comment)]
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Show the broker's configs (all, or one).
    ///
    /// Examples:
    ///   strom cluster config get
    ///   strom cluster config get log.retention.ms
    #[command(verbatim_doc_comment)]
    Get {
        key: Option<String>,
        /// The broker to ask (default: the one answering metadata).
        #[arg(long)]
        broker: Option<i32>,
    },
    /// Change broker configs at run time.
    ///
    /// Examples:
    ///   strom cluster config set log.retention.ms=86400000
    #[command(verbatim_doc_comment)]
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
        #[arg(long)]
        broker: Option<i32>,
    },
}

pub fn run(args: ClusterArgs, client: &ClientArgs) -> CliResult {
    match args.command {
        ClusterCommand::Info => info(client),
        ClusterCommand::ElectLeaders {
            topic,
            partition,
            unclean,
        } => elect_leaders(client, topic, partition, unclean),
        ClusterCommand::Config {
            command: ConfigCommand::Get { key, broker },
        } => get(client, key, broker),
        ClusterCommand::Config {
            command: ConfigCommand::Set { settings, broker },
        } => set(client, &settings, broker),
    }
}

fn info(client: &ClientArgs) -> CliResult {
    let consumer = client.consumer(None)?;
    let metadata = client.metadata(&consumer, None)?;
    let mut raw = RawClient::connect(client)?;
    let cluster: DescribeClusterResponse = raw.call(
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    )?;
    let quorum = describe_quorum(&mut raw)?;
    let topics = metadata
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
        .count();
    let brokers: Vec<(i32, String, i32)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port()))
        .collect();
    // A voter's role, and how many metadata records it is behind.
    let role = |id: i32| -> (String, Option<i64>) {
        let Some(quorum) = &quorum else {
            return ("broker".into(), None);
        };
        let lag = |leo: i64| (quorum.high_watermark - leo).max(0);
        if let Some(voter) = quorum.voters.iter().find(|v| v.0 == id) {
            let role = if id == quorum.leader {
                "controller (active)"
            } else {
                "controller"
            };
            (role.into(), Some(lag(voter.1)))
        } else {
            let lag = quorum
                .observers
                .iter()
                .find(|o| o.0 == id)
                .map(|o| lag(o.1));
            ("broker".into(), lag)
        }
    };
    match client.output {
        Output::Json => output::json(&json!({
            "cluster_id": cluster.cluster_id.as_str(),
            "controller": cluster.controller_id.0,
            "brokers": brokers.iter().map(|(id, host, port)| {
                let (role, lag) = role(*id);
                json!({"id": id, "host": host, "port": port, "role": role, "metadata_lag": lag})
            }).collect::<Vec<_>>(),
            "quorum": quorum.as_ref().map(|q| json!({
                "leader": q.leader,
                "leader_epoch": q.epoch,
                "high_watermark": q.high_watermark,
                "voters": q.voters.iter().map(|v| json!({"id": v.0, "log_end_offset": v.1})).collect::<Vec<_>>(),
                "observers": q.observers.iter().map(|o| json!({"id": o.0, "log_end_offset": o.1})).collect::<Vec<_>>(),
            })),
            "topics": topics,
            "client_version": env!("CARGO_PKG_VERSION"),
        })),
        Output::Table => {
            println!("cluster id: {}", cluster.cluster_id.as_str());
            println!("controller: {}", cluster.controller_id.0);
            if let Some(q) = &quorum {
                let voters: Vec<String> = q.voters.iter().map(|v| v.0.to_string()).collect();
                println!(
                    "controller quorum: voters {}, leader {} in epoch {}, metadata offset {}",
                    voters.join(","),
                    q.leader,
                    q.epoch,
                    q.high_watermark
                );
            }
            println!("topics: {topics}");
            println!("strom client: {}", env!("CARGO_PKG_VERSION"));
            println!();
            output::table(
                &["BROKER", "HOST", "PORT", "ROLE", "METADATA LAG"],
                &brokers
                    .iter()
                    .map(|(id, host, port)| {
                        let (role, lag) = role(*id);
                        vec![
                            id.to_string(),
                            host.clone(),
                            port.to_string(),
                            role,
                            lag.map_or("-".into(), |lag| lag.to_string()),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}

/// The controller quorum as DescribeQuorum reports it: leader, epoch,
/// high watermark, and (id, log end offset) of voters and observers.
struct Quorum {
    leader: i32,
    epoch: i32,
    high_watermark: i64,
    voters: Vec<(i32, i64)>,
    observers: Vec<(i32, i64)>,
}

fn describe_quorum(raw: &mut RawClient) -> CliResult<Option<Quorum>> {
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let response: DescribeQuorumResponse = raw.call(ApiKey::DescribeQuorum, 1, &request)?;
    let Some(partition) = response
        .topics
        .first()
        .and_then(|topic| topic.partitions.first())
        .filter(|p| p.error_code == 0 && response.error_code == 0)
    else {
        return Ok(None);
    };
    let replicas =
        |states: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
            states
                .iter()
                .map(|r| (r.replica_id.0, r.log_end_offset))
                .collect()
        };
    Ok(Some(Quorum {
        leader: partition.leader_id.0,
        epoch: partition.leader_epoch,
        high_watermark: partition.high_watermark,
        voters: replicas(&partition.current_voters),
        observers: replicas(&partition.observers),
    }))
}

fn elect_leaders(
    client: &ClientArgs,
    topic: Option<String>,
    partition: Option<i32>,
    unclean: bool,
) -> CliResult {
    let partitions = match &topic {
        None => None,
        Some(name) => {
            let indexes = match partition {
                Some(index) => vec![index],
                None => {
                    let consumer = client.consumer(None)?;
                    let metadata = client.metadata(&consumer, Some(name))?;
                    metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == name)
                        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
                        .unwrap_or_default()
                }
            };
            Some(vec![TopicPartitions::default()
                .with_topic(TopicName(StrBytes::from_string(name.clone())))
                .with_partitions(indexes)])
        }
    };
    let request = ElectLeadersRequest::default()
        .with_election_type(i8::from(unclean))
        .with_topic_partitions(partitions)
        .with_timeout_ms(client.timeout.as_millis().min(i32::MAX as u128) as i32);
    let mut raw = RawClient::connect(client)?;
    let response: ElectLeadersResponse = raw.call(ApiKey::ElectLeaders, 2, &request)?;
    if response.error_code != 0 {
        return Err(CliError::Failed(format!(
            "ElectLeaders failed: {}",
            raw::error_name(response.error_code)
        )));
    }
    let mut rows = Vec::new();
    for topic in &response.replica_election_results {
        for result in &topic.partition_result {
            let outcome = match result.error_code {
                0 => "elected".to_string(),
                code => raw::error_name(code),
            };
            let message = result
                .error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            rows.push((
                topic.topic.to_string(),
                result.partition_id,
                outcome,
                message,
            ));
        }
    }
    match client.output {
        Output::Json => output::json(&json!(rows
            .iter()
            .map(|(t, p, o, m)| json!({"topic": t, "partition": p, "outcome": o, "message": m}))
            .collect::<Vec<_>>())),
        Output::Table if rows.is_empty() => {
            println!("every partition already has its preferred leader")
        }
        Output::Table => output::table(
            &["TOPIC", "PARTITION", "OUTCOME", "MESSAGE"],
            &rows
                .iter()
                .map(|(t, p, o, m)| vec![t.clone(), p.to_string(), o.clone(), m.clone()])
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

fn broker_id(client: &ClientArgs, broker: Option<i32>) -> CliResult<i32> {
    if let Some(broker) = broker {
        return Ok(broker);
    }
    let consumer = client.consumer(None)?;
    let metadata = client.metadata(&consumer, None)?;
    // The broker that answered, or else the first one listed (the bootstrap
    // connection has no id yet).
    let answered = metadata.orig_broker_id();
    if answered >= 0 {
        return Ok(answered);
    }
    metadata
        .brokers()
        .first()
        .map(|broker| broker.id())
        .ok_or_else(|| CliError::Failed("the cluster lists no brokers".into()))
}

fn get(client: &ClientArgs, key: Option<String>, broker: Option<i32>) -> CliResult {
    let id = broker_id(client, broker)?;
    let mut entries: Vec<(String, String, String)> = raw::broker_configs(client, id)?
        .into_iter()
        .filter(|(name, _, _)| key.as_ref().is_none_or(|key| key == name))
        .collect();
    entries.sort();
    if let Some(key) = &key {
        if entries.is_empty() {
            return Err(CliError::Failed(format!(
                "broker {id} has no config '{key}'"
            )));
        }
    }
    match client.output {
        Output::Json => output::json(&json!(entries
            .iter()
            .map(|(name, value, source)| json!({"name": name, "value": value, "source": source}))
            .collect::<Vec<_>>())),
        Output::Table => output::table(
            &["NAME", "VALUE", "SOURCE"],
            &entries
                .iter()
                .map(|(n, v, s)| vec![n.clone(), v.clone(), s.clone()])
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

fn set(client: &ClientArgs, settings: &[String], broker: Option<i32>) -> CliResult {
    let id = broker_id(client, broker)?;
    let changes: Vec<(String, String)> = settings
        .iter()
        .map(|s| key_value(s))
        .collect::<CliResult<_>>()?;
    let ops: Vec<(String, Option<String>)> = changes
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    raw::alter_configs(client, raw::BROKER, &id.to_string(), &ops)?;
    match client.output {
        Output::Json => output::json(
            &json!({"broker": id, "changed": changes.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()}),
        ),
        Output::Table => println!("changed {} config(s) of broker {id}", changes.len()),
    }
    Ok(())
}
