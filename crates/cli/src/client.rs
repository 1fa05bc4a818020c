//! What every client command shares: connection settings, the error type
//! with its exit codes, and waiting for the cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::metadata::Metadata;
use rdkafka::ClientConfig;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// One JSON document (JSON lines for `consume`) for programs.
    Json,
}

/// Options of every command that talks to a cluster.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// A broker to bootstrap from, host:port.
    #[arg(
        long,
        global = true,
        env = "STROM_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    pub output: Output,
    /// A file of client properties, `key=value` per line (Kafka's names:
    /// security.protocol, sasl.mechanism, ...), as Kafka's tools take it.
    #[arg(long = "command-config", global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// A client property, e.g. -X socket.timeout.ms=5000 (repeatable).
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// How long to wait for the cluster, e.g. 10s, 500ms.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "ms"), |at| text.split_at(at));
    let value: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 10s or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("'{text}' is not a duration like 10s or 500ms")),
    }
}

/// An error with the exit code it deserves.
#[derive(Debug)]
pub enum CliError {
    /// The cluster refused or failed the operation (exit 1).
    Failed(String),
    /// The arguments do not make sense (exit 2).
    Usage(String),
    /// The cluster could not be reached (exit 3).
    Unreachable(String),
}

impl CliError {
    pub fn exit(self) -> ExitCode {
        let (code, message) = match self {
            CliError::Failed(message) => (1, message),
            CliError::Usage(message) => (2, message),
            CliError::Unreachable(message) => (3, message),
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> CliError {
        CliError::Failed(error.to_string())
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

impl ClientArgs {
    /// librdkafka configuration from the flags, the config file and -X.
    pub fn client_config(&self) -> CliResult<ClientConfig> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config.set(
            "socket.timeout.ms",
            self.timeout.as_millis().max(10).to_string(),
        );
        config.set("log_level", "3");
        if let Some(path) = &self.config_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Usage(format!(
                    "cannot read --command-config {}: {e}",
                    path.display()
                ))
            })?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let (key, value) = line.split_once('=').ok_or_else(|| {
                    CliError::Usage(format!("{}: '{line}' is not key=value", path.display()))
                })?;
                config.set(key.trim(), value.trim());
            }
        }
        for property in &self.properties {
            let (key, value) = property
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("-X takes key=value, not '{property}'")))?;
            config.set(key.trim(), value.trim());
        }
        Ok(config)
    }

    pub fn admin(&self) -> CliResult<AdminClient<DefaultClientContext>> {
        self.client_config()?
            .create()
            .map_err(|e| CliError::Usage(format!("invalid client configuration: {e}")))
    }

    /// A consumer for metadata, watermarks and offsets (no group unless given).
    pub fn consumer(&self, group: Option<&str>) -> CliResult<BaseConsumer> {
        let mut config = self.client_config()?;
        config.set("group.id", group.unwrap_or("strom-cli"));
        config.set("enable.auto.commit", "false");
        config.set("enable.auto.offset.store", "false");
        config
            .create()
            .map_err(|e| CliError::Usage(format!("invalid client configuration: {e}")))
    }

    /// Cluster metadata (one topic or all), or exit 3 if nobody answers.
    pub fn metadata(&self, consumer: &BaseConsumer, topic: Option<&str>) -> CliResult<Metadata> {
        use rdkafka::consumer::Consumer;
        consumer
            .fetch_metadata(topic, self.timeout)
            .map_err(|error| self.unreachable(error))
    }

    pub fn unreachable(&self, error: impl std::fmt::Display) -> CliError {
        CliError::Unreachable(format!(
            "cannot reach the cluster at {} ({error}); is `strom serve` running? Point to it with --bootstrap or STROM_BOOTSTRAP",
            self.bootstrap
        ))
    }

    pub fn runtime(&self) -> CliResult<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))
    }

    pub fn admin_options(&self) -> rdkafka::admin::AdminOptions {
        rdkafka::admin::AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }
}

/// Splits `key=value`.
pub fn key_value(text: &str) -> CliResult<(String, String)> {
    text.split_once('=')
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .ok_or_else(|| CliError::Usage(format!("expected key=value, not '{text}'")))
}
