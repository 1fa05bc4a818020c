//! The records of the `_schemas` topic, in Confluent's formats, so that a
//! Confluent registry's topic can be read here and this one's read there.
//! Keys are JSON with a fixed field order (compaction compares key bytes).

use serde::{Deserialize, Serialize};

pub const TOPIC: &str = "_schemas";

/// A record's key, as Confluent writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "keytype", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Key {
    Schema {
        subject: String,
        version: i32,
        magic: i32,
    },
    Config {
        subject: Option<String>,
        magic: i32,
    },
    #[serde(other)]
    Other,
}

/// A schema reference: a named type another subject's version defines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// The value of a `SCHEMA` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValue {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub schema: String,
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    #[serde(default)]
    pub deleted: bool,
}

/// The value of a `CONFIG` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigValue {
    #[serde(rename = "compatibilityLevel")]
    pub compatibility_level: String,
}

/// A record to append: key and value bytes (`None` deletes the key).
pub type Record = (Vec<u8>, Option<Vec<u8>>);

pub fn encode(key: &Key, value: Option<&impl Serialize>) -> Record {
    (
        serde_json::to_vec(key).expect("plain data"),
        value.map(|value| serde_json::to_vec(value).expect("plain data")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys and values as a Confluent registry writes them.
    #[test]
    fn confluents_records_are_read_and_written_alike() {
        let key = br#"{"keytype":"SCHEMA","subject":"orders-value","version":1,"magic":1}"#;
        let parsed: Key = serde_json::from_slice(key).unwrap();
        assert_eq!(
            parsed,
            Key::Schema {
                subject: "orders-value".into(),
                version: 1,
                magic: 1
            }
        );
        assert_eq!(serde_json::to_vec(&parsed).unwrap(), key.to_vec());
        let value = br#"{"subject":"orders-value","version":1,"id":21,"schema":"\"string\"","deleted":false}"#;
        let parsed: SchemaValue = serde_json::from_slice(value).unwrap();
        assert_eq!((parsed.id, parsed.schema_type.as_deref()), (21, None));
        assert_eq!(serde_json::to_vec(&parsed).unwrap(), value.to_vec());
        let config: Key =
            serde_json::from_slice(br#"{"keytype":"CONFIG","subject":null,"magic":0}"#).unwrap();
        assert_eq!(
            config,
            Key::Config {
                subject: None,
                magic: 0
            }
        );
        let noop: Key = serde_json::from_slice(br#"{"keytype":"NOOP","magic":0}"#).unwrap();
        assert_eq!(noop, Key::Other);
    }
}
