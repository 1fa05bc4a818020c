//! The registry's state and decisions, without I/O: what the `_schemas`
//! records say ([`Registry::apply`], for replay and for each new write
//! alike), and what a request decides ([`Registry::register`] and the
//! others return the record to write; the caller applies it once durable).

use std::collections::BTreeMap;

use crate::avro;
use crate::records::{self, ConfigValue, Key, Record, SchemaValue};

/// Confluent's compatibility levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl Compatibility {
    pub const ALL: [Compatibility; 7] = [
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
        Compatibility::None,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
            Compatibility::None => "NONE",
        }
    }

    pub fn parse(name: &str) -> Option<Compatibility> {
        Compatibility::ALL
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(name))
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive
                | Compatibility::ForwardTransitive
                | Compatibility::FullTransitive
        )
    }
}

/// A refusal, with Confluent's error code (its first three digits are the
/// HTTP status) and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    pub code: u32,
    pub message: String,
}

impl RegistryError {
    fn new(code: u32, message: impl Into<String>) -> RegistryError {
        RegistryError {
            code,
            message: message.into(),
        }
    }
    pub fn subject_not_found(subject: &str) -> RegistryError {
        RegistryError::new(40401, format!("Subject '{subject}' not found."))
    }
    pub fn version_not_found(subject: &str, version: &str) -> RegistryError {
        RegistryError::new(
            40402,
            format!("Version {version} not found for subject '{subject}'."),
        )
    }
    pub fn schema_not_found(what: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(40403, format!("Schema {what} not found."))
    }
    pub fn subject_soft_deleted(subject: &str) -> RegistryError {
        RegistryError::new(
            40404,
            format!(
                "Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
            ),
        )
    }
    pub fn subject_not_soft_deleted(subject: &str) -> RegistryError {
        RegistryError::new(
            40405,
            format!("Subject '{subject}' was not deleted first before being permanently deleted"),
        )
    }
    pub fn version_soft_deleted(subject: &str, version: i32) -> RegistryError {
        RegistryError::new(
            40406,
            format!("Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently"),
        )
    }
    pub fn version_not_soft_deleted(subject: &str, version: i32) -> RegistryError {
        RegistryError::new(
            40407,
            format!("Subject '{subject}' Version {version} was not deleted first before being permanently deleted"),
        )
    }
    pub fn subject_has_no_config(subject: &str) -> RegistryError {
        RegistryError::new(
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }
    pub fn incompatible(messages: &[String]) -> RegistryError {
        RegistryError::new(
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema: {}",
                messages.join("; ")
            ),
        )
    }
    pub fn invalid_schema(message: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(42201, format!("Invalid schema: {message}"))
    }
    pub fn invalid_version(version: &str) -> RegistryError {
        RegistryError::new(
            42202,
            format!("The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""),
        )
    }
    pub fn invalid_compatibility(level: &str) -> RegistryError {
        RegistryError::new(
            42203,
            format!("Invalid compatibility level '{level}'. Valid values are BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE and NONE"),
        )
    }
    pub fn store(message: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(
            50001,
            format!("Error while writing to the _schemas topic: {message}"),
        )
    }
    /// The HTTP status: the code's first three digits.
    pub fn status(&self) -> u16 {
        let mut code = self.code;
        while code >= 1000 {
            code /= 10;
        }
        code as u16
    }
}

/// A schema as a request gives it.
#[derive(Debug, Clone, Default)]
pub struct NewSchema {
    pub schema: String,
    pub schema_type: Option<String>,
    pub references: Vec<records::Reference>,
}

/// A schema as stored: its type, text (canonical) and references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchema {
    pub schema_type: String,
    pub schema: String,
    pub references: Vec<records::Reference>,
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub deleted: bool,
}

/// What registering decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// The subject has this schema already: nothing to write.
    Existing { id: i32 },
    /// A new version: write the record, then apply it.
    New {
        id: i32,
        version: i32,
        record: Record,
    },
}

/// Which version a request names.
pub enum VersionSelector {
    Latest,
    Number(i32),
}

impl VersionSelector {
    /// `latest`, `-1`, or a positive number (42202 otherwise).
    pub fn parse(text: &str) -> Result<VersionSelector, RegistryError> {
        if text == "latest" || text == "-1" {
            return Ok(VersionSelector::Latest);
        }
        match text.parse::<i32>() {
            Ok(number) if number > 0 => Ok(VersionSelector::Number(number)),
            _ => Err(RegistryError::invalid_version(text)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Registry {
    schemas: BTreeMap<i32, StoredSchema>,
    /// Subject -> version -> the version.
    subjects: BTreeMap<String, BTreeMap<i32, SubjectVersion>>,
    global: Compatibility,
    per_subject: BTreeMap<String, Compatibility>,
    max_id: i32,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            schemas: BTreeMap::new(),
            subjects: BTreeMap::new(),
            global: Compatibility::Backward,
            per_subject: BTreeMap::new(),
            max_id: 0,
        }
    }
}

impl Registry {
    /// Takes one `_schemas` record into the state (replay, or a write once
    /// durable). Records it cannot read are skipped, and say so.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = serde_json::from_slice::<Key>(key) else {
            tracing::warn!(key = %String::from_utf8_lossy(key), "skipping an unreadable _schemas key");
            return;
        };
        match key {
            Key::Schema {
                subject, version, ..
            } => match value {
                None => {
                    if let Some(versions) = self.subjects.get_mut(&subject) {
                        versions.remove(&version);
                    }
                }
                Some(value) => match serde_json::from_slice::<SchemaValue>(value) {
                    Ok(value) => self.apply_schema(value),
                    Err(error) => {
                        tracing::warn!(%subject, version, %error, "skipping an unreadable _schemas value")
                    }
                },
            },
            Key::Config { subject, .. } => {
                let level = value
                    .and_then(|value| serde_json::from_slice::<ConfigValue>(value).ok())
                    .and_then(|value| Compatibility::parse(&value.compatibility_level));
                match (subject, level) {
                    (None, Some(level)) => self.global = level,
                    (None, None) => self.global = Compatibility::Backward,
                    (Some(subject), Some(level)) => {
                        self.per_subject.insert(subject, level);
                    }
                    (Some(subject), None) => {
                        self.per_subject.remove(&subject);
                    }
                }
            }
            Key::Other => {}
        }
    }

    fn apply_schema(&mut self, value: SchemaValue) {
        self.max_id = self.max_id.max(value.id);
        self.schemas.entry(value.id).or_insert(StoredSchema {
            schema_type: value.schema_type.unwrap_or_else(|| "AVRO".to_string()),
            schema: value.schema,
            references: value.references,
        });
        self.subjects
            .entry(value.subject.clone())
            .or_default()
            .insert(
                value.version,
                SubjectVersion {
                    subject: value.subject,
                    version: value.version,
                    id: value.id,
                    deleted: value.deleted,
                },
            );
    }

    /// Checks a schema and gives its stored form.
    fn prepare(&self, new: &NewSchema) -> Result<StoredSchema, RegistryError> {
        let schema_type = new
            .schema_type
            .clone()
            .unwrap_or_else(|| "AVRO".to_string())
            .to_ascii_uppercase();
        if schema_type != "AVRO" {
            return Err(RegistryError::invalid_schema(format!(
                "schema type {schema_type} is not supported yet (AVRO is)"
            )));
        }
        if !new.references.is_empty() {
            return Err(RegistryError::invalid_schema(
                "schema references are not supported yet",
            ));
        }
        let schema = avro::canonical(&new.schema).map_err(RegistryError::invalid_schema)?;
        Ok(StoredSchema {
            schema_type,
            schema,
            references: Vec::new(),
        })
    }

    fn live_versions(&self, subject: &str) -> impl DoubleEndedIterator<Item = &SubjectVersion> {
        self.subjects
            .get(subject)
            .into_iter()
            .flat_map(|versions| versions.values())
            .filter(|version| !version.deleted)
    }

    /// The compatibility level that applies to `subject`.
    pub fn compatibility(&self, subject: Option<&str>) -> Compatibility {
        subject
            .and_then(|subject| self.per_subject.get(subject))
            .copied()
            .unwrap_or(self.global)
    }

    /// `subject`'s own level, if it has one.
    pub fn subject_compatibility(&self, subject: &str) -> Option<Compatibility> {
        self.per_subject.get(subject).copied()
    }

    /// Why `schema` may not follow `earlier` (newest first) under `level`:
    /// every reason, empty when it may.
    fn incompatibilities(
        &self,
        level: Compatibility,
        schema: &StoredSchema,
        earlier: &[&SubjectVersion],
    ) -> Vec<String> {
        let against: Vec<&SubjectVersion> = match level {
            Compatibility::None => Vec::new(),
            _ if level.transitive() => earlier.to_vec(),
            _ => earlier.iter().take(1).copied().collect(),
        };
        let mut reasons = Vec::new();
        for version in against {
            let Some(old) = self.schemas.get(&version.id) else {
                continue;
            };
            let backward = matches!(
                level,
                Compatibility::Backward
                    | Compatibility::BackwardTransitive
                    | Compatibility::Full
                    | Compatibility::FullTransitive
            );
            let forward = matches!(
                level,
                Compatibility::Forward
                    | Compatibility::ForwardTransitive
                    | Compatibility::Full
                    | Compatibility::FullTransitive
            );
            if backward {
                if let Err(reason) = avro::can_read(&schema.schema, &old.schema) {
                    reasons.push(format!(
                        "the new schema cannot read data written with version {} ({reason})",
                        version.version
                    ));
                }
            }
            if forward {
                if let Err(reason) = avro::can_read(&old.schema, &schema.schema) {
                    reasons.push(format!(
                        "version {} cannot read data written with the new schema ({reason})",
                        version.version
                    ));
                }
            }
        }
        reasons
    }

    /// POST /subjects/{subject}/versions: the subject's version with this
    /// schema if it has one, else a new version (after the compatibility
    /// check), with the id the same schema has anywhere or the next one.
    pub fn register(&self, subject: &str, new: &NewSchema) -> Result<Registration, RegistryError> {
        let schema = self.prepare(new)?;
        if let Some(existing) = self
            .live_versions(subject)
            .find(|version| self.schemas.get(&version.id) == Some(&schema))
        {
            return Ok(Registration::Existing { id: existing.id });
        }
        let earlier: Vec<&SubjectVersion> = self.live_versions(subject).rev().collect();
        let reasons = self.incompatibilities(self.compatibility(Some(subject)), &schema, &earlier);
        if !reasons.is_empty() {
            return Err(RegistryError::incompatible(&reasons));
        }
        let id = self
            .schemas
            .iter()
            .find(|(_, stored)| **stored == schema)
            .map_or(self.max_id + 1, |(id, _)| *id);
        let version = self
            .subjects
            .get(subject)
            .and_then(|versions| versions.keys().next_back())
            .map_or(1, |last| last + 1);
        let value = SchemaValue {
            subject: subject.to_string(),
            version,
            id,
            schema: schema.schema,
            schema_type: (schema.schema_type != "AVRO").then_some(schema.schema_type),
            references: Vec::new(),
            deleted: false,
        };
        let key = Key::Schema {
            subject: subject.to_string(),
            version,
            magic: 1,
        };
        Ok(Registration::New {
            id,
            version,
            record: records::encode(&key, Some(&value)),
        })
    }

    /// POST /subjects/{subject}: the subject's version with this schema.
    pub fn lookup(&self, subject: &str, new: &NewSchema) -> Result<&SubjectVersion, RegistryError> {
        if self.live_versions(subject).next().is_none() {
            return Err(RegistryError::subject_not_found(subject));
        }
        let schema = self.prepare(new)?;
        self.live_versions(subject)
            .find(|version| self.schemas.get(&version.id) == Some(&schema))
            .ok_or_else(|| RegistryError::schema_not_found("in this subject"))
    }

    pub fn schema(&self, id: i32) -> Result<&StoredSchema, RegistryError> {
        self.schemas
            .get(&id)
            .ok_or_else(|| RegistryError::schema_not_found(format!("with id {id}")))
    }

    /// Every subject and version that has schema `id`.
    pub fn versions_of(&self, id: i32) -> Result<Vec<&SubjectVersion>, RegistryError> {
        self.schema(id)?;
        Ok(self
            .subjects
            .keys()
            .flat_map(|subject| self.live_versions(subject))
            .filter(|version| version.id == id)
            .collect())
    }

    /// The subjects with a live version (with `deleted`, soft-deleted ones too).
    pub fn subjects(&self, deleted: bool) -> Vec<&str> {
        self.subjects
            .iter()
            .filter(|(subject, versions)| {
                !versions.is_empty() && (deleted || self.live_versions(subject).next().is_some())
            })
            .map(|(subject, _)| subject.as_str())
            .collect()
    }

    /// A subject's versions (with `deleted`, soft-deleted ones too).
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<i32>, RegistryError> {
        let versions: Vec<i32> = self
            .subjects
            .get(subject)
            .into_iter()
            .flat_map(|versions| versions.values())
            .filter(|version| deleted || !version.deleted)
            .map(|version| version.version)
            .collect();
        if versions.is_empty() {
            return Err(RegistryError::subject_not_found(subject));
        }
        Ok(versions)
    }

    /// The record that marks a version soft-deleted, or removes it.
    fn deletion(&self, version: &SubjectVersion, permanent: bool) -> Record {
        let key = Key::Schema {
            subject: version.subject.clone(),
            version: version.version,
            magic: 1,
        };
        if permanent {
            return (serde_json::to_vec(&key).expect("plain data"), None);
        }
        let stored = self.schemas.get(&version.id);
        let value = SchemaValue {
            subject: version.subject.clone(),
            version: version.version,
            id: version.id,
            schema: stored.map(|s| s.schema.clone()).unwrap_or_default(),
            schema_type: stored
                .filter(|s| s.schema_type != "AVRO")
                .map(|s| s.schema_type.clone()),
            references: stored.map(|s| s.references.clone()).unwrap_or_default(),
            deleted: true,
        };
        records::encode(&key, Some(&value))
    }

    /// DELETE /subjects/{subject}: soft-deletes every live version, or,
    /// with `permanent`, removes a subject soft-deleted before. The
    /// versions it deleted, and the records that do it.
    pub fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<(Vec<i32>, Vec<Record>), RegistryError> {
        let versions: Vec<&SubjectVersion> = self
            .subjects
            .get(subject)
            .into_iter()
            .flat_map(|versions| versions.values())
            .collect();
        if versions.is_empty() {
            return Err(RegistryError::subject_not_found(subject));
        }
        let live = versions.iter().any(|version| !version.deleted);
        match (permanent, live) {
            (false, false) => return Err(RegistryError::subject_soft_deleted(subject)),
            (true, true) => return Err(RegistryError::subject_not_soft_deleted(subject)),
            _ => {}
        }
        let deleted: Vec<&SubjectVersion> = versions
            .into_iter()
            .filter(|version| permanent || !version.deleted)
            .collect();
        Ok((
            deleted.iter().map(|version| version.version).collect(),
            deleted
                .iter()
                .map(|version| self.deletion(version, permanent))
                .collect(),
        ))
    }

    /// DELETE /subjects/{subject}/versions/{version}: soft-deletes it, or,
    /// with `permanent`, removes a version soft-deleted before.
    pub fn delete_version(
        &self,
        subject: &str,
        selector: &VersionSelector,
        permanent: bool,
    ) -> Result<(i32, Record), RegistryError> {
        let versions = self
            .subjects
            .get(subject)
            .filter(|versions| !versions.is_empty())
            .ok_or_else(|| RegistryError::subject_not_found(subject))?;
        let found = match selector {
            VersionSelector::Latest => versions.values().rev().find(|version| !version.deleted),
            VersionSelector::Number(number) => versions.get(number),
        };
        let named = match selector {
            VersionSelector::Latest => "latest".to_string(),
            VersionSelector::Number(number) => number.to_string(),
        };
        let version = found.ok_or_else(|| RegistryError::version_not_found(subject, &named))?;
        match (permanent, version.deleted) {
            (false, true) => Err(RegistryError::version_soft_deleted(
                subject,
                version.version,
            )),
            (true, false) => Err(RegistryError::version_not_soft_deleted(
                subject,
                version.version,
            )),
            _ => Ok((version.version, self.deletion(version, permanent))),
        }
    }

    pub fn version(
        &self,
        subject: &str,
        selector: &VersionSelector,
    ) -> Result<(&SubjectVersion, &StoredSchema), RegistryError> {
        let mut live = self.live_versions(subject).peekable();
        if live.peek().is_none() {
            return Err(RegistryError::subject_not_found(subject));
        }
        let found = match selector {
            VersionSelector::Latest => live.last(),
            VersionSelector::Number(number) => live.find(|version| version.version == *number),
        };
        let version = found.ok_or_else(|| {
            let named = match selector {
                VersionSelector::Latest => "latest".to_string(),
                VersionSelector::Number(number) => number.to_string(),
            };
            RegistryError::version_not_found(subject, &named)
        })?;
        Ok((version, self.schema(version.id)?))
    }

    /// POST /compatibility/subjects/{subject}/versions/{version}: why the
    /// schema may not follow that version (or, without one, the subject's
    /// versions) under the subject's level; empty when it may.
    pub fn check(
        &self,
        subject: &str,
        selector: Option<&VersionSelector>,
        new: &NewSchema,
    ) -> Result<Vec<String>, RegistryError> {
        let schema = self.prepare(new)?;
        let level = self.compatibility(Some(subject));
        let earlier: Vec<&SubjectVersion> = match selector {
            Some(selector) => vec![self.version(subject, selector)?.0],
            None => self.live_versions(subject).rev().collect(),
        };
        Ok(self.incompatibilities(level, &schema, &earlier))
    }

    /// PUT /config or /config/{subject}: the record that sets the level.
    pub fn set_compatibility(subject: Option<&str>, level: Compatibility) -> Record {
        let key = Key::Config {
            subject: subject.map(str::to_string),
            magic: 0,
        };
        let value = ConfigValue {
            compatibility_level: level.name().to_string(),
        };
        records::encode(&key, Some(&value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avro(schema: &str) -> NewSchema {
        NewSchema {
            schema: schema.to_string(),
            ..NewSchema::default()
        }
    }

    fn register(
        registry: &mut Registry,
        subject: &str,
        schema: &str,
    ) -> Result<i32, RegistryError> {
        match registry.register(subject, &avro(schema))? {
            Registration::Existing { id } => Ok(id),
            Registration::New { id, record, .. } => {
                registry.apply(&record.0, record.1.as_deref());
                Ok(id)
            }
        }
    }

    const V1: &str = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}"#;
    const V2: &str = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"email","type":"string","default":""}]}"#;
    const BREAKING: &str =
        r#"{"type":"record","name":"User","fields":[{"name":"id","type":"string"}]}"#;

    #[test]
    fn the_same_schema_keeps_its_id_across_subjects_and_a_new_one_takes_the_next() {
        let mut registry = Registry::default();
        assert_eq!(register(&mut registry, "a-value", V1), Ok(1));
        assert_eq!(register(&mut registry, "a-value", V1), Ok(1));
        assert_eq!(register(&mut registry, "b-value", V1), Ok(1));
        assert_eq!(register(&mut registry, "a-value", V2), Ok(2));
        assert_eq!(registry.versions("a-value", false), Ok(vec![1, 2]));
        assert_eq!(registry.versions("b-value", false), Ok(vec![1]));
        assert_eq!(
            registry.versions_of(1).unwrap().len(),
            2,
            "a-value 1 and b-value 1"
        );
    }

    #[test]
    fn an_incompatible_schema_is_refused_unless_the_level_is_none() {
        let mut registry = Registry::default();
        register(&mut registry, "s", V1).unwrap();
        let refused = register(&mut registry, "s", BREAKING).unwrap_err();
        assert_eq!((refused.code, refused.status()), (409, 409));
        let record = Registry::set_compatibility(Some("s"), Compatibility::None);
        registry.apply(&record.0, record.1.as_deref());
        assert_eq!(register(&mut registry, "s", BREAKING), Ok(2));
    }

    #[test]
    fn transitive_levels_check_every_version_and_plain_ones_the_latest() {
        let mut registry = Registry::default();
        let record = Registry::set_compatibility(None, Compatibility::None);
        registry.apply(&record.0, record.1.as_deref());
        register(&mut registry, "s", V1).unwrap();
        register(&mut registry, "s", BREAKING).unwrap();
        let back_to_long = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"n","type":"int","default":0}]}"#;
        let new = avro(back_to_long);
        let plain = Registry::set_compatibility(None, Compatibility::Backward);
        registry.apply(&plain.0, plain.1.as_deref());
        assert!(!registry.check("s", None, &new).unwrap().is_empty());
        let only_v1 = registry.check("s", Some(&VersionSelector::Number(1)), &new);
        assert_eq!(only_v1, Ok(vec![]));
        let transitive = Registry::set_compatibility(None, Compatibility::BackwardTransitive);
        registry.apply(&transitive.0, transitive.1.as_deref());
        assert!(matches!(
            registry.register("s", &new),
            Err(RegistryError { code: 409, .. })
        ));
    }

    fn apply_all(registry: &mut Registry, records: Vec<Record>) {
        for (key, value) in records {
            registry.apply(&key, value.as_deref());
        }
    }

    /// Confluent's rules: soft first, then permanent; each step refused out
    /// of order with its own code; soft-deleted versions hidden unless asked
    /// for; a schema registered again after its deletion is a new version
    /// with the same id.
    #[test]
    fn deletes_are_soft_first_and_permanent_after() {
        let mut registry = Registry::default();
        register(&mut registry, "s", V1).unwrap();
        register(&mut registry, "s", V2).unwrap();
        let code = |result: Result<(i32, Record), RegistryError>| {
            result.map(|(v, _)| v).map_err(|e| e.code)
        };
        let latest = VersionSelector::Latest;
        let one = VersionSelector::Number(1);
        assert_eq!(code(registry.delete_version("s", &one, true)), Err(40407));
        let (deleted, record) = registry.delete_version("s", &latest, false).unwrap();
        assert_eq!(deleted, 2);
        apply_all(&mut registry, vec![record]);
        assert_eq!(registry.versions("s", false), Ok(vec![1]));
        assert_eq!(registry.versions("s", true), Ok(vec![1, 2]));
        assert_eq!(registry.version("s", &latest).unwrap().0.version, 1);
        let two = VersionSelector::Number(2);
        assert_eq!(code(registry.delete_version("s", &two, false)), Err(40406));
        assert_eq!(registry.delete_subject("s", true).unwrap_err().code, 40405);
        let (versions, records) = registry.delete_subject("s", false).unwrap();
        assert_eq!(versions, vec![1]);
        apply_all(&mut registry, records);
        assert_eq!(registry.versions("s", false).unwrap_err().code, 40401);
        assert_eq!(registry.subjects(false), Vec::<&str>::new());
        assert_eq!(registry.subjects(true), vec!["s"]);
        assert_eq!(registry.delete_subject("s", false).unwrap_err().code, 40404);
        assert_eq!(
            registry.schema(1).map(|s| s.schema_type.as_str()),
            Ok("AVRO")
        );
        assert_eq!(register(&mut registry, "s", V1), Ok(1), "the same id again");
        assert_eq!(registry.versions("s", false), Ok(vec![3]));
        let (versions, records) = registry.delete_subject("s", false).unwrap();
        apply_all(&mut registry, records);
        assert_eq!(versions, vec![3]);
        let (versions, records) = registry.delete_subject("s", true).unwrap();
        assert_eq!(versions, vec![1, 2, 3]);
        apply_all(&mut registry, records);
        assert_eq!(registry.subjects(true), Vec::<&str>::new());
        assert_eq!(registry.delete_subject("s", true).unwrap_err().code, 40401);
    }

    #[test]
    fn lookups_name_what_is_missing() {
        let mut registry = Registry::default();
        assert_eq!(registry.schema(7).unwrap_err().code, 40403);
        assert_eq!(registry.versions("nope", false).unwrap_err().code, 40401);
        register(&mut registry, "s", V1).unwrap();
        let missing = registry
            .version("s", &VersionSelector::Number(9))
            .unwrap_err();
        assert_eq!((missing.code, missing.status()), (40402, 404));
        assert_eq!(registry.lookup("s", &avro(V2)).unwrap_err().code, 40403);
        assert_eq!(registry.lookup("s", &avro(V1)).unwrap().version, 1);
        assert_eq!(
            VersionSelector::parse("0").err().map(|e| e.code),
            Some(42202)
        );
        assert_eq!(registry.register("s", &avro("{")).unwrap_err().code, 42201);
    }
}
