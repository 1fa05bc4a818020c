//! `strom group`: list, describe, delete, reset-offsets.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::client::{CliError, CliResult, ClientArgs, Output};
use crate::output;

/// Inspect and manage consumer groups.
///
/// Examples:
///   strom group list
///   strom group describe billing
///   strom group reset-offsets billing --topic orders --to earliest --execute
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// List groups with their state.
    ///
    /// Examples:
    ///   strom group list
    ///   strom group list -o json
    #[command(verbatim_doc_comment)]
    List,
    /// Members, assignments, committed offsets and lag.
    ///
    /// Examples:
    ///   strom group describe billing
    #[command(verbatim_doc_comment)]
    Describe { group: String },
    /// Delete groups that have no members, with their offsets.
    ///
    /// Examples:
    ///   strom group delete old-billing
    #[command(verbatim_doc_comment)]
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets (dry run unless --execute).
    ///
    /// The group must have no running members.
    ///
    /// Examples:
    ///   strom group reset-offsets billing --topic orders --to earliest
    ///   strom group reset-offsets billing --topic orders --to shift:-100 --execute
    ///   strom group reset-offsets billing --topic orders --to timestamp:1700000000000 --execute
    #[command(verbatim_doc_comment)]
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// earliest, latest, offset:N, timestamp:MS or shift:N.
        #[arg(long, allow_hyphen_values = true)]
        to: String,
        /// Apply the new offsets (without it, only shows them).
        #[arg(long)]
        execute: bool,
    },
}

pub fn run(args: GroupArgs, client: &ClientArgs) -> CliResult {
    match args.command {
        GroupCommand::List => list(client),
        GroupCommand::Describe { group } => describe(client, &group),
        GroupCommand::Delete { groups } => delete(client, &groups),
        GroupCommand::ResetOffsets {
            group,
            topic,
            to,
            execute,
        } => reset(client, &group, &topic, &to, execute),
    }
}

fn list(client: &ClientArgs) -> CliResult {
    let consumer = client.consumer(None)?;
    client.metadata(&consumer, None)?;
    let rows = crate::raw::list_groups(client)?;
    match client.output {
        Output::Json => output::json(&json!(rows
            .iter()
            .map(|(group, state, kind)| json!({"group": group, "state": state, "type": kind}))
            .collect::<Vec<_>>())),
        Output::Table => output::table(
            &["GROUP", "STATE", "TYPE"],
            &rows
                .iter()
                .map(|(g, s, t)| vec![g.clone(), s.clone(), t.clone()])
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

/// Committed offsets of `group` for every partition of the given topics.
fn committed(
    client: &ClientArgs,
    group: &str,
    topics: &BTreeMap<String, i32>,
) -> CliResult<Vec<(String, i32, Option<i64>)>> {
    let consumer = client.consumer(Some(group))?;
    let mut query = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for partition in 0..*partitions {
            query.add_partition(topic, partition);
        }
    }
    let offsets = consumer
        .committed_offsets(query, client.timeout)
        .map_err(|e| client.unreachable(e))?;
    Ok(offsets
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            (e.topic().to_string(), e.partition(), offset)
        })
        .collect())
}

fn describe(client: &ClientArgs, group: &str) -> CliResult {
    let consumer = client.consumer(None)?;
    let metadata = client.metadata(&consumer, None)?;
    let groups = consumer
        .fetch_group_list(Some(group), client.timeout)
        .map_err(|e| client.unreachable(e))?;
    let info = groups.groups().iter().find(|g| g.name() == group);
    let state = info.map_or("Dead".to_string(), |g| g.state().to_string());
    let topics: BTreeMap<String, i32> = metadata
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect();
    let offsets: Vec<(String, i32, i64, i64, i64)> = committed(client, group, &topics)?
        .into_iter()
        .filter_map(|(topic, partition, offset)| {
            let offset = offset?;
            let (_, end) = consumer
                .fetch_watermarks(&topic, partition, client.timeout)
                .ok()?;
            Some((topic, partition, offset, end, (end - offset).max(0)))
        })
        .collect();
    if info.is_none() && offsets.is_empty() {
        return Err(CliError::Failed(format!(
            "group '{group}' does not exist; `strom group list` shows the groups"
        )));
    }
    let members: Vec<(String, String, String, String)> = info
        .map(|g| {
            g.members()
                .iter()
                .map(|m| {
                    let assigned = m.assignment().map(describe_assignment).unwrap_or_default();
                    (
                        m.id().to_string(),
                        m.client_id().to_string(),
                        m.client_host().to_string(),
                        assigned,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let total: i64 = offsets.iter().map(|o| o.4).sum();
    match client.output {
        Output::Json => output::json(&json!({
            "group": group,
            "state": state,
            "members": members.iter().map(|(id, client_id, host, assigned)| json!({
                "member_id": id, "client_id": client_id, "host": host, "assignment": assigned
            })).collect::<Vec<_>>(),
            "offsets": offsets.iter().map(|(topic, partition, committed, end, lag)| json!({
                "topic": topic, "partition": partition, "committed": committed, "end": end, "lag": lag
            })).collect::<Vec<_>>(),
            "total_lag": total,
        })),
        Output::Table => {
            println!("group: {group}");
            println!("state: {state}");
            println!("members: {}", members.len());
            if !members.is_empty() {
                println!();
                output::table(
                    &["MEMBER", "CLIENT", "HOST", "ASSIGNMENT"],
                    &members
                        .iter()
                        .map(|(a, b, c, d)| vec![a.clone(), b.clone(), c.clone(), d.clone()])
                        .collect::<Vec<_>>(),
                );
            }
            println!();
            output::table(
                &["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"],
                &offsets
                    .iter()
                    .map(|(t, p, c, e, l)| {
                        vec![
                            t.clone(),
                            p.to_string(),
                            c.to_string(),
                            e.to_string(),
                            l.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            println!();
            println!("total lag: {total}");
        }
    }
    Ok(())
}

/// A consumer protocol assignment as `topic:0,1,2 ...`.
fn describe_assignment(bytes: &[u8]) -> String {
    use kafka_protocol::protocol::Decodable;
    if bytes.len() < 2 {
        return String::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut body = bytes::Bytes::copy_from_slice(&bytes[2..]);
    match kafka_protocol::messages::ConsumerProtocolAssignment::decode(
        &mut body,
        version.clamp(0, 3),
    ) {
        Ok(assignment) => assignment
            .assigned_partitions
            .iter()
            .map(|tp| {
                let partitions: Vec<String> = tp.partitions.iter().map(i32::to_string).collect();
                format!("{}:{}", tp.topic.as_str(), partitions.join(","))
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => String::new(),
    }
}

fn delete(client: &ClientArgs, groups: &[String]) -> CliResult {
    let consumer = client.consumer(None)?;
    client.metadata(&consumer, None)?;
    let admin = client.admin()?;
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    let results = client
        .runtime()?
        .block_on(admin.delete_groups(&refs, &client.admin_options()))
        .map_err(|e| client.unreachable(e))?;
    let mut failure = None;
    for result in results {
        match result {
            Ok(group) => {
                if client.output == Output::Table {
                    println!("deleted group {group}");
                }
            }
            Err((group, code)) => {
                let hint = match code {
                    rdkafka::types::RDKafkaErrorCode::NonEmptyGroup => {
                        " (a group with running members cannot be deleted; stop them first)"
                    }
                    rdkafka::types::RDKafkaErrorCode::GroupIdNotFound => {
                        " (no such group; `strom group list` shows the groups)"
                    }
                    _ => "",
                };
                failure = Some(CliError::Failed(format!(
                    "deleting group '{group}' failed: {code}{hint}"
                )))
            }
        }
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    if client.output == Output::Json {
        output::json(&json!({"deleted": groups}));
    }
    Ok(())
}

/// Checks the --to syntax before anything touches the cluster.
fn check_reset_target(to: &str) -> CliResult {
    let valid = match to.split_once(':') {
        None => to == "earliest" || to == "latest",
        Some(("offset" | "timestamp" | "shift", number)) => number.parse::<i64>().is_ok(),
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "--to takes earliest, latest, offset:N, timestamp:MS or shift:N, not '{to}'"
        )))
    }
}

fn reset(client: &ClientArgs, group: &str, topic: &str, to: &str, execute: bool) -> CliResult {
    check_reset_target(to)?;
    let consumer: BaseConsumer = client.consumer(Some(group))?;
    let metadata = client.metadata(&consumer, Some(topic))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32)
        .ok_or_else(|| CliError::Failed(format!("topic '{topic}' does not exist")))?;
    let listing = consumer
        .fetch_group_list(Some(group), client.timeout)
        .map_err(|e| client.unreachable(e))?;
    if listing
        .groups()
        .iter()
        .any(|g| g.name() == group && !g.members().is_empty())
    {
        return Err(CliError::Failed(format!(
            "group '{group}' has running members; stop them before resetting its offsets"
        )));
    }
    let current = committed(
        client,
        group,
        &BTreeMap::from([(topic.to_string(), partitions)]),
    )?;
    let usage = || {
        CliError::Usage(format!(
            "--to takes earliest, latest, offset:N, timestamp:MS or shift:N, not '{to}'"
        ))
    };
    let mut plan = Vec::new();
    for (_, partition, committed) in current {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, client.timeout)
            .map_err(|e| client.unreachable(e))?;
        let target = match to.split_once(':') {
            None if to == "earliest" => low,
            None if to == "latest" => high,
            Some(("offset", n)) => n.parse::<i64>().map_err(|_| usage())?,
            Some(("shift", n)) => {
                committed.unwrap_or(low) + n.parse::<i64>().map_err(|_| usage())?
            }
            Some(("timestamp", ms)) => {
                let ms: i64 = ms.parse().map_err(|_| usage())?;
                let mut query = TopicPartitionList::new();
                query
                    .add_partition_offset(topic, partition, Offset::Offset(ms))
                    .map_err(|e| CliError::Failed(e.to_string()))?;
                let found = consumer
                    .offsets_for_times(query, client.timeout)
                    .map_err(|e| client.unreachable(e))?;
                match found.elements().first().map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => offset,
                    _ => high,
                }
            }
            _ => return Err(usage()),
        };
        plan.push((partition, committed, target.clamp(low, high)));
    }
    if execute {
        let mut offsets = TopicPartitionList::new();
        for (partition, _, target) in &plan {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*target))
                .map_err(|e| CliError::Failed(e.to_string()))?;
        }
        consumer.commit(&offsets, CommitMode::Sync).map_err(|e| {
            CliError::Failed(format!(
                "committing the new offsets of '{group}' failed: {e}"
            ))
        })?;
    }
    match client.output {
        Output::Json => output::json(&json!({
            "group": group, "topic": topic, "executed": execute,
            "partitions": plan.iter().map(|(p, c, t)| json!({"partition": p, "current": c, "new": t})).collect::<Vec<_>>(),
        })),
        Output::Table => {
            output::table(
                &["PARTITION", "CURRENT", "NEW"],
                &plan
                    .iter()
                    .map(|(p, c, t)| {
                        vec![
                            p.to_string(),
                            c.map_or("-".to_string(), |c| c.to_string()),
                            t.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            if execute {
                println!("offsets of group {group} reset");
            } else {
                println!("dry run: nothing changed; add --execute to apply");
            }
        }
    }
    Ok(())
}
