//! `strom cluster`: info and broker configs.

use clap::{Args, Subcommand};
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeClusterResponse};
use serde_json::json;

use crate::client::{key_value, CliError, CliResult, ClientArgs, Output};
use crate::output;
use crate::raw::{self, RawClient};

/// The cluster: brokers, controller, and broker configs.
///
/// Examples:
///   strom cluster info
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
    /// Cluster id, controller, brokers and the number of topics.
    ///
    /// Examples:
    ///   strom cluster info
    ///   strom cluster info -o json --bootstrap kafka-1:9092
    #[command(verbatim_doc_comment)]
    Info,
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
    match client.output {
        Output::Json => output::json(&json!({
            "cluster_id": cluster.cluster_id.as_str(),
            "controller": cluster.controller_id.0,
            "brokers": brokers.iter().map(|(id, host, port)| json!({"id": id, "host": host, "port": port})).collect::<Vec<_>>(),
            "topics": topics,
            "client_version": env!("CARGO_PKG_VERSION"),
        })),
        Output::Table => {
            println!("cluster id: {}", cluster.cluster_id.as_str());
            println!("controller: {}", cluster.controller_id.0);
            println!("topics: {topics}");
            println!("strom client: {}", env!("CARGO_PKG_VERSION"));
            println!();
            output::table(
                &["BROKER", "HOST", "PORT"],
                &brokers
                    .iter()
                    .map(|(id, host, port)| vec![id.to_string(), host.clone(), port.to_string()])
                    .collect::<Vec<_>>(),
            );
        }
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
