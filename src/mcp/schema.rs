//! Tool schemas in the portable subset of JSON Schema that every MCP client and model
//! provider's tool dialect reads alike (the MCP Inspector's `--strict` rules).
//!
//! schemars writes what serde means, in full JSON Schema 2020-12. Three of its spellings are
//! legal but not portable, so [`portable`] rewrites them once, for every tool, when the router
//! is built:
//!
//! - `"type": ["string", "null"]` (an `Option`). Dialects with one `type` per schema (Gemini's
//!   function declarations) reject or weaken it. In an input an absent argument means the
//!   same as `null` (every optional argument is `#[serde(default)]`), so the schema keeps the
//!   one type and the property stays optional. In an output `null` is a value Herald really
//!   writes, so it becomes `anyOf: [{"type": "string"}, {"type": "null"}]`.
//! - `true` (a `serde_json::Value`, "anything"), and a schema with only a description: typed
//!   as what they are, any JSON value, spelled as an `anyOf` of the six JSON types.
//! - `"additionalProperties": true` (a free-form map): dropped, since it is the default.
//!
//! A test walks every tool's schemas and fails on any of these, and on a property without a
//! description.

use serde_json::{Map, Value, json};

/// Which contract a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Tool arguments: what Herald accepts.
    Input,
    /// Tool results: what Herald writes.
    Output,
}

/// Rewrites `schema` (a tool's input or output schema) into the portable subset.
pub fn portable(schema: &mut Map<String, Value>, direction: Direction) {
    for (key, value) in schema.iter_mut() {
        match key.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                if let Some(map) = value.as_object_mut() {
                    for sub in map.values_mut() {
                        subschema(sub, direction);
                    }
                }
            }
            "items" | "not" | "contains" | "propertyNames" | "if" | "then" | "else" => {
                subschema(value, direction)
            }
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                if let Some(list) = value.as_array_mut() {
                    for sub in list {
                        subschema(sub, direction);
                    }
                }
            }
            "additionalProperties" if value.is_object() => subschema(value, direction),
            _ => {}
        }
    }
    if schema.get("additionalProperties") == Some(&Value::Bool(true)) {
        schema.remove("additionalProperties");
    }
    nullable_type(schema, direction);
    nullable_any_of(schema, direction);
}

/// A schema in a position that holds one (a property, an item, a branch).
fn subschema(value: &mut Value, direction: Direction) {
    if value == &Value::Bool(true) {
        *value = any_json(None);
        return;
    }
    let Some(map) = value.as_object_mut() else {
        return;
    };
    const TYPING: [&str; 8] = [
        "type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "not",
    ];
    if !TYPING.iter().any(|k| map.contains_key(*k)) {
        let description = map
            .get("description")
            .and_then(Value::as_str)
            .map(String::from);
        *value = any_json(description);
        return;
    }
    portable(map, direction);
}

/// Any JSON value, as an `anyOf` of single types.
fn any_json(description: Option<String>) -> Value {
    let mut v = json!({"anyOf": [
        {"type": "object"}, {"type": "array"}, {"type": "string"},
        {"type": "number"}, {"type": "boolean"}, {"type": "null"}
    ]});
    v["description"] = description
        .unwrap_or_else(|| "Any JSON value.".into())
        .into();
    v
}

/// `"type": [T, "null"]`.
fn nullable_type(schema: &mut Map<String, Value>, direction: Direction) {
    let Some(Value::Array(types)) = schema.get("type") else {
        return;
    };
    let non_null: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
    let had_null = non_null.len() < types.len();
    let single = |t: Value| -> Map<String, Value> {
        let mut branch = schema.clone();
        branch.insert("type".into(), t);
        branch.remove("description");
        branch.remove("title");
        branch.remove("default");
        branch
    };
    let mut branches: Vec<Value> = non_null.into_iter().map(|t| single(t).into()).collect();
    if direction == Direction::Input && branches.len() == 1 {
        schema.insert("type".into(), branches.remove(0)["type"].clone());
        return;
    }
    if had_null && direction == Direction::Output {
        branches.push(json!({"type": "null"}));
    }
    let keep: Vec<(String, Value)> = ["description", "title", "default"]
        .iter()
        .filter_map(|k| schema.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    schema.clear();
    schema.extend(keep);
    schema.insert("anyOf".into(), Value::Array(branches));
}

/// `anyOf: [X, {"type": "null"}]` in an input: the argument is optional, so `X` alone.
fn nullable_any_of(schema: &mut Map<String, Value>, direction: Direction) {
    if direction != Direction::Input {
        return;
    }
    let Some(Value::Array(branches)) = schema.get_mut("anyOf") else {
        return;
    };
    branches.retain(|b| b != &json!({"type": "null"}));
    if branches.len() == 1 {
        let only = branches.remove(0);
        schema.remove("anyOf");
        if let Value::Object(only) = only {
            for (k, v) in only {
                schema.entry(k).or_insert(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(schema: Value, direction: Direction) -> Value {
        let Value::Object(mut map) = schema else {
            panic!("a schema object")
        };
        portable(&mut map, direction);
        Value::Object(map)
    }

    #[test]
    fn an_optional_argument_keeps_one_type_and_an_optional_result_says_null_in_any_of() {
        let s = json!({"type": "object", "properties": {
            "after": {"type": ["integer", "null"], "format": "int64", "description": "d"}
        }});
        let input = rewritten(s.clone(), Direction::Input);
        assert_eq!(
            input["properties"]["after"],
            json!({"type": "integer", "format": "int64", "description": "d"})
        );
        let output = rewritten(s, Direction::Output);
        assert_eq!(
            output["properties"]["after"],
            json!({"description": "d", "anyOf": [
                {"type": "integer", "format": "int64"}, {"type": "null"}
            ]})
        );
    }

    #[test]
    fn anything_is_spelled_as_any_json_and_free_form_maps_drop_additional_properties() {
        let s = json!({"type": "object", "properties": {
            "data": true,
            "body": {"description": "the body"},
            "meta": {"type": "object", "additionalProperties": true}
        }, "$defs": {"X": {"type": "object", "properties": {"v": true}}}});
        let out = rewritten(s, Direction::Input);
        for path in [
            "/properties/data",
            "/properties/body",
            "/$defs/X/properties/v",
        ] {
            let v = out.pointer(path).unwrap();
            assert_eq!(v["anyOf"].as_array().unwrap().len(), 6, "{path}: {v}");
        }
        assert_eq!(out["properties"]["body"]["description"], "the body");
        assert_eq!(out["properties"]["meta"], json!({"type": "object"}));
    }

    #[test]
    fn an_optional_reference_in_an_input_is_the_reference_itself() {
        let s = json!({"type": "object", "properties": {
            "status": {"anyOf": [{"$ref": "#/$defs/S"}, {"type": "null"}], "description": "d"}
        }});
        let out = rewritten(s, Direction::Input);
        assert_eq!(
            out["properties"]["status"],
            json!({"$ref": "#/$defs/S", "description": "d"})
        );
    }
}
