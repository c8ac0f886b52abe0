//! Decoding a request body, shared by every way a request comes in: the HTTP API and the
//! publish queue read the same JSON and must refuse it in the same words.

use serde::de::DeserializeOwned;

use super::ServiceError;
use crate::domain::validate::Invalid;

/// Decodes JSON, naming the field that failed (`serde_path_to_error`): malformed JSON is
/// [`ServiceError::Malformed`]; a wrong type, a missing or an unknown field is
/// [`ServiceError::Invalid`] with the field's path (`events[1].topic`).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ServiceError::Malformed(format!("the body is not valid JSON: {inner}"))
            }
            _ => {
                // serde reports a missing or unknown field at the path of the object that
                // holds it; name the field itself.
                let msg = inner.to_string();
                let named = quoted_after(&msg, "missing field `")
                    .or_else(|| quoted_after(&msg, "unknown field `"));
                let field = match (path.as_str(), named) {
                    (".", Some(f)) => f.to_string(),
                    (p, Some(f)) if !p.ends_with(f) => format!("{p}.{f}"),
                    (p, _) => p.to_string(),
                };
                ServiceError::Invalid(Invalid::new(field, msg))
            }
        }
    })
}

/// The name serde quotes after `prefix` in its message.
fn quoted_after<'m>(msg: &'m str, prefix: &str) -> Option<&'m str> {
    msg.strip_prefix(prefix)?.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        topic: String,
        events: Option<Vec<Inner>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    fn field(e: ServiceError) -> String {
        match e {
            ServiceError::Invalid(i) => i.field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_json_is_told_apart_from_a_bad_field() {
        assert!(matches!(
            decode_json::<Body>(b"{not json"),
            Err(ServiceError::Malformed(_))
        ));
        assert_eq!(
            field(decode_json::<Body>(br#"{"topic": 1}"#).unwrap_err()),
            "topic"
        );
    }

    #[test]
    fn a_missing_or_unknown_field_is_named_by_its_own_path() {
        assert_eq!(field(decode_json::<Body>(b"{}").unwrap_err()), "topic");
        let e = decode_json::<Body>(br#"{"topic": "a", "events": [{"n": 1}, {"m": 2}]}"#);
        assert_eq!(field(e.unwrap_err()), "events[1].m");
    }
}
