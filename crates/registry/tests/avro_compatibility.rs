//! Avro compatibility cases, each written from the resolution rules of the
//! Avro specification ("Schema Resolution"): can data written with the
//! writer's schema be read with the reader's? Then the same pairs through
//! the registry's levels: BACKWARD reads the old data with the new schema,
//! FORWARD the new data with the old, FULL both, NONE neither.

use strom_registry::avro::{can_read, canonical};
use strom_registry::registry::{Compatibility, NewSchema, Registration, Registry};

/// (what the case shows, writer, reader, readable)
const CASES: &[(&str, &str, &str, bool)] = &[
    ("the same primitive", r#""int""#, r#""int""#, true),
    ("int promotes to long", r#""int""#, r#""long""#, true),
    (
        "long does not narrow to int",
        r#""long""#,
        r#""int""#,
        false,
    ),
    ("int promotes to float", r#""int""#, r#""float""#, true),
    ("int promotes to double", r#""int""#, r#""double""#, true),
    ("long promotes to float", r#""long""#, r#""float""#, true),
    ("long promotes to double", r#""long""#, r#""double""#, true),
    (
        "float promotes to double",
        r#""float""#,
        r#""double""#,
        true,
    ),
    (
        "double does not narrow to float",
        r#""double""#,
        r#""float""#,
        false,
    ),
    ("string reads bytes", r#""bytes""#, r#""string""#, true),
    ("bytes read a string", r#""string""#, r#""bytes""#, true),
    ("a string is not a number", r#""string""#, r#""int""#, false),
    ("boolean is not int", r#""boolean""#, r#""int""#, false),
    (
        "a reader field missing from the writer needs a default: it has one",
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}]}"#,
        true,
    ),
    (
        "a reader field missing from the writer needs a default: it has none",
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}"#,
        false,
    ),
    (
        "a writer field the reader lacks is skipped",
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
        true,
    ),
    (
        "a field's type is resolved too (int to long)",
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#,
        true,
    ),
    (
        "a field's type is resolved too (string to int fails)",
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
        false,
    ),
    (
        "records of other names do not match",
        r#"{"type":"record","name":"R","fields":[]}"#,
        r#"{"type":"record","name":"S","fields":[]}"#,
        false,
    ),
    (
        "a reader enum with more symbols reads every writer symbol",
        r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
        r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#,
        true,
    ),
    (
        "a writer symbol the reader lacks, without a default, cannot be read",
        r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#,
        r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
        false,
    ),
    (
        "array items are resolved",
        r#"{"type":"array","items":"int"}"#,
        r#"{"type":"array","items":"long"}"#,
        true,
    ),
    (
        "array items that do not resolve",
        r#"{"type":"array","items":"string"}"#,
        r#"{"type":"array","items":"int"}"#,
        false,
    ),
    (
        "map values are resolved",
        r#"{"type":"map","values":"float"}"#,
        r#"{"type":"map","values":"double"}"#,
        true,
    ),
    (
        "map values that do not resolve",
        r#"{"type":"map","values":"double"}"#,
        r#"{"type":"map","values":"float"}"#,
        false,
    ),
    (
        "a fixed of the same name and size",
        r#"{"type":"fixed","name":"F","size":4}"#,
        r#"{"type":"fixed","name":"F","size":4}"#,
        true,
    ),
    (
        "a fixed of another size",
        r#"{"type":"fixed","name":"F","size":4}"#,
        r#"{"type":"fixed","name":"F","size":8}"#,
        false,
    ),
    (
        "a reader union reads a writer type among its branches",
        r#""string""#,
        r#"["null","string"]"#,
        true,
    ),
    (
        "a reader union without the writer's type",
        r#""int""#,
        r#"["null","string"]"#,
        false,
    ),
    (
        "a writer union, every branch readable by the reader",
        r#"["int","long"]"#,
        r#""long""#,
        true,
    ),
    (
        "a writer union with a branch the reader cannot read",
        r#"["null","string"]"#,
        r#""string""#,
        false,
    ),
    (
        "a union gaining a branch reads the old union",
        r#"["null","string"]"#,
        r#"["null","string","int"]"#,
        true,
    ),
    (
        "a union losing a branch cannot read the old union",
        r#"["null","string","int"]"#,
        r#"["null","string"]"#,
        false,
    ),
    (
        "a reader field named by an alias of the writer's field",
        r#"{"type":"record","name":"R","fields":[{"name":"old_name","type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"new_name","type":"int","aliases":["old_name"]}]}"#,
        true,
    ),
    (
        "a field renamed without an alias, and no default",
        r#"{"type":"record","name":"R","fields":[{"name":"old_name","type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"new_name","type":"int"}]}"#,
        false,
    ),
    (
        "an optional field added with a null default",
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":["null","string"],"default":null}]}"#,
        true,
    ),
];

#[test]
fn the_avro_resolution_rules_decide_each_case() {
    let mut wrong = Vec::new();
    for (case, writer, reader, readable) in CASES {
        let writer = canonical(writer).unwrap_or_else(|error| panic!("{case}: writer: {error}"));
        let reader = canonical(reader).unwrap_or_else(|error| panic!("{case}: reader: {error}"));
        if can_read(&reader, &writer).is_ok() != *readable {
            wrong.push(*case);
        }
    }
    assert!(wrong.is_empty(), "decided wrongly: {wrong:#?}");
}

/// Registers `old` then `new` under `level`: whether the registry takes it.
fn accepts(level: Compatibility, old: &str, new: &str) -> bool {
    let mut registry = Registry::default();
    let record = Registry::set_compatibility(None, level);
    registry.apply(&record.0, record.1.as_deref());
    let schema = |text: &str| NewSchema {
        schema: text.to_string(),
        ..NewSchema::default()
    };
    if let Registration::New { record, .. } = registry.register("s", &schema(old)).unwrap() {
        registry.apply(&record.0, record.1.as_deref());
    }
    registry.register("s", &schema(new)).is_ok()
}

#[test]
fn each_level_reads_old_and_new_data_the_way_it_promises() {
    for (case, writer, reader, readable) in CASES {
        // `reader` registered after `writer`: BACKWARD asks whether the
        // new schema reads the old data.
        let forward = can_read(&canonical(writer).unwrap(), &canonical(reader).unwrap()).is_ok();
        assert_eq!(
            accepts(Compatibility::Backward, writer, reader),
            *readable,
            "BACKWARD: {case}"
        );
        assert_eq!(
            accepts(Compatibility::Forward, writer, reader),
            forward,
            "FORWARD: {case}"
        );
        assert_eq!(
            accepts(Compatibility::Full, writer, reader),
            *readable && forward,
            "FULL: {case}"
        );
        assert!(accepts(Compatibility::None, writer, reader), "NONE: {case}");
    }
}
