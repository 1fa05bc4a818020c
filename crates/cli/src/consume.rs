//! `strom consume`: read records and print them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::client::{CliError, CliResult, ClientArgs};
use crate::output::bytes_json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordFormat {
    /// The value only.
    Value,
    /// key<SEP>value (SEP: --key-separator, default a tab).
    Kv,
    /// JSON lines: topic, partition, offset, timestamp, key, value, headers
    /// (non-UTF-8 bytes as {"base64": ...}).
    Json,
}

/// Read records from a topic and print them.
///
/// By default reads every partition from the beginning and stops at the end
/// of each (--follow keeps waiting for new records).
///
/// Examples:
///   strom consume greetings
///   strom consume orders --from -10 --format json        # the last 10 of each partition
///   strom consume orders --from @1700000000000 --count 5  # from a timestamp (ms)
///   strom consume orders --partition 2 --from 1500
///   strom consume orders --group billing --follow        # as a group member, committing
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ConsumeArgs {
    topic: String,
    /// beginning, end, an offset, @TIMESTAMP_MS, or -N for the last N records.
    #[arg(long, default_value = "beginning", allow_hyphen_values = true)]
    from: String,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Consume as a member of this group (and commit what was printed).
    #[arg(long)]
    group: Option<String>,
    /// Only these partitions (repeatable).
    #[arg(long = "partition")]
    partitions: Vec<i32>,
    /// Keep waiting for new records.
    #[arg(long, overrides_with = "no_follow")]
    follow: bool,
    /// Stop at the end of every partition (the default).
    #[arg(long)]
    no_follow: bool,
    /// read_uncommitted or read_committed.
    #[arg(long, default_value = "read_uncommitted")]
    isolation: String,
    /// How each record is printed.
    #[arg(long, value_enum, default_value = "value")]
    format: RecordFormat,
    /// Separator between key and value in the kv format.
    #[arg(long, default_value = "\t")]
    key_separator: String,
}

enum Start {
    Beginning,
    End,
    Offset(i64),
    Timestamp(i64),
    Last(i64),
}

fn parse_start(text: &str) -> CliResult<Start> {
    let usage = || {
        CliError::Usage(format!(
            "--from takes beginning, end, an offset, @TIMESTAMP_MS or -N, not '{text}'"
        ))
    };
    Ok(match text {
        "beginning" | "earliest" | "oldest" => Start::Beginning,
        "end" | "latest" | "newest" => Start::End,
        _ if text.starts_with('@') => Start::Timestamp(text[1..].parse().map_err(|_| usage())?),
        _ if text.starts_with('-') => Start::Last(text[1..].parse().map_err(|_| usage())?),
        _ => Start::Offset(text.parse().map_err(|_| usage())?),
    })
}

pub fn run(args: ConsumeArgs, client: &ClientArgs) -> CliResult {
    let start = parse_start(&args.from)?;
    if !["read_uncommitted", "read_committed"].contains(&args.isolation.as_str()) {
        return Err(CliError::Usage(format!(
            "--isolation takes read_uncommitted or read_committed, not '{}'",
            args.isolation
        )));
    }
    let mut config = client.client_config()?;
    config
        .set("group.id", args.group.as_deref().unwrap_or("strom-cli"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", &args.isolation)
        .set("enable.partition.eof", "true")
        .set(
            "auto.offset.reset",
            if matches!(start, Start::End) {
                "latest"
            } else {
                "earliest"
            },
        );
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| CliError::Usage(format!("invalid client configuration: {e}")))?;
    let metadata = client.metadata(&consumer, Some(&args.topic))?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == args.topic && t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| {
            CliError::Failed(format!(
                "topic '{}' does not exist; `strom topic list` shows the topics",
                args.topic
            ))
        })?;
    let all: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    let partitions: Vec<i32> = if args.partitions.is_empty() {
        all.clone()
    } else {
        args.partitions.clone()
    };
    if let Some(missing) = partitions.iter().find(|p| !all.contains(p)) {
        return Err(CliError::Failed(format!(
            "topic '{}' has no partition {missing}",
            args.topic
        )));
    }
    // Where each partition ends now: without --follow, reading stops there.
    let mut ends = BTreeMap::new();
    let mut starts = BTreeMap::new();
    for partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&args.topic, *partition, client.timeout)
            .map_err(|e| client.unreachable(e))?;
        ends.insert(*partition, high);
        let from = match start {
            Start::Beginning => low,
            Start::End => high,
            Start::Offset(offset) => offset.clamp(low, high),
            Start::Last(count) => (high - count).max(low),
            Start::Timestamp(_) => low,
        };
        starts.insert(*partition, from);
    }
    if let Start::Timestamp(timestamp) = start {
        let mut query = TopicPartitionList::new();
        for partition in &partitions {
            query
                .add_partition_offset(&args.topic, *partition, Offset::Offset(timestamp))
                .map_err(|e| CliError::Failed(e.to_string()))?;
        }
        let found = consumer
            .offsets_for_times(query, client.timeout)
            .map_err(|e| client.unreachable(e))?;
        for element in found.elements() {
            let offset = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => ends[&element.partition()],
            };
            starts.insert(element.partition(), offset);
        }
    }
    let follow = args.follow && !args.no_follow;
    if args.group.is_some() && args.partitions.is_empty() && args.from == "beginning" {
        // As a group member: the group's committed offsets decide where to start.
        consumer
            .subscribe(&[&args.topic])
            .map_err(|e| CliError::Failed(e.to_string()))?;
    } else {
        let mut assignment = TopicPartitionList::new();
        for (partition, offset) in &starts {
            assignment
                .add_partition_offset(&args.topic, *partition, Offset::Offset(*offset))
                .map_err(|e| CliError::Failed(e.to_string()))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| CliError::Failed(e.to_string()))?;
    }
    let mut done: BTreeSet<i32> = starts
        .iter()
        .filter(|(partition, offset)| **offset >= ends[partition])
        .map(|(partition, _)| *partition)
        .collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut last_progress = Instant::now();
    loop {
        if args.count.is_some_and(|count| printed >= count) {
            break;
        }
        if !follow && done.len() == partitions.len() {
            break;
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            out.flush()?;
            if !follow && last_progress.elapsed() > client.timeout.max(Duration::from_secs(5)) {
                // Nothing more arrives (a group already at its end, say).
                break;
            }
            continue;
        };
        last_progress = Instant::now();
        let message = match result {
            Ok(message) => message,
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                done.insert(partition);
                continue;
            }
            Err(error) => {
                return Err(CliError::Failed(format!(
                    "consuming {}: {error}",
                    args.topic
                )))
            }
        };
        print_record(&mut out, &args, &message)?;
        printed += 1;
        if message.offset() + 1 >= ends.get(&message.partition()).copied().unwrap_or(i64::MAX) {
            done.insert(message.partition());
        }
        if args.group.is_some() {
            consumer
                .store_offset_from_message(&message)
                .map_err(|e| CliError::Failed(e.to_string()))?;
        }
    }
    out.flush()?;
    if args.group.is_some() && printed > 0 {
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .map_err(|e| CliError::Failed(format!("committing offsets: {e}")))?;
    }
    Ok(())
}

fn print_record(
    out: &mut impl Write,
    args: &ConsumeArgs,
    message: &rdkafka::message::BorrowedMessage<'_>,
) -> CliResult {
    match args.format {
        RecordFormat::Value => {
            out.write_all(message.payload().unwrap_or_default())?;
            out.write_all(b"\n")?;
        }
        RecordFormat::Kv => {
            out.write_all(message.key().unwrap_or_default())?;
            out.write_all(args.key_separator.as_bytes())?;
            out.write_all(message.payload().unwrap_or_default())?;
            out.write_all(b"\n")?;
        }
        RecordFormat::Json => {
            let mut headers = serde_json::Map::new();
            if let Some(all) = message.headers() {
                for header in all.iter() {
                    headers.insert(header.key.to_string(), bytes_json(header.value));
                }
            }
            let line = json!({
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
                "timestamp": message.timestamp().to_millis(),
                "key": bytes_json(message.key()),
                "value": bytes_json(message.payload()),
                "headers": headers,
            });
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
