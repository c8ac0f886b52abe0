//! The rules of RabbitMQ destinations: the broker URL (and how it is shown without its
//! password), exchange names, and the routing-key template.
//!
//! Pure functions, like the rest of `domain`: the publisher in `outbound::amqp` and the
//! destination service both rely on what is checked here.
//!
//! `amqp://` and `amqps://` (TLS, see [`crate::outbound::amqp::AmqpTls`]).

use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use super::validate::{self, Check, Invalid, MAX_URL};

/// AMQP short strings (exchange names, routing keys) are at most 255 bytes on the wire.
pub const MAX_SHORT_STRING: usize = 255;

/// The default routing key: the event's topic, which suits a topic exchange bound with
/// patterns like `job.#`.
pub const DEFAULT_ROUTING_KEY: &str = "{topic}";

/// An `amqp://` or `amqps://` broker URL, credentials included.
///
/// The password must never reach an API answer or a log line, so `Serialize` and `Debug` both
/// print the redacted form; only [`AmqpUrl::expose`] gives the real URL, for connecting.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AmqpUrl(String);

impl AmqpUrl {
    /// Checks a URL a tenant typed: `amqp` or `amqps`, a host, no fragment or query.
    pub fn parse(field: &str, raw: &str) -> Result<Self, Invalid> {
        if raw.len() > MAX_URL {
            return Err(Invalid::new(
                field,
                format!("must be at most {MAX_URL} characters"),
            ));
        }
        let url = url::Url::parse(raw)
            .map_err(|e| Invalid::new(field, format!("is not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "amqp" | "amqps") {
            return Err(Invalid::new(field, "must be an amqp:// or amqps:// URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Invalid::new(field, "must have a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Invalid::new(
                field,
                "must not contain a query or a fragment",
            ));
        }
        // The path is the virtual host: one segment at most (`/%2f` is the default vhost `/`).
        if url.path().trim_start_matches('/').contains('/') {
            return Err(Invalid::new(
                field,
                "the path is the virtual host and must be a single segment (use %2f for `/`)",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// Wraps a URL read back from the store, which was checked when it was saved.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The URL with its password: for connecting, and for the store to save.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL as it may be shown: the password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// `amqp://user:secret@host/vhost` → `amqp://user:***@host/vhost`. A URL that does not parse
/// is replaced entirely: it might be nothing but a password.
pub fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "<unparseable URL>".to_string(),
    }
}

impl Serialize for AmqpUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl std::fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AmqpUrl({})", self.redacted())
    }
}

/// Where a RabbitMQ destination publishes. Its fields appear flat in the destination's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AmqpTarget {
    /// The broker, password shown as `***`.
    #[serde(rename = "amqp_url")]
    #[schema(value_type = String, example = "amqp://herald:***@rabbit.example.com:5672/%2f")]
    pub url: AmqpUrl,
    /// The exchange messages are published to; `""` is the default exchange, which routes by
    /// queue name.
    pub exchange: String,
    /// A template: `{topic}` and `{tenant_id}` are replaced per message.
    pub routing_key: String,
}

// The OpenAPI view of a destination's flattened `Option<AmqpTarget>`: the three fields are
// there on `type: "rabbitmq"` destinations and absent on webhooks, which a nullable
// `AmqpTarget` (an object or `null`, merged into the destination) cannot say.
/// A RabbitMQ destination's broker, exchange and routing key; absent on webhook destinations.
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used: the JSON is written by `AmqpTarget`.
pub struct AmqpTargetFields {
    /// `rabbitmq` only: the broker, password shown as `***`.
    #[schema(example = "amqp://herald:***@rabbit.example.com:5672/%2f")]
    amqp_url: Option<String>,
    /// `rabbitmq` only: the exchange messages are published to; `""` is the default exchange,
    /// which routes by queue name.
    exchange: Option<String>,
    /// `rabbitmq` only: a template; `{topic}` and `{tenant_id}` are replaced per message.
    routing_key: Option<String>,
}

/// An exchange name as RabbitMQ accepts it: up to 255 letters, digits and `-_.:`.
pub fn exchange(field: &str, name: &str) -> Check {
    validate::plain_name(field, name, 0..=MAX_SHORT_STRING, "-_.:")
}

/// One piece of a routing-key template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Topic,
    TenantId,
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                out.push(Piece::Text(rest));
                break;
            }
            Some(i) if rest.as_bytes()[i] == b'}' => {
                return Err("has a `}` without a matching `{`".into());
            }
            Some(i) => {
                if i > 0 {
                    out.push(Piece::Text(&rest[..i]));
                }
                let after = &rest[i + 1..];
                let end = after
                    .find('}')
                    .ok_or_else(|| "has a `{` without a matching `}`".to_string())?;
                out.push(match &after[..end] {
                    "topic" => Piece::Topic,
                    "tenant_id" => Piece::TenantId,
                    other => {
                        return Err(format!(
                            "uses `{{{other}}}`; only {{topic}} and {{tenant_id}} are known"
                        ));
                    }
                });
                rest = &after[end + 1..];
            }
        }
    }
    Ok(out)
}

/// Checks a routing-key template when the destination is saved.
pub fn routing_key(field: &str, template: &str) -> Check {
    if template.len() > MAX_SHORT_STRING {
        return Err(Invalid::new(
            field,
            format!("must be at most {MAX_SHORT_STRING} characters"),
        ));
    }
    if template.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    pieces(template)
        .map(|_| ())
        .map_err(|m| Invalid::new(field, m))
}

/// The routing key of one message. Errs when the result is longer than AMQP allows (a long
/// topic in a long template), which makes the attempt fail with that reason.
pub fn render_routing_key(template: &str, topic: &str, tenant_id: &str) -> Result<String, String> {
    let mut key = String::with_capacity(template.len() + topic.len());
    for p in pieces(template)? {
        key.push_str(match p {
            Piece::Text(t) => t,
            Piece::Topic => topic,
            Piece::TenantId => tenant_id,
        });
    }
    if key.len() > MAX_SHORT_STRING {
        return Err(format!(
            "the routing key would be {} bytes; AMQP allows {MAX_SHORT_STRING}",
            key.len()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_a_password_is_shown_redacted_everywhere() {
        let u = AmqpUrl::parse("amqp_url", "amqp://herald:s3cret@rabbit.test:5672/%2f").unwrap();
        assert_eq!(u.redacted(), "amqp://herald:***@rabbit.test:5672/%2f");
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#""amqp://herald:***@rabbit.test:5672/%2f""#
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.expose(), "amqp://herald:s3cret@rabbit.test:5672/%2f");
    }

    #[test]
    fn a_url_without_a_password_is_shown_as_is() {
        let u = AmqpUrl::parse("amqp_url", "amqp://rabbit.test/prod").unwrap();
        assert_eq!(u.redacted(), "amqp://rabbit.test/prod");
    }

    #[test]
    fn only_amqp_urls_with_a_host_and_a_plain_vhost_are_accepted() {
        for bad in [
            "http://rabbit.test",
            "amqps://",
            "amqp://",
            "not a url",
            "amqp://h/a/b",
            "amqp://h/?heartbeat=5",
            "amqp://h/#x",
        ] {
            let e = AmqpUrl::parse("amqp_url", bad).unwrap_err();
            assert_eq!(e.field, "amqp_url", "{bad}");
        }
        assert!(AmqpUrl::parse("amqp_url", "amqp://127.0.0.1").is_ok());
        let tls = AmqpUrl::parse("amqp_url", "amqps://herald:pw@rabbit.test:5671/prod").unwrap();
        assert_eq!(tls.redacted(), "amqps://herald:***@rabbit.test:5671/prod");
    }

    #[test]
    fn exchange_names_follow_rabbitmq_rules() {
        assert!(exchange("exchange", "").is_ok(), "the default exchange");
        assert!(exchange("exchange", "acme.events-v1:x_y").is_ok());
        assert!(exchange("exchange", "with space").is_err());
        assert!(exchange("exchange", &"x".repeat(256)).is_err());
    }

    #[test]
    fn routing_key_templates_know_topic_and_tenant_only() {
        assert!(routing_key("routing_key", "{topic}").is_ok());
        assert!(routing_key("routing_key", "t.{tenant_id}.{topic}").is_ok());
        assert!(routing_key("routing_key", "plain").is_ok());
        for bad in ["{data}", "{topic", "topic}", "a{}b"] {
            assert_eq!(
                routing_key("routing_key", bad).unwrap_err().field,
                "routing_key",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_rendered_routing_key_substitutes_every_placeholder() {
        assert_eq!(
            render_routing_key("{tenant_id}.{topic}.{topic}", "job.done", "acme").unwrap(),
            "acme.job.done.job.done"
        );
        assert_eq!(
            render_routing_key(DEFAULT_ROUTING_KEY, "job.done", "acme").unwrap(),
            "job.done"
        );
    }

    #[test]
    fn a_routing_key_longer_than_amqp_allows_is_an_error() {
        let topic = "t".repeat(200);
        assert!(render_routing_key("{topic}.{topic}", &topic, "acme").is_err());
    }
}
