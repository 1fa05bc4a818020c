//! The broker's own settings, as `strom serve` assembles them from defaults,
//! the TOML config file and flags.

use std::collections::BTreeMap;
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
    /// `process.roles`: whether this node is one of the controller quorum's
    /// voters too. Every Strom node runs a broker.
    pub roles: ProcessRoles,
    /// `controller.quorum.voters`: the controller quorum, node id to
    /// `host:port` of its controller listener. Empty: this node alone is
    /// the quorum (the zero-config one-node cluster).
    pub quorum_voters: BTreeMap<i32, String>,
    /// Where this node's controller listener binds, `host:port`; `None`
    /// takes this node's address in `quorum_voters`.
    pub controller_listener: Option<String>,
}

/// Kafka's `process.roles`, as far as Strom has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessRoles {
    /// `broker`: follows the controller quorum, does not vote.
    Broker,
    /// `broker,controller`: a broker and a controller quorum voter.
    BrokerController,
}

impl ProcessRoles {
    pub fn parse(roles: &str) -> Result<ProcessRoles, String> {
        let mut broker = false;
        let mut controller = false;
        for role in roles.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role.to_ascii_lowercase().as_str() {
                "broker" => broker = true,
                "controller" => controller = true,
                other => {
                    return Err(format!(
                        "process.roles: unknown role '{other}'; use broker or broker,controller"
                    ))
                }
            }
        }
        match (broker, controller) {
            (true, true) => Ok(ProcessRoles::BrokerController),
            (true, false) => Ok(ProcessRoles::Broker),
            (false, true) => Err("process.roles=controller: a Strom node always runs a broker; use broker,controller".to_string()),
            (false, false) => Err("process.roles is empty; use broker or broker,controller".to_string()),
        }
    }

    pub fn is_voter(self) -> bool {
        self == ProcessRoles::BrokerController
    }
}

/// Parses Kafka's `controller.quorum.voters`: `id@host:port,...`.
pub fn parse_voters(voters: &str) -> Result<BTreeMap<i32, String>, String> {
    let mut parsed = BTreeMap::new();
    for voter in voters.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let bad = || {
            format!("controller.quorum.voters: '{voter}' must look like ID@HOST:PORT, e.g. 1@127.0.0.1:9093")
        };
        let (id, address) = voter.split_once('@').ok_or_else(bad)?;
        let id: i32 = id.trim().parse().map_err(|_| bad())?;
        if id < 0 {
            return Err(bad());
        }
        let (host, port) = parse_listener(address).map_err(|_| bad())?;
        if port == 0 {
            return Err(format!(
                "controller.quorum.voters: voter {id} needs a fixed port, not 0"
            ));
        }
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        if parsed.insert(id, address).is_some() {
            return Err(format!("controller.quorum.voters names node {id} twice"));
        }
    }
    if parsed.is_empty() {
        return Err(
            "controller.quorum.voters is empty; name at least one voter as ID@HOST:PORT"
                .to_string(),
        );
    }
    Ok(parsed)
}

impl BrokerConfig {
    /// Checks the cluster settings against each other; the error says what
    /// to change.
    pub fn check_cluster(&self) -> Result<(), String> {
        if self.quorum_voters.is_empty() {
            if self.roles == ProcessRoles::Broker {
                return Err("process.roles=broker needs --controller-quorum-voters to name the controllers to follow".to_string());
            }
            return Ok(());
        }
        let voter = self.quorum_voters.contains_key(&self.node_id);
        match self.roles {
            ProcessRoles::BrokerController if !voter => Err(format!(
                "node {} is a controller (process.roles=broker,controller) but not in --controller-quorum-voters; add {}@HOST:PORT or start it with process.roles=broker",
                self.node_id, self.node_id
            )),
            ProcessRoles::Broker if voter => Err(format!(
                "node {} is listed in --controller-quorum-voters but process.roles=broker; a voter must be broker,controller",
                self.node_id
            )),
            _ => Ok(()),
        }
    }

    /// The address this node's controller listener binds, if it has one.
    pub fn controller_address(&self) -> Option<String> {
        self.controller_listener
            .clone()
            .or_else(|| self.quorum_voters.get(&self.node_id).cloned())
    }
}

impl Default for BrokerConfig {
    fn default() -> BrokerConfig {
        BrokerConfig {
            node_id: 1,
            data_dir: PathBuf::from("./strom-data"),
            listener: "127.0.0.1:9092".to_string(),
            advertised_listener: None,
            overrides: BrokerOverrides::default(),
            roles: ProcessRoles::BrokerController,
            quorum_voters: BTreeMap::new(),
            controller_listener: None,
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

    #[test]
    fn quorum_voters_and_roles_parse_and_are_checked_together() {
        let voters = parse_voters("1@127.0.0.1:9093, 2@localhost:9094,3@[::1]:9095").unwrap();
        assert_eq!(voters[&1], "127.0.0.1:9093");
        assert_eq!(voters[&3], "[::1]:9095");
        for bad in ["", "1", "x@h:1", "1@h", "1@h:0", "1@h:1,1@h:2", "-1@h:1"] {
            assert!(parse_voters(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ProcessRoles::parse("broker, controller").unwrap(),
            ProcessRoles::BrokerController
        );
        assert_eq!(ProcessRoles::parse("broker").unwrap(), ProcessRoles::Broker);
        assert!(ProcessRoles::parse("controller").is_err());
        assert!(ProcessRoles::parse("leader").is_err());

        let mut config = BrokerConfig::default();
        assert!(
            config.check_cluster().is_ok(),
            "zero-config is a quorum of one"
        );
        config.quorum_voters = voters;
        config.node_id = 2;
        assert!(config.check_cluster().is_ok());
        assert_eq!(config.controller_address().unwrap(), "localhost:9094");
        config.node_id = 4;
        assert!(config
            .check_cluster()
            .unwrap_err()
            .contains("not in --controller-quorum-voters"));
        config.roles = ProcessRoles::Broker;
        assert!(
            config.check_cluster().is_ok(),
            "a broker-only node follows the voters"
        );
        config.node_id = 1;
        assert!(config.check_cluster().is_err());
    }
}
