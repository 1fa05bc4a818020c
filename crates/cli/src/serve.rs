//! `strom serve`: run a broker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use strom_broker::configs::BrokerOverrides;
use strom_broker::BrokerConfig;

/// Run a broker until Ctrl-C or SIGTERM: a one-node cluster by default, or
/// one node of a cluster.
///
/// With no options it serves 127.0.0.1:9092 and keeps data in ./strom-data,
/// as a cluster of one (its own controller quorum).
/// Settings come from, in rising priority: built-in defaults, the TOML file
/// given with --config, --set, and the other flags. Kafka's names work in
/// --set and in the file's [broker] table too (node.id, process.roles,
/// controller.quorum.voters, listeners, advertised.listeners, log.dirs).
///
/// Examples:
///   strom serve
///   strom serve --data-dir /var/lib/strom --listeners 0.0.0.0:9092 --advertised-listeners broker1:9092
///   strom serve --set num.partitions=6 --set log.retention.ms=86400000
///   strom serve --config strom.toml
///
/// A three-node cluster, every node a broker and a controller quorum voter
/// (run one line per machine, or per data directory on one machine):
///   strom serve --node-id 1 --listeners 127.0.0.1:9092 --controller-listener 127.0.0.1:9093 \
///     --controller-quorum-voters 1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293 --data-dir d1
///   strom serve --node-id 2 --listeners 127.0.0.1:9192 --controller-listener 127.0.0.1:9193 \
///     --controller-quorum-voters 1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293 --data-dir d2
///   (and node 3 alike). A broker-only node adds --process-roles broker and
///   names the same voters.
///
/// A config file looks like:
///   node_id = 1
///   data_dir = "/var/lib/strom"
///   listeners = "0.0.0.0:9092"
///   advertised_listeners = "broker1:9092"
///   controller_listener = "0.0.0.0:9093"
///   controller_quorum_voters = "1@broker1:9093,2@broker2:9093,3@broker3:9093"
///   [broker]                      # Kafka broker configs, by Kafka's names
///   "num.partitions" = 6
///   "log.retention.ms" = 86400000
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where partitions and cluster metadata live [default: ./strom-data].
    #[arg(long, value_name = "DIR", env = "STROM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on, host:port; port 0 picks a free port [default: 127.0.0.1:9092].
    #[arg(long, value_name = "HOST:PORT")]
    listeners: Option<String>,
    /// Address clients should connect to, if not the listener's.
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listeners: Option<String>,
    /// This broker's node id (node.id) [default: 1].
    #[arg(long, value_name = "ID")]
    node_id: Option<i32>,
    /// Where this node's controller listener binds, host:port
    /// [default: this node's address in --controller-quorum-voters].
    #[arg(long, value_name = "HOST:PORT")]
    controller_listener: Option<String>,
    /// The controller quorum (controller.quorum.voters), e.g.
    /// 1@host1:9093,2@host2:9093,3@host3:9093 [default: this node alone].
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    controller_quorum_voters: Option<String>,
    /// broker,controller (a quorum voter) or broker (follows the voters)
    /// (process.roles) [default: broker,controller].
    #[arg(long, value_name = "ROLES")]
    process_roles: Option<String>,
    /// A Kafka broker config, e.g. num.partitions=3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Where the Confluent-compatible schema registry listens, host:port,
    /// or `none` to turn it off [default: 127.0.0.1:8081].
    #[arg(long, value_name = "HOST:PORT|none")]
    schema_registry_listener: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    node_id: Option<i32>,
    data_dir: Option<PathBuf>,
    listeners: Option<String>,
    advertised_listeners: Option<String>,
    controller_listener: Option<String>,
    controller_quorum_voters: Option<String>,
    process_roles: Option<String>,
    schema_registry_listener: Option<String>,
    #[serde(default)]
    broker: BTreeMap<String, toml::Value>,
}

fn toml_to_string(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// What `strom serve` runs: the broker, and where the schema registry
/// listens (`None`: off).
struct ServeConfig {
    broker: BrokerConfig,
    schema_registry: Option<String>,
}

fn build_config(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let file: ConfigFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid", path.display()))?
        }
        None => ConfigFile::default(),
    };
    let mut config = BrokerConfig::default();
    let mut overrides: BTreeMap<String, String> = file
        .broker
        .iter()
        .map(|(key, value)| (key.clone(), toml_to_string(value)))
        .collect();
    for setting in &args.set {
        let Some((key, value)) = setting.split_once('=') else {
            bail!("--set takes KEY=VALUE, e.g. --set num.partitions=3; got '{setting}'");
        };
        overrides.insert(key.trim().to_string(), value.trim().to_string());
    }
    // Kafka's names for the settings that have their own flags.
    let mut kafka = |name: &str| overrides.remove(name);
    let kafka_node_id = match kafka("node.id").or_else(|| kafka("broker.id")) {
        Some(id) => Some(
            id.parse::<i32>()
                .ok()
                .filter(|id| *id >= 0)
                .with_context(|| format!("node.id must be a non-negative integer, not '{id}'"))?,
        ),
        None => None,
    };
    let kafka_data_dir = kafka("log.dirs").or_else(|| kafka("log.dir"));
    let kafka_listeners = kafka("listeners");
    let kafka_advertised = kafka("advertised.listeners");
    let kafka_voters = kafka("controller.quorum.voters");
    let kafka_roles = kafka("process.roles");
    config.overrides = BrokerOverrides::from_static(overrides);
    if let Some(node_id) = args.node_id.or(kafka_node_id).or(file.node_id) {
        config.node_id = node_id;
    }
    if let Some(dir) = args
        .data_dir
        .clone()
        .or(kafka_data_dir.map(PathBuf::from))
        .or(file.data_dir)
    {
        config.data_dir = dir;
    }
    if let Some(listener) = args
        .listeners
        .clone()
        .or(kafka_listeners)
        .or(file.listeners)
    {
        config.listener = listener;
    }
    config.advertised_listener = args
        .advertised_listeners
        .clone()
        .or(kafka_advertised)
        .or(file.advertised_listeners);
    config.controller_listener = args
        .controller_listener
        .clone()
        .or(file.controller_listener);
    if let Some(voters) = args
        .controller_quorum_voters
        .clone()
        .or(kafka_voters)
        .or(file.controller_quorum_voters)
    {
        config.quorum_voters = strom_broker::parse_voters(&voters).map_err(anyhow::Error::msg)?;
    }
    if let Some(roles) = args
        .process_roles
        .clone()
        .or(kafka_roles)
        .or(file.process_roles)
    {
        config.roles = strom_broker::ProcessRoles::parse(&roles).map_err(anyhow::Error::msg)?;
    }
    config.check_cluster().map_err(anyhow::Error::msg)?;
    let schema_registry = args
        .schema_registry_listener
        .clone()
        .or(file.schema_registry_listener)
        .unwrap_or_else(|| DEFAULT_SCHEMA_REGISTRY.to_string());
    Ok(ServeConfig {
        broker: config,
        schema_registry: (!schema_registry.eq_ignore_ascii_case("none")).then_some(schema_registry),
    })
}

/// Info from Strom; nothing from openraft, which logs every failed retry to
/// an unreachable voter (several a second while one is down). The quorum
/// logs leadership changes and storage failures itself; `STROM_LOG=info,openraft=warn`
/// shows openraft's view when debugging the quorum.
const DEFAULT_LOG_FILTER: &str = "info,openraft=off";
const DEFAULT_SCHEMA_REGISTRY: &str = "127.0.0.1:8081";

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STROM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let ServeConfig {
        broker: config,
        schema_registry,
    } = build_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strom")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let registry = match &schema_registry {
            Some(address) => Some(crate::schema_registry::bind(address).await?),
            None => None,
        };
        let running = strom_broker::start(config).await?;
        let broker = &running.broker;
        let registry = match registry {
            Some(listener) => {
                let address = listener.local_addr()?;
                crate::schema_registry::start(broker, listener);
                Some(address)
            }
            None => None,
        };
        let topics = broker.topics.all_topics().len();
        println!(
            "strom {} — Kafka-compatible event streaming",
            env!("CARGO_PKG_VERSION")
        );
        println!(
            "  listening on {} (clients connect to {}:{})",
            running.local_addr, broker.advertised_host, broker.advertised_port
        );
        println!(
            "  data in {} ({topics} topics, {})",
            broker.config.data_dir.display(),
            if running.new_data_dir {
                "new data directory"
            } else if running.recovered_after_crash {
                "recovered after an unclean shutdown"
            } else {
                "clean start"
            }
        );
        println!(
            "  node {} of cluster {}",
            broker.node_id(),
            broker.cluster_id()
        );
        if let Some(address) = registry {
            println!("  schema registry on http://{address}");
        }
        println!("  stop with Ctrl-C");
        wait_for_signal().await;
        println!("strom: shutting down");
        running.shutdown().await?;
        println!("strom: stopped cleanly");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate());
    match terminate {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
