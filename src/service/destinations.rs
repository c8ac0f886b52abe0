use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Herald, Result, ServiceError, page_limit};
use crate::domain::amqp::{self, AmqpTarget, AmqpUrl, DEFAULT_ROUTING_KEY};
use crate::domain::filter::Filter;
use crate::domain::ids::{Kind, new_id};
use crate::domain::model::{Destination, DestinationKind, DestinationOptions, Page, SigningSecret};
use crate::domain::signature::{self, SignatureKind};
use crate::domain::validate::{self, Invalid};
use crate::store::Scope;

/// Distinguishes a missing field (`None`) from an explicit `null` (`Some(Value::Null)`), so a
/// PATCH can clear a filter.
fn present<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDestination {
    #[serde(rename = "type")]
    pub kind: DestinationKind,
    /// `webhook`: the endpoint, `http(s)://…`.
    #[serde(default)]
    pub url: Option<String>,
    /// `rabbitmq`: the broker, `amqp(s)://user:password@host:port/vhost`. The API shows it
    /// only with the password replaced by `***`.
    #[serde(default)]
    pub amqp_url: Option<String>,
    /// `rabbitmq`: the exchange to publish to (`""`: the default exchange, which routes by
    /// queue name).
    #[serde(default)]
    pub exchange: Option<String>,
    /// `rabbitmq`: the routing key, a template over `{topic}` and `{tenant_id}`; default
    /// `{topic}`.
    #[serde(default)]
    pub routing_key: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Topic patterns: exact (`job.completed`), `*`, or with `*` segments (`job.*`); 1 to
    /// `max_topics_per_destination` (default 100).
    #[schema(min_items = 1, max_items = 100)]
    pub topics: Vec<String>,
    /// A JSON-match filter over `{topic, metadata, data}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub options: DestinationOptions,
    /// How requests are signed: `hmac` (the default; `v1` signatures with a shared secret) or
    /// `ed25519` (`v1a` signatures: Herald keeps the signing key and receivers verify with
    /// the public key the destination shows).
    #[serde(default)]
    pub signature: Option<SignatureKind>,
    /// The secret to sign with, generated when omitted: for `hmac` a Standard Webhooks secret
    /// (`whsec_` + base64 of 24-64 bytes; the prefix and padding are optional), for `ed25519`
    /// a signing key to import (`whsk_` + base64 of its 32-byte seed, or of seed and public
    /// key). A `whsk_` key alone chooses `ed25519`.
    #[serde(default)]
    #[schema(pattern = "^(whsec_|whsk_)?[A-Za-z0-9+/]+={0,2}$")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDestination {
    /// `webhook` only.
    #[serde(default)]
    pub url: Option<String>,
    /// `rabbitmq` only.
    #[serde(default)]
    pub amqp_url: Option<String>,
    /// `rabbitmq` only.
    #[serde(default)]
    pub exchange: Option<String>,
    /// `rabbitmq` only; `null` restores the default, `{topic}`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub routing_key: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Value>,
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// `null` removes the filter.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub options: Option<DestinationOptions>,
}

/// A destination as returned when it is created: the only time its HMAC secret is shown
/// (besides rotation). An ed25519 destination shows its public key instead, as always.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedDestination {
    #[serde(flatten)]
    pub destination: Destination,
    /// `hmac` destinations: the signing secret, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The secret a destination signs with, as asked for (`field` names the request's fields).
fn new_signing_secret(
    kind: Option<SignatureKind>,
    given: Option<String>,
    field: &str,
) -> Result<String> {
    let kind = kind
        .or_else(|| given.as_deref().map(SignatureKind::of))
        .unwrap_or_default();
    let Some(secret) = given else {
        return Ok(kind.generate());
    };
    if SignatureKind::of(&secret) != kind {
        let wanted = match kind {
            SignatureKind::Hmac => "an `hmac` destination takes a `whsec_` secret",
            SignatureKind::Ed25519 => "an `ed25519` destination takes a `whsk_` signing key",
        };
        return Err(Invalid::new(field, wanted).into());
    }
    kind.check(&secret)
        .map_err(|e| Invalid::new(field, e.to_string()))?;
    Ok(secret)
}

/// What a response shows of a new secret: an HMAC secret itself, never a signing key.
fn shown(secret: &str) -> Option<String> {
    (SignatureKind::of(secret) == SignatureKind::Hmac).then(|| secret.to_string())
}

impl Herald {
    pub(crate) fn check_url(&self, field: &str, raw: &str) -> Result<()> {
        let url = validate::webhook_url(field, raw, self.limits.strings.max_url)?;
        if self.policy.https_only && url.scheme() != "https" {
            return Err(Invalid::new(field, "must be https (https_only is on)").into());
        }
        self.check_literal_host(field, &url)
    }

    /// A destination whose host is a literal IP is checked against the SSRF policy when it
    /// is saved, so the mistake shows at once; names are checked when they are resolved, at
    /// every connect.
    fn check_literal_host(&self, field: &str, url: &url::Url) -> Result<()> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            Some(url::Host::Domain(d)) => crate::outbound::ssrf::parse_ip_literal(d),
            None => None,
        };
        if let Some(ip) = ip
            && let Err(blocked) = self.policy.check(ip)
        {
            return Err(Invalid::new(field, blocked.to_string()).into());
        }
        Ok(())
    }

    fn check_amqp_url(&self, field: &str, raw: &str) -> Result<AmqpUrl> {
        let amqp_url = AmqpUrl::parse(field, raw)?;
        let url = url::Url::parse(raw).map_err(|e| Invalid::new(field, e.to_string()))?;
        if self.policy.https_only && url.scheme() != "amqps" {
            // Plain AMQP is as readable on the wire as plain HTTP.
            return Err(Invalid::new(field, "https_only is on: use amqps://").into());
        }
        self.check_literal_host(field, &url)?;
        Ok(amqp_url)
    }

    /// Where a new destination sends: a webhook URL, or a broker, exchange and routing key.
    /// Each type's fields are required for it and refused for the other, naming the field.
    fn target(&self, req: &CreateDestination) -> Result<(Option<String>, Option<AmqpTarget>)> {
        let only = |field: &str, present: bool, kind: &str| -> Result<()> {
            if present {
                return Err(
                    Invalid::new(field, format!("applies only to {kind} destinations")).into(),
                );
            }
            Ok(())
        };
        let required = |field: &str, kind: &str| -> ServiceError {
            Invalid::new(field, format!("is required for {kind} destinations")).into()
        };
        match req.kind {
            DestinationKind::Webhook => {
                only("amqp_url", req.amqp_url.is_some(), "rabbitmq")?;
                only("exchange", req.exchange.is_some(), "rabbitmq")?;
                only("routing_key", req.routing_key.is_some(), "rabbitmq")?;
                let url = req
                    .url
                    .as_deref()
                    .ok_or_else(|| required("url", "webhook"))?;
                self.check_url("url", url)?;
                Ok((Some(url.to_string()), None))
            }
            DestinationKind::Rabbitmq => {
                only("url", req.url.is_some(), "webhook")?;
                let raw = req
                    .amqp_url
                    .as_deref()
                    .ok_or_else(|| required("amqp_url", "rabbitmq"))?;
                let url = self.check_amqp_url("amqp_url", raw)?;
                let exchange = req
                    .exchange
                    .clone()
                    .ok_or_else(|| required("exchange", "rabbitmq"))?;
                amqp::exchange("exchange", &exchange)?;
                let routing_key = req
                    .routing_key
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ROUTING_KEY.into());
                amqp::routing_key("routing_key", &routing_key)?;
                Ok((
                    None,
                    Some(AmqpTarget {
                        url,
                        exchange,
                        routing_key,
                    }),
                ))
            }
        }
    }

    /// Applies a PATCH's target fields to `d`, refusing those of the other type.
    fn update_target(&self, d: &mut Destination, req: &UpdateDestination) -> Result<()> {
        let refuse = |field: &str, kind: &str| -> ServiceError {
            Invalid::new(field, format!("applies only to {kind} destinations")).into()
        };
        match d.amqp.as_mut() {
            None => {
                for (field, present) in [
                    ("amqp_url", req.amqp_url.is_some()),
                    ("exchange", req.exchange.is_some()),
                    ("routing_key", req.routing_key.is_some()),
                ] {
                    if present {
                        return Err(refuse(field, "rabbitmq"));
                    }
                }
                if let Some(url) = &req.url {
                    self.check_url("url", url)?;
                    d.url = Some(url.clone());
                }
            }
            Some(target) => {
                if req.url.is_some() {
                    return Err(refuse("url", "webhook"));
                }
                if let Some(raw) = &req.amqp_url {
                    target.url = self.check_amqp_url("amqp_url", raw)?;
                }
                if let Some(exchange) = &req.exchange {
                    amqp::exchange("exchange", exchange)?;
                    target.exchange = exchange.clone();
                }
                match &req.routing_key {
                    None => {}
                    Some(Value::Null) => target.routing_key = DEFAULT_ROUTING_KEY.into(),
                    Some(Value::String(key)) => {
                        amqp::routing_key("routing_key", key)?;
                        target.routing_key = key.clone();
                    }
                    Some(_) => {
                        return Err(Invalid::new("routing_key", "must be a string or null").into());
                    }
                }
            }
        }
        Ok(())
    }

    fn check_filter(&self, filter: &Option<Value>) -> Result<()> {
        if let Some(f) = filter
            && !f.is_null()
        {
            Filter::parse_with(f, self.limits.filter)
                .map_err(|e| Invalid::new(format!("filter.{}", e.path), e.message))?;
        }
        Ok(())
    }

    pub async fn create_destination(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        req: CreateDestination,
    ) -> Result<CreatedDestination> {
        Self::check_tenant(scope, tenant_id)?;
        let (url, amqp) = self.target(&req)?;
        validate::description(
            "description",
            &req.description,
            self.limits.strings.max_description,
        )?;
        validate::topics("topics", &req.topics, self.limits.max_topics)?;
        self.catalog_checker()
            .await?
            .check_patterns("topics", &req.topics)?;
        self.check_filter(&req.filter)?;
        validate::headers(
            "headers",
            &req.headers,
            self.limits.max_headers,
            self.limits.strings.max_header_value,
        )?;
        validate::options("options", &req.options)?;
        let secret = new_signing_secret(req.signature, req.secret, "secret")?;
        let now = self.clock.now();
        let d = Destination {
            id: new_id(Kind::Destination),
            tenant_id: tenant_id.to_string(),
            kind: req.kind,
            url,
            amqp,
            description: req.description,
            topics: req.topics,
            filter: req.filter.filter(|f| !f.is_null()),
            headers: req.headers,
            options: req.options,
            enabled: true,
            disabled_reason: None,
            disabled_at: None,
            secrets: vec![SigningSecret {
                secret: secret.clone(),
                expires_at: None,
            }],
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_destination(&d, self.limits.max_destinations_per_tenant)
            .await?;
        Ok(CreatedDestination {
            secret: shown(&secret),
            destination: d,
        })
    }

    pub async fn get_destination(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        id: &str,
    ) -> Result<Destination> {
        Self::check_tenant(scope, tenant_id)?;
        self.store
            .get_destination(tenant_id, id)
            .await?
            .ok_or(ServiceError::NotFound("destination"))
    }

    pub async fn list_destinations(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<Destination>> {
        Self::check_tenant(scope, tenant_id)?;
        if self.store.get_tenant(tenant_id).await?.is_none() {
            return Err(ServiceError::NotFound("tenant"));
        }
        let limit = page_limit(limit);
        let rows = self
            .store
            .list_destinations(tenant_id, after, limit + 1)
            .await?;
        Ok(Page::from_rows(rows, limit as usize, |d| d.id.clone()))
    }

    pub async fn update_destination(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        id: &str,
        req: UpdateDestination,
    ) -> Result<Destination> {
        let mut d = self.get_destination(scope, tenant_id, id).await?;
        self.update_target(&mut d, &req)?;
        if let Some(desc) = req.description {
            d.description = match desc {
                Value::Null => None,
                Value::String(s) => Some(s),
                _ => return Err(Invalid::new("description", "must be a string or null").into()),
            };
            validate::description(
                "description",
                &d.description,
                self.limits.strings.max_description,
            )?;
        }
        if let Some(topics) = req.topics {
            validate::topics("topics", &topics, self.limits.max_topics)?;
            self.catalog_checker()
                .await?
                .check_patterns("topics", &topics)?;
            d.topics = topics;
        }
        if let Some(filter) = req.filter {
            let filter = Some(filter).filter(|f| !f.is_null());
            self.check_filter(&filter)?;
            d.filter = filter;
        }
        if let Some(headers) = req.headers {
            validate::headers(
                "headers",
                &headers,
                self.limits.max_headers,
                self.limits.strings.max_header_value,
            )?;
            d.headers = headers;
        }
        if let Some(options) = req.options {
            validate::options("options", &options)?;
            d.options = options;
        }
        d.updated_at = self.clock.now();
        if !self.store.update_destination(&d).await? {
            return Err(ServiceError::NotFound("destination"));
        }
        Ok(d)
    }

    pub async fn delete_destination(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        id: &str,
    ) -> Result<()> {
        Self::check_tenant(scope, tenant_id)?;
        if self
            .store
            .delete_destination(tenant_id, id, self.clock.now())
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound("destination"))
        }
    }

    /// Enables or disables a destination. Events published while it is disabled are recorded
    /// as `skipped` deliveries.
    pub async fn set_destination_enabled(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        id: &str,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<Destination> {
        let mut d = self.get_destination(scope, tenant_id, id).await?;
        let now = self.clock.now();
        if d.enabled != enabled {
            d.enabled = enabled;
            d.disabled_at = (!enabled).then_some(now);
            d.disabled_reason =
                (!enabled).then(|| reason.unwrap_or_else(|| "disabled by request".into()));
            d.updated_at = now;
            if !self.store.update_destination(&d).await? {
                return Err(ServiceError::NotFound("destination"));
            }
        }
        Ok(d)
    }
}

/// How long a rotated-out secret keeps signing, by default: receivers get a day to switch.
pub const DEFAULT_ROTATION_OVERLAP_SECS: u64 = 24 * 3600;
/// Longest overlap accepted.
pub const MAX_ROTATION_OVERLAP_SECS: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret, of the kind the destination signs with (`whsec_…` for `hmac`, a
    /// `whsk_…` signing key for `ed25519`); generated when omitted.
    #[serde(default)]
    #[schema(pattern = "^(whsec_|whsk_)?[A-Za-z0-9+/]+={0,2}$")]
    pub secret: Option<String>,
    /// How long the previous secret keeps signing (default 24 h, 0 = stop at once).
    #[serde(default)]
    pub overlap_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// `hmac`: the new secret (shown only here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `ed25519`: the new public key (the destination shows it too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// When the previous secret stops signing.
    #[serde(with = "crate::domain::time::serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub previous_expires_at: crate::domain::time::Millis,
}

impl Herald {
    /// Replaces the signing secret. Until the overlap ends every request carries two
    /// signatures, one per secret, so receivers can switch at their own pace.
    pub async fn rotate_secret(
        &self,
        scope: Scope<'_>,
        tenant_id: &str,
        id: &str,
        req: RotateSecret,
    ) -> Result<RotatedSecret> {
        let overlap = req.overlap_secs.unwrap_or(DEFAULT_ROTATION_OVERLAP_SECS);
        if overlap > MAX_ROTATION_OVERLAP_SECS {
            return Err(Invalid::new(
                "overlap_secs",
                format!("must be at most {MAX_ROTATION_OVERLAP_SECS}"),
            )
            .into());
        }
        let mut d = self.get_destination(scope, tenant_id, id).await?;
        // A rotation keeps the kind: receivers verify the old and new keys the same way.
        let kind = d
            .secrets
            .first()
            .map(|s| SignatureKind::of(&s.secret))
            .unwrap_or_default();
        let secret = new_signing_secret(Some(kind), req.secret, "secret")?;
        let now = self.clock.now();
        let previous_expires_at = now + (overlap * 1000) as i64;
        // Secrets already past their overlap are dropped; the current one starts expiring.
        d.secrets.retain(|s| s.expires_at.is_none_or(|t| t > now));
        for s in &mut d.secrets {
            s.expires_at = Some(
                s.expires_at
                    .map_or(previous_expires_at, |t| t.min(previous_expires_at)),
            );
        }
        d.secrets.insert(
            0,
            SigningSecret {
                secret: secret.clone(),
                expires_at: None,
            },
        );
        d.updated_at = now;
        if !self.store.update_destination(&d).await? {
            return Err(ServiceError::NotFound("destination"));
        }
        Ok(RotatedSecret {
            public_key: signature::public_key_of(&secret),
            secret: shown(&secret),
            previous_expires_at,
        })
    }
}
