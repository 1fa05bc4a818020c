//! `strom topic`: create, list, describe, delete, alter-config, add-partitions.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{
    ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{ConfigSource, NewPartitions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use serde_json::json;

use crate::client::{key_value, CliError, CliResult, ClientArgs, Output};
use crate::output;
use crate::raw;

/// Create, list, inspect, change and delete topics.
///
/// Examples:
///   strom topic create orders --partitions 6
///   strom topic list
///   strom topic describe orders -o json
///   strom topic alter-config orders --set retention.ms=86400000
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    /// Create a topic.
    ///
    /// Examples:
    ///   strom topic create orders --partitions 6
    ///   strom topic create users -p 3 -c cleanup.policy=compact -c retention.ms=-1
    #[command(verbatim_doc_comment)]
    Create {
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Copies of each partition (default: the broker's default.replication.factor).
        #[arg(short, long)]
        replication_factor: Option<i32>,
        /// A topic config, Kafka's names (repeatable).
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    ///
    /// Examples:
    ///   strom topic list
    ///   strom topic list --internal -o json
    #[command(verbatim_doc_comment)]
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
    },
    /// Show partitions, leaders, replicas, ISR, offsets, sizes and non-default configs.
    ///
    /// Examples:
    ///   strom topic describe orders
    ///   strom topic describe orders -o json
    #[command(verbatim_doc_comment)]
    Describe { name: String },
    /// Delete topics.
    ///
    /// Examples:
    ///   strom topic delete orders
    ///   strom topic delete old-1 old-2
    #[command(verbatim_doc_comment)]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Change a topic's configs, leaving the others as they are.
    ///
    /// Examples:
    ///   strom topic alter-config orders --set retention.ms=86400000
    ///   strom topic alter-config orders --delete retention.ms
    #[command(verbatim_doc_comment)]
    AlterConfig {
        name: String,
        /// Set a config (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Reset a config to its default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Add partitions to a topic.
    ///
    /// Examples:
    ///   strom topic add-partitions orders --num 3
    #[command(verbatim_doc_comment)]
    AddPartitions {
        name: String,
        /// How many partitions to add.
        #[arg(long)]
        num: usize,
    },
}

pub fn run(args: TopicArgs, client: &ClientArgs) -> CliResult {
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => create(client, &name, partitions, replication_factor, &configs),
        TopicCommand::List { internal } => list(client, internal),
        TopicCommand::Describe { name } => describe(client, &name),
        TopicCommand::Delete { names } => delete(client, &names),
        TopicCommand::AlterConfig { name, set, delete } => {
            alter_config(client, &name, &set, &delete)
        }
        TopicCommand::AddPartitions { name, num } => add_partitions(client, &name, num),
    }
}

/// Fails with exit 3 unless the cluster answers.
fn reachable(client: &ClientArgs) -> CliResult {
    let consumer = client.consumer(None)?;
    client.metadata(&consumer, None)?;
    Ok(())
}

fn broker_error(what: &str, name: &str, code: RDKafkaErrorCode) -> CliError {
    let hint = match code {
        RDKafkaErrorCode::TopicAlreadyExists => {
            " (it already exists; `strom topic describe` shows it)"
        }
        RDKafkaErrorCode::UnknownTopicOrPartition => {
            " (no such topic; `strom topic list` shows the topics)"
        }
        RDKafkaErrorCode::InvalidConfig => " (see `strom topic describe` for the current values)",
        _ => "",
    };
    CliError::Failed(format!("{what} '{name}' failed: {code}{hint}"))
}

fn unknown_topic(name: &str) -> CliError {
    CliError::Failed(format!(
        "topic '{name}' does not exist; `strom topic list` shows the topics"
    ))
}

fn create(
    client: &ClientArgs,
    name: &str,
    partitions: Option<i32>,
    replication_factor: Option<i32>,
    configs: &[String],
) -> CliResult {
    reachable(client)?;
    let configs: Vec<(String, String)> = configs
        .iter()
        .map(|c| key_value(c))
        .collect::<CliResult<_>>()?;
    let replication_factor = replication_factor.unwrap_or(-1);
    let replication_factor = i16::try_from(replication_factor).map_err(|_| {
        CliError::Usage(format!(
            "--replication-factor {replication_factor} is out of range"
        ))
    })?;
    raw::create_topic(
        client,
        name,
        partitions.unwrap_or(-1),
        replication_factor,
        &configs,
    )?;
    let consumer = client.consumer(None)?;
    let metadata = client.metadata(&consumer, Some(name))?;
    let created = metadata.topics().first();
    let count = created.map_or(0, |t| t.partitions().len());
    let replicas = created
        .and_then(|t| t.partitions().first())
        .map_or(0, |p| p.replicas().len());
    match client.output {
        Output::Json => output::json(
            &json!({"name": name, "partitions": count, "replication_factor": replicas}),
        ),
        Output::Table => {
            println!("created topic {name} with {count} partitions (replication factor {replicas})")
        }
    }
    Ok(())
}

fn list(client: &ClientArgs, internal: bool) -> CliResult {
    let consumer = client.consumer(None)?;
    let metadata = client.metadata(&consumer, None)?;
    let mut topics: Vec<(String, usize, usize, bool)> = metadata
        .topics()
        .iter()
        .filter(|topic| internal || !topic.name().starts_with("__"))
        .map(|topic| {
            let replicas = topic.partitions().first().map_or(0, |p| p.replicas().len());
            (
                topic.name().to_string(),
                topic.partitions().len(),
                replicas,
                topic.name().starts_with("__"),
            )
        })
        .collect();
    topics.sort();
    match client.output {
        Output::Json => output::json(&json!(topics
            .iter()
            .map(|(name, partitions, replicas, internal)| json!({
                "name": name, "partitions": partitions, "replication_factor": replicas, "internal": internal
            }))
            .collect::<Vec<_>>())),
        Output::Table => output::table(
            &["NAME", "PARTITIONS", "REPLICAS"],
            &topics
                .iter()
                .map(|(name, partitions, replicas, _)| vec![name.clone(), partitions.to_string(), replicas.to_string()])
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

/// Partition sizes from DescribeLogDirs, asked of every broker (a broker
/// answers for the replicas it holds); the largest replica of each
/// partition, missing where no broker says.
fn partition_sizes(client: &ClientArgs, name: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let request =
        DescribeLogDirsRequest::default()
            .with_topics(Some(vec![DescribableLogDirTopic::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                .with_partitions((0..partitions).collect())]));
    let Ok(responses) = raw::each_broker::<_, DescribeLogDirsResponse>(
        client,
        ApiKey::DescribeLogDirs,
        1,
        &request,
    ) else {
        return BTreeMap::new();
    };
    let mut sizes = BTreeMap::new();
    for partition in responses
        .iter()
        .flat_map(|response| &response.results)
        .flat_map(|dir| dir.topics.iter())
        .filter(|topic| topic.name.as_str() == name)
        .flat_map(|topic| topic.partitions.iter())
    {
        let size = sizes.entry(partition.partition_index).or_insert(0);
        *size = partition.partition_size.max(*size);
    }
    sizes
}

fn describe(client: &ClientArgs, name: &str) -> CliResult {
    let consumer = client.consumer(None)?;
    let metadata = client.metadata(&consumer, Some(name))?;
    let topic = metadata
        .topics()
        .iter()
        .find(|topic| {
            topic.name() == name && topic.error().is_none() && !topic.partitions().is_empty()
        })
        .ok_or_else(|| unknown_topic(name))?;
    let sizes = partition_sizes(client, name, topic.partitions().len() as i32);
    let mut partitions = Vec::new();
    for partition in topic.partitions() {
        let (earliest, latest) = consumer
            .fetch_watermarks(name, partition.id(), client.timeout)
            .map_err(|e| client.unreachable(e))?;
        let size = sizes.get(&partition.id()).copied().unwrap_or(-1);
        partitions.push((partition, earliest, latest, size));
    }
    let admin = client.admin()?;
    let configs = client
        .runtime()?
        .block_on(
            admin.describe_configs([&ResourceSpecifier::Topic(name)], &client.admin_options()),
        )
        .map_err(|e| client.unreachable(e))?;
    let mut changed = BTreeMap::new();
    for resource in configs.into_iter().flatten() {
        for entry in resource.entries {
            if matches!(entry.source, ConfigSource::DynamicTopic) {
                changed.insert(entry.name.clone(), entry.value.clone().unwrap_or_default());
            }
        }
    }
    let replicas = topic.partitions().first().map_or(0, |p| p.replicas().len());
    match client.output {
        Output::Json => output::json(&json!({
            "name": name,
            "replication_factor": replicas,
            "partitions": partitions.iter().map(|(p, earliest, latest, size)| json!({
                "partition": p.id(), "leader": p.leader(), "replicas": p.replicas(), "isr": p.isr(),
                "status": partition_status(p.leader(), p.replicas(), p.isr()),
                "earliest": earliest, "latest": latest, "size_bytes": size,
            })).collect::<Vec<_>>(),
            "configs": changed,
        })),
        Output::Table => {
            println!("topic: {name}");
            println!("partitions: {}", partitions.len());
            println!("replication factor: {replicas}");
            let unhealthy = partitions
                .iter()
                .filter(|(p, ..)| partition_status(p.leader(), p.replicas(), p.isr()) != "ok")
                .count();
            if unhealthy > 0 {
                println!("under-replicated or offline partitions: {unhealthy}");
            }
            println!();
            if changed.is_empty() {
                println!("configs: all defaults");
            } else {
                println!("configs (differing from the defaults):");
                for (key, value) in &changed {
                    println!("  {key}={value}");
                }
            }
            println!();
            let join = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
            output::table(
                &[
                    "PARTITION",
                    "LEADER",
                    "REPLICAS",
                    "ISR",
                    "EARLIEST",
                    "LATEST",
                    "SIZE",
                    "STATUS",
                ],
                &partitions
                    .iter()
                    .map(|(p, earliest, latest, size)| {
                        vec![
                            p.id().to_string(),
                            p.leader().to_string(),
                            join(p.replicas()),
                            join(p.isr()),
                            earliest.to_string(),
                            latest.to_string(),
                            size.to_string(),
                            partition_status(p.leader(), p.replicas(), p.isr()).to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}

fn delete(client: &ClientArgs, names: &[String]) -> CliResult {
    reachable(client)?;
    let admin = client.admin()?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = client
        .runtime()?
        .block_on(admin.delete_topics(&refs, &client.admin_options()))
        .map_err(|e| client.unreachable(e))?;
    let mut failure = None;
    for result in results {
        match result {
            Ok(name) => {
                if client.output == Output::Table {
                    println!("deleted topic {name}");
                }
            }
            Err((name, code)) => failure = Some(broker_error("deleting topic", &name, code)),
        }
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    if client.output == Output::Json {
        output::json(&json!({"deleted": names}));
    }
    Ok(())
}

fn alter_config(client: &ClientArgs, name: &str, set: &[String], delete: &[String]) -> CliResult {
    if set.is_empty() && delete.is_empty() {
        return Err(CliError::Usage(
            "give at least one --set KEY=VALUE or --delete KEY".into(),
        ));
    }
    reachable(client)?;
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    for item in set {
        let (key, value) = key_value(item)?;
        changes.push((key, Some(value)));
    }
    changes.extend(delete.iter().map(|key| (key.clone(), None)));
    raw::alter_configs(client, raw::TOPIC, name, &changes)?;
    match client.output {
        Output::Json => output::json(&json!({
            "name": name,
            "set": changes.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect::<BTreeMap<_, _>>(),
            "deleted": delete,
        })),
        Output::Table => println!("changed configs of topic {name}"),
    }
    Ok(())
}

fn add_partitions(client: &ClientArgs, name: &str, num: usize) -> CliResult {
    let consumer = client.consumer(None)?;
    let metadata = client.metadata(&consumer, Some(name))?;
    let current = metadata
        .topics()
        .iter()
        .find(|topic| topic.name() == name && topic.error().is_none())
        .map(|topic| topic.partitions().len())
        .filter(|count| *count > 0)
        .ok_or_else(|| unknown_topic(name))?;
    let admin = client.admin()?;
    let grow = NewPartitions::new(name, current + num);
    let results = client
        .runtime()?
        .block_on(admin.create_partitions([&grow], &client.admin_options()))
        .map_err(|e| client.unreachable(e))?;
    for result in results {
        result.map_err(|(_, code)| broker_error("adding partitions to topic", name, code))?;
    }
    match client.output {
        Output::Json => output::json(&json!({"name": name, "partitions": current + num})),
        Output::Table => println!("topic {name} now has {} partitions", current + num),
    }
    Ok(())
}

/// A partition's health as `kafka-topics.sh --describe` filters it: no
/// leader is offline, fewer in-sync replicas than replicas under-replicated.
fn partition_status(leader: i32, replicas: &[i32], isr: &[i32]) -> &'static str {
    if leader < 0 {
        "offline"
    } else if isr.len() < replicas.len() {
        "under-replicated"
    } else {
        "ok"
    }
}

#[cfg(test)]
mod status_tests {
    #[test]
    fn partitions_are_ok_under_replicated_or_offline() {
        use super::partition_status;
        assert_eq!(partition_status(1, &[1, 2, 3], &[1, 2, 3]), "ok");
        assert_eq!(partition_status(1, &[1, 2, 3], &[1, 3]), "under-replicated");
        assert_eq!(partition_status(-1, &[1, 2, 3], &[]), "offline");
    }
}
