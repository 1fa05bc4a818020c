//! Strom's schema registry: Confluent's Schema Registry REST API, served
//! by `strom serve`, with the schemas kept in the cluster's `_schemas`
//! topic in Confluent's record formats.
//!
//! * [`registry`]: the state and the decisions, pure: replaying `_schemas`
//!   records, registering (ids, versions, compatibility), lookups;
//! * [`avro`]: Avro schemas (checked and compared with `apache-avro`);
//! * [`records`]: the `_schemas` keys and values;
//! * [`http`]: the REST API (axum), writing through a [`http::Store`] that
//!   the binary backs with the topic.

pub mod avro;
pub mod http;
pub mod records;
pub mod registry;

pub use http::{serve, Service, Store};
pub use registry::Registry;
