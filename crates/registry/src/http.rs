//! Confluent's Schema Registry REST API over [`Registry`]: the routes its
//! clients call, its content type and error bodies. Reads are served from
//! memory; a write is appended to `_schemas` through the [`Store`], durable
//! before it is applied and answered. Writes are serialized, so two racing
//! registrations of a new schema get one id.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::records::{Record, Reference};
use crate::registry::{
    Compatibility, NewSchema, Registration, Registry, RegistryError, StoredSchema, SubjectVersion,
    VersionSelector,
};

/// Where the registry's records go: the `_schemas` topic.
pub trait Store: Send + Sync + 'static {
    /// Appends `record` and resolves once it is durable.
    fn write(&self, record: Record) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
}

pub struct Service {
    registry: RwLock<Registry>,
    /// One write at a time: decided on the state the previous one left.
    writes: tokio::sync::Mutex<()>,
    store: Box<dyn Store>,
}

impl Service {
    /// A service over the state replayed from `_schemas`.
    pub fn new(registry: Registry, store: impl Store) -> Arc<Service> {
        Arc::new(Service {
            registry: RwLock::new(registry),
            writes: tokio::sync::Mutex::new(()),
            store: Box::new(store),
        })
    }

    fn read<T>(&self, look: impl FnOnce(&Registry) -> T) -> T {
        look(&self.registry.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Writes `record` durably, then applies it.
    async fn write(&self, record: Record) -> Result<(), RegistryError> {
        self.store
            .write(record.clone())
            .await
            .map_err(RegistryError::store)?;
        self.registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&record.0, record.1.as_deref());
        Ok(())
    }
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
) -> std::io::Result<()> {
    axum::serve(listener, router(service)).await
}

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/", get(|| async { answer(json!({})) }))
        .route("/schemas/types", get(|| async { answer(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_version),
        )
        .route("/config", get(global_config).put(set_global_config))
        .route(
            "/config/{subject}",
            get(subject_config).put(set_subject_config),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .fallback(|| async {
            fail(RegistryError {
                code: 404,
                message: "HTTP 404 Not Found".to_string(),
            })
        })
        .with_state(service)
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

fn answer(body: Value) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

fn fail(error: RegistryError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error_code": error.code, "message": error.message});
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn respond(result: Result<Value, RegistryError>) -> Response {
    result.map_or_else(fail, answer)
}

/// A schema's own text as the body (`.../schema` routes).
fn raw(result: Result<String, RegistryError>) -> Response {
    result.map_or_else(fail, |text| {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
    })
}

fn bad_request(message: impl std::fmt::Display) -> RegistryError {
    RegistryError {
        code: 400,
        message: format!("Bad request: {message}"),
    }
}

/// A request body's schema: `schema` (required), `schemaType`,
/// `references`; other fields are accepted.
fn new_schema(body: &[u8]) -> Result<NewSchema, RegistryError> {
    let value: Value = serde_json::from_slice(body).map_err(bad_request)?;
    let schema = value
        .get("schema")
        .and_then(Value::as_str)
        .ok_or_else(|| RegistryError::invalid_schema("the request has no \"schema\" string"))?;
    let schema_type = match value.get("schemaType") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => return Err(bad_request("\"schemaType\" must be a string")),
    };
    let references: Vec<Reference> = match value.get("references") {
        None | Some(Value::Null) => Vec::new(),
        Some(references) => serde_json::from_value(references.clone())
            .map_err(|error| bad_request(format!("\"references\": {error}")))?,
    };
    Ok(NewSchema {
        schema: schema.to_string(),
        schema_type,
        references,
    })
}

fn schema_id(text: &str) -> Result<i32, RegistryError> {
    text.parse()
        .map_err(|_| RegistryError::schema_not_found(format!("with id {text}")))
}

fn schema_json(stored: &StoredSchema) -> Value {
    let mut body = json!({"schema": stored.schema});
    if stored.schema_type != "AVRO" {
        body["schemaType"] = json!(stored.schema_type);
    }
    if !stored.references.is_empty() {
        body["references"] = json!(stored.references);
    }
    body
}

async fn schema_by_id(State(service): State<Arc<Service>>, Path(id): Path<String>) -> Response {
    respond(service.read(|registry| Ok(schema_json(registry.schema(schema_id(&id)?)?))))
}

async fn raw_schema_by_id(State(service): State<Arc<Service>>, Path(id): Path<String>) -> Response {
    raw(service.read(|registry| Ok(registry.schema(schema_id(&id)?)?.schema.clone())))
}

async fn subjects_of_id(State(service): State<Arc<Service>>, Path(id): Path<String>) -> Response {
    respond(service.read(|registry| {
        let mut subjects: Vec<&str> = registry
            .versions_of(schema_id(&id)?)?
            .into_iter()
            .map(|version| version.subject.as_str())
            .collect();
        subjects.dedup();
        Ok(json!(subjects))
    }))
}

async fn versions_of_id(State(service): State<Arc<Service>>, Path(id): Path<String>) -> Response {
    respond(service.read(|registry| {
        let versions: Vec<Value> = registry
            .versions_of(schema_id(&id)?)?
            .into_iter()
            .map(|version| json!({"subject": version.subject, "version": version.version}))
            .collect();
        Ok(json!(versions))
    }))
}

/// `?name=true`.
fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query.get(name).is_some_and(|value| value == "true")
}

async fn subjects(
    State(service): State<Arc<Service>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let prefix = query.get("subjectPrefix").cloned().unwrap_or_default();
    answer(service.read(|registry| {
        json!(registry
            .subjects(flag(&query, "deleted"))
            .into_iter()
            .filter(|subject| subject.starts_with(&prefix))
            .collect::<Vec<_>>())
    }))
}

async fn versions(
    State(service): State<Arc<Service>>,
    Path(subject): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let deleted = flag(&query, "deleted");
    respond(service.read(|registry| Ok(json!(registry.versions(&subject, deleted)?))))
}

async fn delete_subject(
    State(service): State<Arc<Service>>,
    Path(subject): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let permanent = flag(&query, "permanent");
    respond(
        async {
            let _turn = service.writes.lock().await;
            let (versions, records) =
                service.read(|registry| registry.delete_subject(&subject, permanent))?;
            for record in records {
                service.write(record).await?;
            }
            tracing::info!(%subject, permanent, ?versions, "deleted a subject");
            Ok(json!(versions))
        }
        .await,
    )
}

async fn delete_version(
    State(service): State<Arc<Service>>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let permanent = flag(&query, "permanent");
    respond(
        async {
            let selector = VersionSelector::parse(&version)?;
            let _turn = service.writes.lock().await;
            let (version, record) =
                service.read(|registry| registry.delete_version(&subject, &selector, permanent))?;
            service.write(record).await?;
            tracing::info!(%subject, version, permanent, "deleted a subject's version");
            Ok(json!(version))
        }
        .await,
    )
}

/// A subject's version as Confluent answers it: subject, version, id, schema.
fn version_json(version: &SubjectVersion, stored: &StoredSchema) -> Value {
    let mut body = schema_json(stored);
    body["subject"] = json!(version.subject);
    body["version"] = json!(version.version);
    body["id"] = json!(version.id);
    body
}

async fn version(
    State(service): State<Arc<Service>>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    respond(VersionSelector::parse(&version).and_then(|selector| {
        service.read(|registry| {
            let (version, stored) = registry.version(&subject, &selector)?;
            Ok(version_json(version, stored))
        })
    }))
}

async fn raw_version(
    State(service): State<Arc<Service>>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    raw(VersionSelector::parse(&version).and_then(|selector| {
        service.read(|registry| Ok(registry.version(&subject, &selector)?.1.schema.clone()))
    }))
}

async fn register(
    State(service): State<Arc<Service>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let new = new_schema(&body)?;
            let _turn = service.writes.lock().await;
            match service.read(|registry| registry.register(&subject, &new))? {
                Registration::Existing { id } => Ok(json!({"id": id})),
                Registration::New {
                    id,
                    version,
                    record,
                } => {
                    service.write(record).await?;
                    tracing::info!(%subject, version, id, "registered a schema");
                    Ok(json!({"id": id}))
                }
            }
        }
        .await,
    )
}

async fn lookup(
    State(service): State<Arc<Service>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    respond(new_schema(&body).and_then(|new| {
        service.read(|registry| {
            let version = registry.lookup(&subject, &new)?;
            Ok(version_json(version, registry.schema(version.id)?))
        })
    }))
}

fn compatibility_body(body: &[u8]) -> Result<Compatibility, RegistryError> {
    let value: Value = serde_json::from_slice(body).map_err(bad_request)?;
    let level = value
        .get("compatibility")
        .and_then(Value::as_str)
        .ok_or_else(|| RegistryError::invalid_compatibility("(missing)"))?;
    Compatibility::parse(level).ok_or_else(|| RegistryError::invalid_compatibility(level))
}

async fn set_config(
    service: &Service,
    subject: Option<&str>,
    body: &[u8],
) -> Result<Value, RegistryError> {
    let level = compatibility_body(body)?;
    let _turn = service.writes.lock().await;
    service
        .write(Registry::set_compatibility(subject, level))
        .await?;
    Ok(json!({"compatibility": level.name()}))
}

async fn global_config(State(service): State<Arc<Service>>) -> Response {
    answer(
        json!({"compatibilityLevel": service.read(|registry| registry.compatibility(None)).name()}),
    )
}

async fn set_global_config(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    respond(set_config(&service, None, &body).await)
}

async fn subject_config(
    State(service): State<Arc<Service>>,
    Path(subject): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let to_global = flag(&query, "defaultToGlobal");
    respond(service.read(|registry| {
        let level = match registry.subject_compatibility(&subject) {
            Some(level) => level,
            None if to_global => registry.compatibility(None),
            None => return Err(RegistryError::subject_has_no_config(&subject)),
        };
        Ok(json!({"compatibilityLevel": level.name()}))
    }))
}

async fn set_subject_config(
    State(service): State<Arc<Service>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    respond(set_config(&service, Some(&subject), &body).await)
}

fn verdict(reasons: Vec<String>, query: &HashMap<String, String>) -> Value {
    let mut body = json!({"is_compatible": reasons.is_empty()});
    if flag(query, "verbose") {
        body["messages"] = json!(reasons);
    }
    body
}

async fn check_all(
    State(service): State<Arc<Service>>,
    Path(subject): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let new = new_schema(&body)?;
            let reasons = service.read(|registry| registry.check(&subject, None, &new))?;
            Ok(verdict(reasons, &query))
        }
        .await,
    )
}

async fn check_version(
    State(service): State<Arc<Service>>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let selector = VersionSelector::parse(&version)?;
            let new = new_schema(&body)?;
            let reasons =
                service.read(|registry| registry.check(&subject, Some(&selector), &new))?;
            Ok(verdict(reasons, &query))
        }
        .await,
    )
}
