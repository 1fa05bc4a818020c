//! `strom cluster`: info and broker configs.

use clap::{Args, Subcommand};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::ResourceSpecifier;
use serde_json::json;

use crate::client::{key_value, CliError, CliResult, ClientArgs, Output};
use crate::output;
use crate::raw::RawClient;

/// The cluster: brokers, controller, and broker configs.
#[derive(Args, Debug)]
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
    Ok(metadata.orig_broker_id())
}

fn get(client: &ClientArgs, key: Option<String>, broker: Option<i32>) -> CliResult {
    let id = broker_id(client, broker)?;
    let admin = client.admin()?;
    let results = client
        .runtime()?
        .block_on(admin.describe_configs([&ResourceSpecifier::Broker(id)], &client.admin_options()))
        .map_err(|e| client.unreachable(e))?;
    let mut entries = Vec::new();
    for resource in results {
        let resource =
            resource.map_err(|code| CliError::Failed(format!("describing broker {id}: {code}")))?;
        for entry in resource.entries {
            if key.as_ref().is_none_or(|key| *key == entry.name) {
                entries.push((
                    entry.name,
                    entry.value.unwrap_or_default(),
                    format!("{:?}", entry.source),
                ));
            }
        }
    }
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
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_string(id.to_string()))
            .with_configs(
                changes
                    .iter()
                    .map(|(key, value)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(key.clone()))
                            .with_config_operation(0)
                            .with_value(Some(StrBytes::from_string(value.clone())))
                    })
                    .collect(),
            ),
    ]);
    let mut raw = RawClient::connect(client)?;
    let response: IncrementalAlterConfigsResponse =
        raw.call(ApiKey::IncrementalAlterConfigs, 0, &request)?;
    for result in &response.responses {
        if result.error_code != 0 {
            let message = result.error_message.as_ref().map_or("", |m| m.as_str());
            return Err(CliError::Failed(format!(
                "changing broker {id} configs failed (error {}): {message}",
                result.error_code
            )));
        }
    }
    match client.output {
        Output::Json => output::json(
            &json!({"broker": id, "changed": changes.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()}),
        ),
        Output::Table => println!("changed {} config(s) of broker {id}", changes.len()),
    }
    Ok(())
}
