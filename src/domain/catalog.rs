//! The event-type catalog: the platform's list of topics, each with an optional JSON Schema
//! (2020-12) its events' `data` must satisfy, examples, and deprecated/archived flags.
//!
//! The rules live here as pure functions: what a valid definition is ([`check_definition`]),
//! whether a payload satisfies a compiled schema ([`check`]), and which topics are exempt
//! ([`is_exempt`]). Compiling never fetches anything: every `$ref` outside the schema itself is
//! refused ([`NoRemoteRefs`]), because a tenant-visible schema that made Herald fetch a URL
//! would be a server-side request forgery path, and a schema that changes under Herald's feet
//! would make validation unrepeatable.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::time::{Millis, serde_rfc3339};
use super::validate::{self, Invalid};

/// Test events sent from the portal and the API carry this topic, and are never validated: a
/// tenant must be able to check its receiver whatever the catalog says.
pub const EXEMPT_TOPIC: &str = "herald.test";

/// At most this many examples per type.
pub const MAX_EXAMPLES: usize = 10;

/// At most this many bytes of schema (serialized): a schema is compiled on every node.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// One event type, as stored and shown (`GET /v1/event-types/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, schemars::JsonSchema)]
pub struct EventType {
    /// The topic this type describes, e.g. `job.completed`.
    pub name: String,
    /// What the event means, for the people subscribing to it.
    pub description: Option<String>,
    /// The JSON Schema (2020-12) every event's `data` must satisfy; null: any JSON.
    #[schema(schema_with = nullable_any_json)]
    pub schema: Option<Value>,
    /// Example `data` payloads; each satisfies the schema.
    #[schema(schema_with = examples_schema)]
    pub examples: Vec<Value>,
    /// Still accepted, but publishers and subscribers are told to move on.
    pub deprecated: bool,
    /// No longer accepted: publishing it is refused.
    pub archived: bool,
    /// Starts at 1 and grows by one with every change; an event records the version it was
    /// validated against (`schema_version`).
    pub version: i64,
    /// When the type was first defined (RFC 3339).
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    #[schemars(with = "String")]
    pub created_at: Millis,
    /// When its definition last changed (RFC 3339).
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    #[schemars(with = "String")]
    pub updated_at: Millis,
}

/// A JSON Schema may be an object or a boolean (`true`: anything; `false`: nothing), or null
/// here for "no schema": so the documented type is any JSON value.
pub fn nullable_any_json() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some(
            "A JSON Schema (2020-12): an object or a boolean; null for none",
        ))
        .into()
}

/// Examples are `data` payloads: any JSON each.
pub fn examples_schema() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(utoipa::openapi::RefOr::T(super::model::any_json()))
        .max_items(Some(MAX_EXAMPLES))
        .into()
}

/// A definition checked and its schema compiled.
pub struct Compiled {
    pub validator: Option<jsonschema::Validator>,
}

/// Checks a definition before it is saved: the name is a topic, the schema is a valid
/// 2020-12 schema with no remote references, and every example satisfies it. Field names are
/// the request's (`schema`, `examples[1]`).
pub fn check_definition(
    name: &str,
    description: Option<&str>,
    schema: Option<&Value>,
    examples: &[Value],
) -> Result<Compiled, Invalid> {
    validate::topic("name", name)?;
    if name == EXEMPT_TOPIC {
        return Err(Invalid::new(
            "name",
            format!("`{EXEMPT_TOPIC}` is Herald's own test topic and cannot be defined"),
        ));
    }
    if let Some(d) = description
        && d.chars().count() > validate::MAX_DESCRIPTION
    {
        return Err(Invalid::new(
            "description",
            format!("must be at most {} characters", validate::MAX_DESCRIPTION),
        ));
    }
    if examples.len() > MAX_EXAMPLES {
        return Err(Invalid::new(
            "examples",
            format!("must hold at most {MAX_EXAMPLES} examples"),
        ));
    }
    let validator = match schema {
        None => None,
        Some(s) => Some(compile(s)?),
    };
    if let Some(v) = &validator {
        for (i, ex) in examples.iter().enumerate() {
            if let Err(m) = check(v, ex) {
                return Err(Invalid::new(
                    format!("examples[{i}]"),
                    format!("does not satisfy the schema: {m}"),
                ));
            }
        }
    }
    Ok(Compiled { validator })
}

/// Compiles a schema (2020-12 unless it names another draft in `$schema`), refusing remote
/// references. Errors name the field `schema`.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, Invalid> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(Invalid::new(
            "schema",
            "must be a JSON Schema: an object or a boolean",
        ));
    }
    if schema.to_string().len() > MAX_SCHEMA_BYTES {
        return Err(Invalid::new(
            "schema",
            format!("must be at most {MAX_SCHEMA_BYTES} bytes"),
        ));
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_retriever(NoRemoteRefs)
        .build(schema)
        .map_err(|e| Invalid::new("schema", format!("is not a valid JSON Schema: {e}")))
}

/// Why a payload does not satisfy a schema: where (a JSON pointer into `data`, `""` for the
/// whole of it), which keyword failed, and the validator's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub pointer: String,
    pub keyword: String,
    pub message: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "at {at} ({}): {}", self.keyword, self.message)
    }
}

/// The first way `data` fails the schema, if it does.
pub fn check(validator: &jsonschema::Validator, data: &Value) -> Result<(), Mismatch> {
    validator.validate(data).map_err(|e| Mismatch {
        pointer: e.instance_path().to_string(),
        keyword: e.kind().keyword().to_string(),
        message: e.to_string(),
    })
}

/// Whether events of this topic skip the catalog (see [`EXEMPT_TOPIC`]).
pub fn is_exempt(topic: &str) -> bool {
    topic == EXEMPT_TOPIC
}

/// The retriever schemas compile with: it fetches nothing (see the module's docs).
struct NoRemoteRefs;

impl jsonschema::Retrieve for NoRemoteRefs {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("remote references are not allowed (`{uri}`): inline them in `$defs`").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job_schema() -> Value {
        json!({
            "type": "object",
            "required": ["job_id"],
            "properties": {
                "job_id": {"type": "string"},
                "tokens": {"type": "integer", "minimum": 0}
            }
        })
    }

    #[test]
    fn a_payload_that_fails_names_the_pointer_and_the_keyword() {
        let v = compile(&job_schema()).unwrap();
        assert_eq!(check(&v, &json!({"job_id": "j1", "tokens": 3})), Ok(()));
        let m = check(&v, &json!({"job_id": "j1", "tokens": -1})).unwrap_err();
        assert_eq!(m.pointer, "/tokens");
        assert_eq!(m.keyword, "minimum");
        let m = check(&v, &json!({"tokens": 1})).unwrap_err();
        assert_eq!((m.pointer.as_str(), m.keyword.as_str()), ("", "required"));
        assert!(m.to_string().starts_with("at / (required)"), "{m}");
    }

    #[test]
    fn remote_references_are_refused_and_local_ones_work() {
        let remote = json!({"$ref": "http://127.0.0.1:9/schema.json"});
        let Err(e) = compile(&remote) else {
            panic!("a remote reference is refused")
        };
        assert_eq!(e.field, "schema");
        assert!(
            e.message.contains("remote references are not allowed"),
            "{}",
            e.message
        );
        let local = json!({
            "$defs": {"id": {"type": "string", "minLength": 2}},
            "type": "object",
            "properties": {"id": {"$ref": "#/$defs/id"}}
        });
        let v = compile(&local).unwrap();
        assert_eq!(check(&v, &json!({"id": "x"})).unwrap_err().pointer, "/id");
    }

    #[test]
    fn a_schema_must_be_valid_and_examples_must_satisfy_it() {
        let e = compile(&json!({"type": "no-such-type"})).err().unwrap();
        assert_eq!(e.field, "schema");
        let e = compile(&json!([1])).err().unwrap();
        assert_eq!(e.field, "schema");
        let bad = [json!({"job_id": "a"}), json!({"job_id": 7})];
        let e = check_definition("job.done", None, Some(&job_schema()), &bad)
            .err()
            .unwrap();
        assert_eq!(e.field, "examples[1]");
        assert!(e.message.contains("/job_id"), "{}", e.message);
        assert!(check_definition("job.done", None, None, &bad).is_ok());
        assert!(compile(&json!(true)).is_ok() && compile(&json!(false)).is_ok());
    }

    #[test]
    fn the_name_must_be_a_topic_and_not_herald_test() {
        assert_eq!(
            check_definition("bad topic", None, None, &[])
                .err()
                .unwrap()
                .field,
            "name"
        );
        assert_eq!(
            check_definition(EXEMPT_TOPIC, None, None, &[])
                .err()
                .unwrap()
                .field,
            "name"
        );
        assert!(is_exempt("herald.test") && !is_exempt("job.done"));
    }
}
