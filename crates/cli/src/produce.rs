//! `strom produce`: records from stdin or a file, one per line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::client::{key_value, CliError, CliResult, ClientArgs, Output};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// Each line is a value (or key<SEP>value with --key-separator).
    Text,
    /// Each line is {"key": .., "value": .., "headers": {..}, "partition": N}.
    Json,
}

/// Write records to a topic, one per input line.
///
/// Reads stdin (or --file) until its end and prints a summary on stderr.
///
/// Examples:
///   echo 'hello' | strom produce greetings
///   printf 'alice:hi\nbob:hey\n' | strom produce greetings --key-separator :
///   strom produce orders --file orders.jsonl --format json --acks all -v
///   strom produce events --header source=cli --compression zstd < events.txt
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ProduceArgs {
    topic: String,
    /// Read records from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header for every record, key=value (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Write every record to this partition (default: by key, or spread).
    #[arg(long)]
    partition: Option<i32>,
    /// all (durable), 1 (leader wrote it) or 0 (fire and forget).
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// How input lines are read.
    #[arg(long, value_enum, default_value = "text")]
    format: InputFormat,
    /// Print the partition and offset of every record.
    #[arg(short, long)]
    verbose: bool,
}

struct Input {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    partition: Option<i32>,
}

fn parse_line(args: &ProduceArgs, line: &str, common: &[(String, String)]) -> CliResult<Input> {
    let mut headers: Vec<(String, Vec<u8>)> = common
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    match args.format {
        InputFormat::Text => {
            let (key, value) = match &args.key_separator {
                Some(separator) => match line.split_once(separator.as_str()) {
                    Some((key, value)) => {
                        (Some(key.as_bytes().to_vec()), value.as_bytes().to_vec())
                    }
                    None => (None, line.as_bytes().to_vec()),
                },
                None => (None, line.as_bytes().to_vec()),
            };
            Ok(Input {
                key,
                value,
                headers,
                partition: args.partition,
            })
        }
        InputFormat::Json => {
            let parsed: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| CliError::Usage(format!("input line is not JSON ({e}): {line}")))?;
            let text = |field: &str| {
                parsed.get(field).and_then(|v| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone().into_bytes()),
                    other => Some(other.to_string().into_bytes()),
                })
            };
            if let Some(map) = parsed.get("headers").and_then(|h| h.as_object()) {
                for (key, value) in map {
                    let value = value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_string);
                    headers.push((key.clone(), value.into_bytes()));
                }
            }
            let partition = parsed
                .get("partition")
                .and_then(|p| p.as_i64())
                .map(|p| p as i32)
                .or(args.partition);
            let value = text("value")
                .ok_or_else(|| CliError::Usage(format!("input line has no \"value\": {line}")))?;
            Ok(Input {
                key: text("key"),
                value,
                headers,
                partition,
            })
        }
    }
}

pub fn run(args: ProduceArgs, client: &ClientArgs) -> CliResult {
    let acks = match args.acks.as_str() {
        "all" | "-1" => "all",
        "1" => "1",
        "0" => "0",
        other => {
            return Err(CliError::Usage(format!(
                "--acks takes all, 1 or 0, not '{other}'"
            )))
        }
    };
    if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&args.compression.as_str()) {
        return Err(CliError::Usage(format!(
            "--compression takes none, gzip, snappy, lz4 or zstd, not '{}'",
            args.compression
        )));
    }
    let common: Vec<(String, String)> = args
        .headers
        .iter()
        .map(|h| key_value(h))
        .collect::<CliResult<_>>()?;
    let consumer = client.consumer(None)?;
    let metadata = client.metadata(&consumer, None)?;
    let exists = metadata
        .topics()
        .iter()
        .any(|t| t.name() == args.topic && !t.partitions().is_empty());
    let mut config = client.client_config()?;
    config
        .set("acks", acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            (client.timeout.as_millis().max(1000) * 3).to_string(),
        );
    if !exists {
        // Ask the broker to create it (auto.create.topics.enable), as kafka-console-producer does.
        config.set("allow.auto.create.topics", "true");
    }
    let producer: FutureProducer = config
        .create()
        .map_err(|e| CliError::Usage(format!("invalid client configuration: {e}")))?;
    let reader: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(BufReader::new(std::fs::File::open(path).map_err(|e| {
            CliError::Usage(format!("cannot read {}: {e}", path.display()))
        })?)),
        None => Box::new(BufReader::new(std::io::stdin())),
    };
    let runtime = client.runtime()?;
    let started = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut pending = std::collections::VecDeque::new();
    let mut first_error: Option<String> = None;
    let settle = |pending: &mut std::collections::VecDeque<_>,
                  limit: usize,
                  first_error: &mut Option<String>| {
        while pending.len() > limit {
            let delivery: rdkafka::producer::DeliveryFuture = pending.pop_front().expect("pending");
            match runtime.block_on(delivery) {
                Ok(Ok(delivered)) => {
                    if args.verbose && client.output == Output::Json {
                        let line = serde_json::json!({"partition": delivered.partition, "offset": delivered.offset});
                        println!("{line}");
                    } else if args.verbose {
                        println!(
                            "partition {} offset {}",
                            delivered.partition, delivered.offset
                        );
                    }
                }
                Ok(Err((error, _))) => {
                    first_error.get_or_insert(error.to_string());
                }
                Err(_) => {
                    first_error.get_or_insert("the producer was closed".to_string());
                }
            }
        }
    };
    for line in reader.lines() {
        let line = line?;
        if line.is_empty() && args.format == InputFormat::Json {
            continue;
        }
        let input = parse_line(&args, &line, &common)?;
        let mut headers = OwnedHeaders::new();
        for (key, value) in &input.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, Vec<u8>, Vec<u8>> = FutureRecord::to(&args.topic)
            .payload(&input.value)
            .headers(headers);
        if let Some(key) = &input.key {
            record = record.key(key);
        }
        if let Some(partition) = input.partition {
            record = record.partition(partition);
        }
        bytes += input.value.len() as u64 + input.key.as_ref().map_or(0, Vec::len) as u64;
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((error, returned)) => {
                    if matches!(
                        error,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ) {
                        settle(&mut pending, 0, &mut first_error);
                        record = returned;
                        continue;
                    }
                    return Err(CliError::Failed(format!(
                        "cannot send to {}: {error}",
                        args.topic
                    )));
                }
            }
        };
        pending.push_back(delivery);
        count += 1;
        settle(&mut pending, 10_000, &mut first_error);
    }
    settle(&mut pending, 0, &mut first_error);
    let _ = rdkafka::producer::Producer::flush(&producer, Timeout::After(Duration::from_secs(30)));
    if let Some(error) = first_error {
        return Err(CliError::Failed(format!(
            "producing to {} failed: {error}",
            args.topic
        )));
    }
    let elapsed = started.elapsed().as_secs_f64();
    if client.output == Output::Json {
        // One line, so that -v's JSON lines and the summary stay JSON lines.
        let summary = serde_json::json!({"topic": args.topic, "records": count, "bytes": bytes, "seconds": elapsed});
        println!("{summary}");
    }
    eprintln!(
        "produced {count} {} to {} ({bytes} bytes in {elapsed:.2}s)",
        if count == 1 { "record" } else { "records" },
        args.topic
    );
    Ok(())
}
