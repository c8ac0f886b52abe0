//! The OpenAPI 3.1 document at `GET /openapi.json`, as generators and linters expect it.
//!
//! utoipa derives the paths and schemas from the handlers' annotations. This module adds
//! what is the same for every operation, so no handler can forget it:
//!
//! - `servers` from `public_url`, and the tags with their descriptions;
//! - the two bearer-token schemes (admin and tenant), `security: []` on the unauthenticated
//!   `/in/{slug}`, and admin-only operations ([`ADMIN_ONLY`]) marked as such;
//! - list pages whose items refer to the item's schema instead of repeating it inline;
//! - every error as a shared response of `application/problem+json` (the content type Herald
//!   sends) over one `Problem` schema: the 4xx a handler declares, plus 401 wherever a token
//!   is checked, 403 on admin-only operations, 400 and 415 where a JSON body is read, and 500
//!   everywhere.
//!
//! `docs/openapi.json` is a committed snapshot of this document (a test keeps it current), so
//! every change to the API shows up in review.

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use super::ApiDoc;

/// Operations only the admin token may call; a tenant's token gets 403.
pub const ADMIN_ONLY: [&str; 7] = [
    "list_tenants",
    "put_event_type",
    "delete_event_type",
    "upsert_tenant",
    "delete_tenant",
    "issue_tenant_token",
    "create_portal_session",
];

/// The tags, in the order a reader meets them.
const TAGS: [(&str, &str); 6] = [
    (
        "tenants",
        "Your customers. Each tenant owns its destinations, events and deliveries; tenant \
         tokens and portal links act within one tenant.",
    ),
    (
        "destinations",
        "Where a tenant's events go: webhook URLs or RabbitMQ exchanges, with topic patterns, \
         filters, signing secrets, limits and recovery.",
    ),
    (
        "event-types",
        "The platform's catalog of topics: a JSON Schema each event's data must satisfy, \
         examples, and deprecated or archived flags. The admin writes it; every tenant reads it.",
    ),
    (
        "events",
        "Publishing: one event or a batch, fanned out to every matching destination; replays \
         and reply channels.",
    ),
    (
        "deliveries",
        "One event to one destination, with every attempt: status, response, latency, error.",
    ),
    (
        "inbound",
        "Callback endpoints agents hand to slow jobs, the callbacks captured at them, and the \
         ways to wait for one.",
    ),
];

/// The shared error responses: status, component name, description.
const PROBLEMS: [(u16, &str, &str); 12] = [
    (400, "BadRequest", "The body is not valid JSON"),
    (
        401,
        "Unauthorized",
        "No valid `Authorization: Bearer <token>` header",
    ),
    (403, "Forbidden", "This operation needs the admin token"),
    (
        404,
        "NotFound",
        "No such object, or not visible to this token",
    ),
    (
        405,
        "MethodNotAllowed",
        "The endpoint's scheme accepts another method",
    ),
    (
        409,
        "Conflict",
        "The object's state does not allow this now",
    ),
    (410, "Gone", "The callback endpoint has expired"),
    (413, "PayloadTooLarge", "The body is larger than allowed"),
    (
        415,
        "UnsupportedMediaType",
        "The body must be `application/json`",
    ),
    (
        422,
        "UnprocessableEntity",
        "The input is invalid; `field` names what failed",
    ),
    (
        429,
        "TooManyRequests",
        "Rate limited; `Retry-After` says when to try again",
    ),
    (
        500,
        "InternalServerError",
        "An internal error occurred; it has been logged",
    ),
];

/// The document, with `servers` set to `public_url`.
pub fn document(public_url: &str) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    conventions(&mut doc, public_url);
    doc
}

fn conventions(doc: &mut Value, public_url: &str) {
    doc["servers"] = json!([{"url": public_url, "description": "This Herald"}]);
    doc["tags"] = TAGS
        .iter()
        .map(|(name, description)| json!({"name": name, "description": description}))
        .collect();
    doc["info"]["license"] = json!({"name": "Apache-2.0", "identifier": "Apache-2.0"});
    doc["security"] = json!([{"admin_token": []}, {"tenant_token": []}]);

    let components = doc["components"]
        .as_object_mut()
        .expect("utoipa writes components");
    components.insert(
        "securitySchemes".into(),
        json!({
            "admin_token": {
                "type": "http", "scheme": "bearer",
                "description": "The platform's admin token (`HERALD_ADMIN_TOKEN`): every tenant."
            },
            "tenant_token": {
                "type": "http", "scheme": "bearer",
                "description": "A tenant's token (`POST /v1/tenants/{tenant_id}/tokens`): that \
                                tenant's objects only; others answer 404."
            }
        }),
    );
    // utoipa inlines `Page<T>`'s items; point them at `T`'s own schema, so a generated
    // client's page holds the same `CallbackView` class that `get_callback` returns.
    if let Some(schemas) = components.get_mut("schemas").and_then(Value::as_object_mut) {
        let pages: Vec<(String, String)> = schemas
            .keys()
            .filter_map(|k| Some((k.clone(), k.strip_prefix("Page_")?.to_string())))
            .filter(|(_, item)| schemas.contains_key(item))
            .collect();
        for (page, item) in pages {
            schemas[&page]["properties"]["data"]["items"] =
                json!({"$ref": format!("#/components/schemas/{item}")});
        }
    }
    let mut responses = Map::new();
    for (status, name, description) in PROBLEMS {
        let mut response = json!({
            "description": description,
            "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}
            }}
        });
        if status == 429 {
            response["headers"] = json!({"Retry-After": {
                "description": "Seconds to wait before the next request",
                "schema": {"type": "integer"}
            }});
        }
        responses.insert(name.into(), response);
    }
    components.insert("responses".into(), Value::Object(responses));

    let paths = doc["paths"].as_object_mut().expect("utoipa writes paths");
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (_, op) in item.iter_mut() {
            operation(path, op);
        }
    }
}

fn operation(path: &str, op: &mut Value) {
    let id = op["operationId"].as_str().unwrap_or_default().to_string();
    let open = path.starts_with("/in/");
    let admin = ADMIN_ONLY.contains(&id.as_str());
    if open {
        op["security"] = json!([]);
    } else if admin {
        op["security"] = json!([{"admin_token": []}]);
        let description = op["description"].as_str().unwrap_or_default();
        let note = "Needs the admin token: a tenant token gets 403.";
        op["description"] = if description.is_empty() {
            note.into()
        } else {
            format!("{description}\n\n{note}").into()
        };
    } else if let Some(o) = op.as_object_mut() {
        o.remove("security");
    }
    let reads_json = op
        .pointer("/requestBody/content/application~1json")
        .is_some();
    let responses = op["responses"]
        .as_object_mut()
        .expect("every operation has responses");
    let mut statuses: Vec<u16> = responses
        .keys()
        .filter_map(|s| s.parse().ok())
        .filter(|s| *s >= 400)
        .collect();
    statuses.push(500);
    if !open {
        statuses.push(401);
    }
    if admin {
        statuses.push(403);
    }
    if reads_json {
        statuses.extend([400, 415]);
    }
    for status in statuses {
        let (_, name, _) = PROBLEMS
            .iter()
            .find(|(s, _, _)| *s == status)
            .unwrap_or_else(|| panic!("{id}: no shared response for {status}"));
        responses.insert(
            status.to_string(),
            json!({"$ref": format!("#/components/responses/{name}")}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = vec![];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn every_operation_has_a_unique_snake_case_id_a_description_per_response_and_a_tag() {
        let doc = document("http://127.0.0.1:8080");
        let mut ids = std::collections::BTreeSet::new();
        for (path, method, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                !id.is_empty() && id.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{method} {path}: operationId `{id}`"
            );
            assert!(ids.insert(id.to_string()), "{id} twice");
            assert!(op["tags"][0].is_string(), "{id}: no tag");
            for (status, r) in op["responses"].as_object().unwrap() {
                let described = r["description"].as_str().is_some_and(|d| !d.is_empty())
                    || r["$ref"].is_string();
                assert!(described, "{id} {status}: no description");
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let in_path = path.contains(&format!("{{{name}}}"));
                assert_eq!(p["in"] == "path", in_path, "{id}: parameter {name}");
            }
        }
        for id in ADMIN_ONLY {
            assert!(ids.contains(id), "ADMIN_ONLY names unknown {id}");
        }
    }

    #[test]
    fn errors_are_shared_problem_json_responses_and_tokens_are_declared() {
        let doc = document("https://hooks.example.com");
        assert_eq!(doc["servers"][0]["url"], "https://hooks.example.com");
        for (path, _, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap();
            let responses = op["responses"].as_object().unwrap();
            for (status, r) in responses {
                if status.as_str() >= "400" {
                    let target = r["$ref"].as_str().unwrap_or_default();
                    assert!(
                        target.starts_with("#/components/responses/"),
                        "{id} {status}"
                    );
                }
            }
            assert!(responses.contains_key("500"), "{id}");
            if path.starts_with("/in/") {
                assert_eq!(op["security"], json!([]), "{id}");
            } else {
                assert!(responses.contains_key("401"), "{id}");
            }
            if ADMIN_ONLY.contains(&id) {
                assert_eq!(op["security"], json!([{"admin_token": []}]), "{id}");
                assert!(responses.contains_key("403"), "{id}");
            }
        }
        for (_, name, _) in PROBLEMS {
            let r = &doc["components"]["responses"][name];
            assert_eq!(
                r["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem"
            );
        }
    }
}
