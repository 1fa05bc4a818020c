//! `strom bench`: a load generator on librdkafka, for Strom or any Kafka.
//!
//! Producers send records of a chosen size (flat out or at a target rate)
//! and measure produce-ack latency; consumers read them back and measure
//! end-to-end latency from the send time stamped into each record. Live
//! lines every second, a summary at the end, and, with --broker-pid, the
//! broker's CPU seconds and peak RSS. `--limits` measures this machine's
//! own limits instead (loopback TCP over one connection, sequential writes
//! with fdatasync after each MiB) so results can be read as ratios.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::json;

use crate::client::{parse_duration, CliError, CliResult, ClientArgs, Output};

/// Measure throughput and latency against a Kafka-compatible cluster.
///
/// Examples:
///   strom bench --records 1000000 --record-size 1024 --partitions 6
///   strom bench --rate 50000 --duration 30s --consumers 1       # fixed rate, end-to-end latency
///   strom bench --consume-only --topic strom-bench              # read what is there
///   strom bench --limits --data-dir /var/lib/strom              # this machine's limits
///   strom bench --limits --rate 50000 --partitions 6 --duration 10s  # ... and fsync latency at a rate
///   strom bench --bootstrap kafka-1:9092 --acks 1 --compression lz4
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct BenchArgs {
    /// Topic to use (created with --partitions if missing).
    #[arg(long, default_value = "strom-bench")]
    topic: String,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Bytes of value per record.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records to produce (default: run for --duration).
    #[arg(long)]
    records: Option<u64>,
    /// How long to produce when --records is not given.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Records per second across producers; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumers reading the records as they arrive (end-to-end latency);
    /// with --consume-only, clients that split the partitions among them.
    #[arg(long, default_value_t = 0)]
    consumers: usize,
    /// Keys drawn from this many distinct values; 0 = no keys (spread evenly).
    #[arg(long, default_value_t = 0)]
    keys: u64,
    #[arg(long, default_value = "all")]
    acks: String,
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    in_flight: u32,
    /// Only consume the topic from the beginning and report throughput.
    #[arg(long)]
    consume_only: bool,
    /// The broker's process id, for its CPU seconds and peak RSS.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Measure this machine's limits instead of running a load; with --rate,
    /// also the latency of fdatasync'd writes at that rate into --partitions
    /// files, --record-size bytes each, for --duration.
    #[arg(long)]
    limits: bool,
    /// Where --limits writes its test file.
    #[arg(long, default_value = ".")]
    data_dir: std::path::PathBuf,
    /// Also write one line per acknowledged record to FILE: the time it was
    /// sent and the time its acknowledgement came, in microseconds since the
    /// Unix epoch (for measuring failover: the first write sent after a kill
    /// to be acknowledged). Written out every second and at the end.
    #[arg(long, value_name = "FILE")]
    ack_log: Option<std::path::PathBuf>,
}

/// Produce-ack latencies, recorded by the delivery callback.
struct Acks {
    latency: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    failed: AtomicU64,
    /// `--ack-log`: "sent acknowledged" per record, in Unix microseconds.
    log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl Acks {
    fn flush_log(&self) -> CliResult {
        if let Some(log) = &self.log {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .flush()
                .map_err(|e| CliError::Failed(format!("cannot write the ack log: {e}")))?;
        }
        Ok(())
    }
}

/// The producers' context: hands delivery reports to the shared [`Acks`].
#[derive(Clone)]
struct AckContext(Arc<Acks>);

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        let acks = &self.0;
        match result {
            Ok(message) => {
                let micros = sent.elapsed().as_micros() as u64;
                let mut latency = acks.latency.lock().unwrap_or_else(|p| p.into_inner());
                let _ = latency.record(micros.max(1));
                acks.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(log) = &acks.log {
                    // Every value starts with the time it was sent (see produce_and_consume).
                    let sent_at = message
                        .payload()
                        .and_then(|p| p.get(..8))
                        .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = writeln!(log, "{sent_at} {}", now_micros());
                }
            }
            Err(_) => {
                acks.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Percentiles in milliseconds.
fn percentiles(histogram: &Histogram<u64>) -> serde_json::Value {
    let ms = |micros: u64| micros as f64 / 1000.0;
    json!({
        "p50": ms(histogram.value_at_quantile(0.50)),
        "p99": ms(histogram.value_at_quantile(0.99)),
        "p99.9": ms(histogram.value_at_quantile(0.999)),
        "max": ms(histogram.max()),
        "count": histogram.len(),
    })
}

/// CPU seconds and RSS of a process, from /proc.
fn process_usage(pid: u32) -> Option<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ
    let cpu = (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((cpu, kib("VmRSS:") * 1024, kib("VmHWM:") * 1024))
}

pub fn run(args: BenchArgs, client: &ClientArgs) -> CliResult {
    if args.limits {
        return limits(&args, client);
    }
    let consumer = client.consumer(None)?;
    let metadata = client.metadata(&consumer, Some(&args.topic))?;
    let existing: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == args.topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    // The topic's partitions, created with --partitions if missing.
    let ids = if !existing.is_empty() {
        existing
    } else if args.consume_only {
        return Err(CliError::Failed(format!(
            "topic '{}' does not exist",
            args.topic
        )));
    } else {
        crate::raw::create_topic(client, &args.topic, args.partitions, -1, &[])?;
        (0..args.partitions).collect()
    };
    let broker_before = args.broker_pid.and_then(process_usage);
    let report = if args.consume_only {
        consume_only(&args, client, &ids)?
    } else {
        produce_and_consume(&args, client, &ids)?
    };
    let mut report = report;
    if let (Some(pid), Some((cpu_before, _, _))) = (args.broker_pid, broker_before) {
        if let Some((cpu_after, rss, peak)) = process_usage(pid) {
            report["broker"] = json!({
                "cpu_seconds": cpu_after - cpu_before,
                "rss_bytes": rss,
                "peak_rss_bytes": peak,
            });
        }
    }
    match client.output {
        Output::Json => println!("{report}"),
        Output::Table => print_summary(&report),
    }
    Ok(())
}

fn print_summary(report: &serde_json::Value) {
    println!();
    println!("== {}", report["scenario"].as_str().unwrap_or("bench"));
    println!(
        "records: {}   {:.0} records/s   {:.1} MB/s   ({:.1}s)",
        report["records"],
        report["records_per_second"].as_f64().unwrap_or(0.0),
        report["megabytes_per_second"].as_f64().unwrap_or(0.0),
        report["seconds"].as_f64().unwrap_or(0.0)
    );
    for (name, key) in [
        ("produce-ack latency", "produce_latency_ms"),
        ("end-to-end latency", "end_to_end_latency_ms"),
    ] {
        let latency = &report[key];
        if latency.is_object() {
            println!(
                "{name} (ms): p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                latency["p50"].as_f64().unwrap_or(0.0),
                latency["p99"].as_f64().unwrap_or(0.0),
                latency["p99.9"].as_f64().unwrap_or(0.0),
                latency["max"].as_f64().unwrap_or(0.0)
            );
        }
    }
    if report["broker"].is_object() {
        println!(
            "broker: {:.2} CPU seconds, RSS {:.1} MB, peak RSS {:.1} MB",
            report["broker"]["cpu_seconds"].as_f64().unwrap_or(0.0),
            report["broker"]["rss_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            report["broker"]["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1e6
        );
    }
}

/// Assigns `ids` of `topic` to `consumer`, each starting at `offset`.
fn assign(consumer: &BaseConsumer, topic: &str, ids: &[i32], offset: Offset) -> CliResult {
    let mut assignment = TopicPartitionList::new();
    for id in ids {
        assignment
            .add_partition_offset(topic, *id, offset)
            .map_err(|e| CliError::Failed(e.to_string()))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| CliError::Failed(e.to_string()))
}

fn produce_and_consume(
    args: &BenchArgs,
    client: &ClientArgs,
    ids: &[i32],
) -> CliResult<serde_json::Value> {
    let stop = Arc::new(AtomicBool::new(false));
    let consumed = Arc::new(AtomicU64::new(0));
    let end_to_end = Arc::new(Mutex::new(histogram()));
    let mut consumer_threads = Vec::new();
    for _ in 0..args.consumers {
        let consumer = client.consumer(None)?;
        assign(&consumer, &args.topic, ids, Offset::End)?;
        let (stop, consumed, end_to_end) = (stop.clone(), consumed.clone(), end_to_end.clone());
        consumer_threads.push(std::thread::spawn(move || {
            let mut local = histogram();
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    if let Some(payload) = message.payload() {
                        if payload.len() >= 8 {
                            let sent =
                                u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
                            let _ = local.record(now_micros().saturating_sub(sent).max(1));
                        }
                    }
                    consumed.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = end_to_end
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(&local);
        }));
    }
    // Let consumers reach the end of the partitions before producing.
    std::thread::sleep(Duration::from_millis(if args.consumers > 0 {
        1500
    } else {
        0
    }));

    let acks = Arc::new(Acks {
        latency: Mutex::new(histogram()),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        log: match &args.ack_log {
            Some(path) => Some(Mutex::new(std::io::BufWriter::new(
                std::fs::File::create(path).map_err(|e| {
                    CliError::Failed(format!("cannot create {}: {e}", path.display()))
                })?,
            ))),
            None => None,
        },
    });
    let mut config = client.client_config()?;
    config
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", args.linger_ms.to_string())
        .set(
            "max.in.flight.requests.per.connection",
            args.in_flight.to_string(),
        )
        .set("queue.buffering.max.kbytes", "1048576")
        .set("batch.size", "1000000");
    let producers: Vec<BaseProducer<AckContext>> = (0..args.producers.max(1))
        .map(|_| config.create_with_context(AckContext(acks.clone())))
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::Usage(format!("invalid client configuration: {e}")))?;
    let mut value = vec![b'x'; args.record_size.max(8)];
    let started = Instant::now();
    let mut sent = 0u64;
    let mut last_report = Instant::now();
    let mut last_delivered = 0u64;
    let mut key_state = 0x2545_f491_4f6c_dd1du64;
    loop {
        let done = match args.records {
            Some(records) => sent >= records,
            None => started.elapsed() >= args.duration,
        };
        if done {
            break;
        }
        if args.rate > 0 {
            let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(100));
                for producer in &producers {
                    producer.poll(Duration::ZERO);
                }
                continue;
            }
        }
        value[..8].copy_from_slice(&now_micros().to_be_bytes());
        let producer = &producers[(sent as usize) % producers.len()];
        let key = (args.keys > 0).then(|| {
            key_state ^= key_state << 13;
            key_state ^= key_state >> 7;
            key_state ^= key_state << 17;
            (key_state % args.keys).to_string()
        });
        let mut record: BaseRecord<'_, String, [u8], Box<Instant>> =
            BaseRecord::with_opaque_to(&args.topic, Box::new(Instant::now())).payload(&value[..]);
        if let Some(key) = &key {
            record = record.key(key);
        }
        match producer.send(record) {
            Ok(()) => sent += 1,
            Err((_, _)) => {
                producer.poll(Duration::from_millis(1));
                continue;
            }
        }
        if sent.is_multiple_of(1000) {
            for producer in &producers {
                producer.poll(Duration::ZERO);
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            let delivered = acks.delivered.load(Ordering::Relaxed);
            let per_second =
                (delivered - last_delivered) as f64 / last_report.elapsed().as_secs_f64();
            let latency = acks
                .latency
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .value_at_quantile(0.99);
            eprintln!(
                "{:>5.1}s  {:>9.0} records/s  {:>7.1} MB/s  produce p99 {:.2} ms",
                started.elapsed().as_secs_f64(),
                per_second,
                per_second * args.record_size as f64 / 1e6,
                latency as f64 / 1000.0
            );
            last_delivered = delivered;
            last_report = Instant::now();
            acks.flush_log()?;
        }
    }
    for producer in &producers {
        let _ = producer.flush(Duration::from_secs(60));
    }
    acks.flush_log()?;
    let produce_seconds = started.elapsed().as_secs_f64();
    if args.consumers > 0 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while consumed.load(Ordering::Relaxed) < sent * args.consumers as u64
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for thread in consumer_threads {
        let _ = thread.join();
    }
    let delivered = acks.delivered.load(Ordering::Relaxed);
    let failed = acks.failed.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("warning: {failed} records were not delivered");
    }
    let mut report = json!({
        "scenario": if args.rate > 0 { format!("produce at {} records/s", args.rate) } else { "produce flat out".to_string() },
        "records": delivered,
        "failed": failed,
        "record_size": args.record_size,
        "partitions": args.partitions,
        "acks": args.acks,
        "seconds": produce_seconds,
        "records_per_second": delivered as f64 / produce_seconds,
        "megabytes_per_second": delivered as f64 * args.record_size as f64 / produce_seconds / 1e6,
        "produce_latency_ms": percentiles(&acks.latency.lock().unwrap_or_else(|p| p.into_inner())),
    });
    if args.consumers > 0 {
        report["end_to_end_latency_ms"] =
            percentiles(&end_to_end.lock().unwrap_or_else(|p| p.into_inner()));
        report["consumed"] = json!(consumed.load(Ordering::Relaxed));
    }
    Ok(report)
}

fn consume_only(
    args: &BenchArgs,
    client: &ClientArgs,
    ids: &[i32],
) -> CliResult<serde_json::Value> {
    let mut config = client.client_config()?;
    config
        .set("group.id", "strom-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    // Fetch sizes are librdkafka's defaults (50 MiB per fetch, 1 MiB per
    // partition) unless set with -X: what an application gets.
    // --consumers N splits the partitions among N clients, each with its
    // own connection and librdkafka threads.
    let clients = args.consumers.clamp(1, ids.len().max(1));
    let mut threads = Vec::new();
    for share in 0..clients {
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| CliError::Usage(format!("invalid client configuration: {e}")))?;
        let mine: Vec<i32> = ids.iter().copied().skip(share).step_by(clients).collect();
        assign(&consumer, &args.topic, &mine, Offset::Beginning)?;
        threads.push(std::thread::spawn(move || {
            consume_to_end(&consumer, mine.len())
        }));
    }
    let mut shares = Vec::new();
    for thread in threads {
        let share = thread
            .join()
            .map_err(|_| CliError::Failed("a consumer thread panicked".into()))??;
        shares.push(share);
    }
    // Timed from the first record to the last, so neither connecting and
    // looking up offsets nor the long-poll that finally reports the end of
    // each partition counts as consuming.
    let first = shares.iter().filter_map(|s| s.first).min();
    let last = shares.iter().filter_map(|s| s.last).max();
    let records: u64 = shares.iter().map(|s| s.records).sum();
    let bytes: u64 = shares.iter().map(|s| s.bytes).sum();
    let seconds = match (first, last) {
        (Some(first), Some(last)) => (last - first).as_secs_f64().max(1e-9),
        _ => 0.0,
    };
    Ok(json!({
        "scenario": "consume from the beginning",
        "consumers": clients,
        "records": records,
        "seconds": seconds,
        "records_per_second": records as f64 / seconds,
        "megabytes_per_second": bytes as f64 / seconds / 1e6,
    }))
}

/// What one consumer read: records, value bytes, and when the first and
/// the last record arrived.
struct Share {
    records: u64,
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// Polls until each of `partitions` assigned partitions reported its end.
fn consume_to_end(consumer: &BaseConsumer, partitions: usize) -> CliResult<Share> {
    let mut share = Share {
        records: 0,
        bytes: 0,
        first: None,
        last: None,
    };
    let mut at_end = 0;
    while at_end < partitions {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                let now = Instant::now();
                share.first.get_or_insert(now);
                share.last = Some(now);
                share.records += 1;
                share.bytes += message.payload().map_or(0, <[u8]>::len) as u64;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(error)) => return Err(CliError::Failed(format!("consuming: {error}"))),
            None => {}
        }
    }
    Ok(share)
}

/// This machine's limits: loopback TCP over one connection, sequential
/// writes with fdatasync after each MiB, and, with --rate, how long a write
/// takes to become durable at that rate when each of --partitions files
/// fsyncs as soon as its previous fsync ends: the disk's own latency for
/// the load, without a broker. Measured in its own time window, it shows
/// what the disk was doing around a broker run, not a bound on that run.
fn limits(args: &BenchArgs, client: &ClientArgs) -> CliResult {
    let tcp = loopback_bandwidth()?;
    let disk = fsync_write_bandwidth(&args.data_dir)?;
    let mut report = json!({
        "loopback_tcp_megabytes_per_second": tcp,
        "fdatasync_write_megabytes_per_second": disk,
    });
    let durable = if args.rate > 0 {
        let files = args.partitions.max(1) as usize;
        let measured = durable_write_latency(
            &args.data_dir,
            files,
            args.rate,
            args.record_size.max(1),
            args.duration,
        )?;
        report["durable_write"] = json!({
            "records_per_second": args.rate,
            "record_size": args.record_size,
            "files": files,
            "latency_ms": percentiles(&measured.records),
            "request_latency_ms": percentiles(&measured.requests),
        });
        Some(measured)
    } else {
        None
    };
    match client.output {
        Output::Json => println!("{report}"),
        Output::Table => {
            println!("loopback TCP, one connection: {tcp:.0} MB/s");
            println!("sequential write, fdatasync every MiB: {disk:.0} MB/s");
            if let Some(measured) = durable {
                println!(
                    "durable writes, {} records/s of {} B in {} files:",
                    args.rate,
                    args.record_size,
                    args.partitions.max(1)
                );
                for (what, latency) in [
                    ("each record", &measured.records),
                    ("each request to all files", &measured.requests),
                ] {
                    println!(
                        "  {what:<26} p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
                        latency.value_at_quantile(0.5) as f64 / 1000.0,
                        latency.value_at_quantile(0.99) as f64 / 1000.0,
                        latency.value_at_quantile(0.999) as f64 / 1000.0,
                        latency.max() as f64 / 1000.0
                    );
                }
            }
        }
    }
    Ok(())
}

/// What the disk alone did at a rate: each record's latency, and each
/// request's: records due in the same millisecond across all files, durable
/// when the last file's fsync covering them ends (what a produce request
/// to every partition waits for).
struct DurableWrites {
    records: Histogram<u64>,
    requests: Histogram<u64>,
}

/// One fsync of one file: records of that file due before it (a count)
/// and when it ended.
#[derive(Clone, Copy)]
struct Synced {
    records: u64,
    ended: Duration,
}

/// Writes `rate` records/s of `record_size` bytes spread over `files` files
/// for `duration`. Each file has one thread that writes whatever records
/// are due and fdatasyncs, again and again (group commit at its best); a
/// record's latency runs from when it was due to the end of the fsync that
/// covered it.
fn durable_write_latency(
    dir: &std::path::Path,
    files: usize,
    rate: u64,
    record_size: usize,
    duration: Duration,
) -> CliResult<DurableWrites> {
    let per_file = rate as f64 / files as f64;
    let started = Instant::now();
    let writers: Vec<_> = (0..files)
        .map(|index| {
            let path = dir.join(format!(".strom-bench-durable-{index}"));
            std::thread::spawn(move || -> std::io::Result<(Histogram<u64>, Vec<Synced>)> {
                let mut file = std::fs::File::create(&path)?;
                let chunk = vec![5u8; 1 << 20];
                let mut latency = histogram();
                let mut syncs = Vec::new();
                let mut written = 0u64;
                let due_at = |record: u64| Duration::from_secs_f64(record as f64 / per_file);
                // Writes the records from `written` up to `due` and fsyncs.
                let mut make_durable = |written: u64, due: u64| -> std::io::Result<()> {
                    let mut bytes = (due - written) as usize * record_size;
                    while bytes > 0 {
                        let part = bytes.min(chunk.len());
                        file.write_all(&chunk[..part])?;
                        bytes -= part;
                    }
                    file.sync_data()?;
                    let durable = started.elapsed();
                    for record in written + 1..=due {
                        let micros = durable.saturating_sub(due_at(record)).as_micros() as u64;
                        let _ = latency.record(micros.max(1));
                    }
                    syncs.push(Synced {
                        records: due,
                        ended: durable,
                    });
                    Ok(())
                };
                while started.elapsed() < duration {
                    let due = (started.elapsed().as_secs_f64() * per_file) as u64;
                    if due <= written {
                        std::thread::sleep(due_at(written + 1).saturating_sub(started.elapsed()));
                        continue;
                    }
                    make_durable(written, due)?;
                    written = due;
                }
                // Whatever came due during the last fsync counts too (a stall
                // there is the slowest of all).
                let due = (duration.as_secs_f64() * per_file) as u64;
                if due > written {
                    make_durable(written, due)?;
                }
                drop(file);
                let _ = std::fs::remove_file(&path);
                Ok((latency, syncs))
            })
        })
        .collect();
    let mut records = histogram();
    let mut synced = Vec::new();
    for writer in writers {
        let (latency, syncs) = writer
            .join()
            .map_err(|_| CliError::Failed("a disk writer thread panicked".into()))??;
        let _ = records.add(&latency);
        synced.push(syncs);
    }
    // A request every millisecond, carrying the records due since the last
    // one in every file (a millisecond in which none came due sends none).
    let mut requests = histogram();
    let mut sent_before = 0;
    for millis in 1..=duration.as_millis() as u64 {
        let sent = Duration::from_millis(millis);
        let due = (sent.as_secs_f64() * per_file) as u64;
        if due == sent_before {
            continue;
        }
        sent_before = due;
        let durable = synced.iter().map(|syncs| {
            let covering = syncs.partition_point(|sync| sync.records < due);
            syncs.get(covering).map(|sync| sync.ended)
        });
        if let Some(ended) = durable.collect::<Option<Vec<_>>>() {
            let last = ended.into_iter().max().unwrap_or(sent);
            let _ = requests.record((last.saturating_sub(sent).as_micros() as u64).max(1));
        }
    }
    Ok(DurableWrites { records, requests })
}

fn loopback_bandwidth() -> CliResult<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let total: u64 = 4 << 30;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; 1 << 20];
        let mut received = 0u64;
        loop {
            let read = stream.read(&mut buffer)?;
            if read == 0 {
                return Ok(received);
            }
            received += read as u64;
        }
    });
    let mut stream = std::net::TcpStream::connect(address)?;
    let chunk = vec![7u8; 1 << 20];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        stream.write_all(&chunk)?;
        sent += chunk.len() as u64;
    }
    drop(stream);
    let received = reader
        .join()
        .map_err(|_| CliError::Failed("the loopback reader failed".into()))??;
    Ok(received as f64 / started.elapsed().as_secs_f64() / 1e6)
}

fn fsync_write_bandwidth(dir: &std::path::Path) -> CliResult<f64> {
    let path = dir.join(".strom-bench-disk");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![3u8; 1 << 20];
    let count = 512;
    let started = Instant::now();
    for _ in 0..count {
        file.write_all(&chunk)?;
        file.sync_data()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(count as f64 * chunk.len() as f64 / seconds / 1e6)
}
