//! Avro schemas: checked with `apache-avro`, kept in a compact form so a
//! schema sent again with other spacing or key order is the same schema,
//! and compared with Avro's reader/writer resolution rules.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

/// The schema's text as stored and served: its JSON, compact, with object
/// keys in a fixed order. `Err` says why it is not a valid Avro schema.
pub fn canonical(text: &str) -> Result<String, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    Schema::parse(&json).map_err(|error| format!("not a valid Avro schema: {error}"))?;
    Ok(json.to_string())
}

/// Whether data written with `writer` can be read with `reader`; `Err` says
/// what stands in the way. Both are canonical texts (already valid).
pub fn can_read(reader: &str, writer: &str) -> Result<(), String> {
    let parse = |text: &str| Schema::parse_str(text).map_err(|error| error.to_string());
    resolve(&parse(writer)?, &parse(reader)?)
}

fn resolve(writer: &Schema, reader: &Schema) -> Result<(), String> {
    // The rule for a writer's union read by a reader that is not one: every
    // branch the writer may have written must be readable. `apache-avro`
    // leaves that case "inconclusive" (Java's SchemaCompatibility decides
    // it), so it is decided here at the top level; deeper inside a schema
    // it stays a refusal, which errs on the safe side.
    if let (Schema::Union(union), false) = (writer, matches!(reader, Schema::Union(_))) {
        return union
            .variants()
            .iter()
            .try_for_each(|branch| resolve(branch, reader));
    }
    SchemaCompatibility::can_read(writer, reader).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}"#;

    #[test]
    fn spacing_and_key_order_do_not_make_another_schema() {
        let spaced = r#"{ "name": "User", "type": "record",
            "fields": [ {"type": "long", "name": "id"} ] }"#;
        assert_eq!(canonical(spaced).unwrap(), canonical(V1).unwrap());
        assert!(canonical(r#"{"type":"record","name":"User"}"#).is_err());
        assert!(canonical("{not json").is_err());
    }

    #[test]
    fn a_new_field_reads_old_data_only_with_a_default() {
        let v1 = canonical(V1).unwrap();
        let with_default = canonical(
            r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"email","type":"string","default":""}]}"#,
        )
        .unwrap();
        let without = canonical(
            r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"email","type":"string"}]}"#,
        )
        .unwrap();
        assert!(can_read(&with_default, &v1).is_ok());
        assert!(can_read(&without, &v1).is_err());
        assert!(
            can_read(&v1, &without).is_ok(),
            "an old reader skips the new field"
        );
    }
}
