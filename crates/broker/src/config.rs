//! The broker's own settings, as `strom serve` assembles them from defaults,
//! the TOML config file and flags.

use std::path::PathBuf;

use crate::configs::BrokerOverrides;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`: this broker's id in the cluster.
    pub node_id: i32,
    /// Where partitions and cluster metadata live.
    pub data_dir: PathBuf,
    /// Address to listen on, `host:port`; port 0 picks a free port.
    pub listener: String,
    /// Address clients are told to connect to, `host:port`; `None` means the
    /// address actually bound.
    pub advertised_listener: Option<String>,
    /// Kafka broker configs set explicitly (`num.partitions`, `log.retention.ms`, ...).
    pub overrides: BrokerOverrides,
}

impl Default for BrokerConfig {
    fn default() -> BrokerConfig {
        BrokerConfig {
            node_id: 1,
            data_dir: PathBuf::from("./strom-data"),
            listener: "127.0.0.1:9092".to_string(),
            advertised_listener: None,
            overrides: BrokerOverrides::default(),
        }
    }
}

/// Splits `host:port`, also accepting Kafka's `PLAINTEXT://host:port` form.
pub fn parse_listener(listener: &str) -> Result<(String, u16), String> {
    let address = listener
        .split_once("://")
        .map_or(listener, |(scheme, rest)| {
            if scheme.eq_ignore_ascii_case("PLAINTEXT") {
                rest
            } else {
                listener
            }
        });
    let (host, port) = address.rsplit_once(':').ok_or_else(|| {
        format!("listener '{listener}' must look like host:port, e.g. 127.0.0.1:9092")
    })?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("listener '{listener}' has an invalid port '{port}'"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains("://") {
        return Err(format!(
            "listener '{listener}' must look like host:port (only PLAINTEXT is supported)"
        ));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_with_and_without_scheme() {
        assert_eq!(
            parse_listener("127.0.0.1:9092").unwrap(),
            ("127.0.0.1".into(), 9092)
        );
        assert_eq!(
            parse_listener("PLAINTEXT://localhost:0").unwrap(),
            ("localhost".into(), 0)
        );
        assert_eq!(parse_listener("[::1]:9092").unwrap(), ("::1".into(), 9092));
        assert!(parse_listener("SSL://host:9093").is_err());
        assert!(parse_listener("nohost").is_err());
    }
}
