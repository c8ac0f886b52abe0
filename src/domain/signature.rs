//! Standard Webhooks secrets and signatures: the one parser of `whsec_` secrets and the one
//! signer, used by outbound destinations (HTTP and RabbitMQ), the operator webhook, inbound
//! `standard_webhooks` endpoints and the MCP `verify_signature` tool.
//!
//! A signature is `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the key is
//! the base64-decoded part of the secret after `whsec_`. During a rotation a delivery is signed
//! with every active secret, and the `webhook-signature` header carries the signatures
//! space-separated, so receivers that have either secret accept it.
//!
//! # Asymmetric signatures (`v1a`)
//!
//! A destination may sign with ed25519 instead: Herald keeps the signing key (`whsk_` +
//! base64 of its 32-byte seed; the 64-byte seed-and-public-key form that libsodium prints is
//! read too) and the receiver holds only the public key (`whpk_` + base64 of its 32 bytes),
//! which can verify but never forge. The signed content is the same `"{id}.{timestamp}.{body}"`
//! and the entry is `v1a,<base64 of the 64-byte signature>`. Which one a stored secret is,
//! its prefix says: every signer here takes either, so rotation, RabbitMQ and the operator
//! webhook need no second path.
//!
//! # Which secrets are accepted
//!
//! [`parse_secret`] reads a secret under one of two rules ([`Accept`]):
//!
//! - [`Accept::New`], for every secret a user hands Herald (a destination's, an inbound
//!   endpoint's, the operator webhook's, one passed to `verify_signature`): an optional `whsec_`
//!   prefix, then standard base64 (padding optional) of 24–64 bytes.
//!   - The prefix is optional because the Standard Webhooks reference libraries strip it only
//!     when present, so senders built on them (and their dashboards) also hand out the bare
//!     base64 form; both name the same key.
//!   - Padding is optional because the key is what matters and some senders print it without.
//!   - 24–64 bytes is the range the Standard Webhooks specification gives for secrets; a
//!     shorter key is guessable, and every secret Herald generates is 32 bytes.
//! - [`Accept::Stored`], for secrets already saved: any non-empty base64 key, standard or
//!   URL-safe alphabet. Before this parser, inbound endpoints accepted either alphabet and any
//!   length; endpoints saved under those rules must keep verifying, so what is stored is read
//!   as it was accepted then, and only new secrets meet the stricter rule.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
/// An ed25519 signing key, kept by Herald.
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// An ed25519 public key, handed to receivers.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret must be `whsec_` followed by base64")]
    NotBase64,
    #[error("a signing secret must decode to 24-64 bytes")]
    WrongLength,
    #[error("an ed25519 signing key must be `whsk_` followed by base64 of 32 or 64 bytes")]
    NotASigningKey,
    #[error("an ed25519 public key must be `whpk_` followed by base64 of 32 bytes")]
    NotAPublicKey,
}

/// How a destination signs: HMAC-SHA256 with a shared secret (`v1`), or ed25519 with a key
/// pair whose public half the receiver holds (`v1a`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SignatureKind {
    #[default]
    Hmac,
    Ed25519,
}

impl SignatureKind {
    /// Which kind a stored secret or key is, by its prefix.
    pub fn of(secret: &str) -> SignatureKind {
        if secret.trim_start().starts_with(SIGNING_KEY_PREFIX) {
            SignatureKind::Ed25519
        } else {
            SignatureKind::Hmac
        }
    }

    /// A fresh secret (`whsec_…`) or signing key (`whsk_…`) of this kind.
    pub fn generate(self) -> String {
        match self {
            SignatureKind::Hmac => generate_secret(),
            SignatureKind::Ed25519 => {
                crate::domain::secrets::generate(crate::domain::secrets::SecretKind::SigningKey)
            }
        }
    }

    /// Checks a secret or key a user supplies for this kind.
    pub fn check(self, secret: &str) -> Result<(), SecretError> {
        match self {
            SignatureKind::Hmac => parse_secret(secret, Accept::New).map(|_| ()),
            SignatureKind::Ed25519 => parse_signing_key(secret).map(|_| ()),
        }
    }
}

/// Which rule [`parse_secret`] applies; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// A secret being saved or supplied now.
    New,
    /// A secret read back from the store, saved under any earlier rule.
    Stored,
}

/// A fresh random secret, `whsec_` + base64 of 32 bytes.
pub fn generate_secret() -> String {
    crate::domain::secrets::generate(crate::domain::secrets::SecretKind::SigningSecret)
}

/// The HMAC key of a Standard Webhooks secret.
pub fn parse_secret(secret: &str, accept: Accept) -> Result<Vec<u8>, SecretError> {
    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
    const URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
    let key = match accept {
        Accept::New => STD.decode(encoded),
        Accept::Stored => STD.decode(encoded).or_else(|_| URL.decode(encoded)),
    }
    .map_err(|_| SecretError::NotBase64)?;
    let allowed = match accept {
        Accept::New => (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()),
        Accept::Stored => !key.is_empty(),
    };
    if !allowed {
        return Err(match accept {
            Accept::New => SecretError::WrongLength,
            Accept::Stored => SecretError::NotBase64,
        });
    }
    Ok(key)
}

/// The raw HMAC-SHA256 of `"{id}.{timestamp}.{body}"`: what a `v1,` signature encodes.
pub fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// One signature, `v1,<base64>`, with an already decoded key.
pub fn sign_with_key(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", B64.encode(mac(key, msg_id, timestamp, body)))
}

/// One signature with a stored secret (read under [`Accept::Stored`]) or signing key: `v1,`
/// for a `whsec_` secret, `v1a,` for a `whsk_` key.
pub fn sign(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SecretError> {
    match SignatureKind::of(secret) {
        SignatureKind::Hmac => {
            let key = parse_secret(secret, Accept::Stored)?;
            Ok(sign_with_key(&key, msg_id, timestamp, body))
        }
        SignatureKind::Ed25519 => {
            let key = parse_signing_key(secret)?;
            let signature = key.sign(&signed_content(msg_id, timestamp, body));
            Ok(format!("v1a,{}", B64.encode(signature.as_ref())))
        }
    }
}

/// What both `v1` and `v1a` sign: `"{id}.{timestamp}.{body}"`.
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(msg_id.len() + 22 + body.len());
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The key pair of a `whsk_` signing key: its 32-byte seed, or the 64 bytes of seed and
/// public key (checked to belong together).
pub fn parse_signing_key(key: &str) -> Result<Ed25519KeyPair, SecretError> {
    let encoded = key
        .trim()
        .strip_prefix(SIGNING_KEY_PREFIX)
        .ok_or(SecretError::NotASigningKey)?;
    let bytes = B64
        .decode(encoded)
        .map_err(|_| SecretError::NotASigningKey)?;
    match bytes.len() {
        32 => Ed25519KeyPair::from_seed_unchecked(&bytes),
        64 => Ed25519KeyPair::from_seed_and_public_key(&bytes[..32], &bytes[32..]),
        _ => return Err(SecretError::NotASigningKey),
    }
    .map_err(|_| SecretError::NotASigningKey)
}

/// The `whpk_` public key of a stored `whsk_` signing key; `None` for an HMAC secret.
pub fn public_key_of(secret: &str) -> Option<String> {
    let key = parse_signing_key(secret).ok()?;
    Some(format!(
        "{PUBLIC_KEY_PREFIX}{}",
        B64.encode(key.public_key().as_ref())
    ))
}

/// The 32 bytes of a `whpk_` public key.
pub fn parse_public_key(key: &str) -> Result<[u8; 32], SecretError> {
    let encoded = key
        .trim()
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .ok_or(SecretError::NotAPublicKey)?;
    let bytes = B64
        .decode(encoded)
        .map_err(|_| SecretError::NotAPublicKey)?;
    bytes.try_into().map_err(|_| SecretError::NotAPublicKey)
}

/// Whether `signature` (the base64 after `v1a,`) is `public_key`'s ed25519 signature of the
/// message.
pub fn verify_v1a(
    public_key: &[u8; 32],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signature: &[u8],
) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&signed_content(msg_id, timestamp, body), signature)
        .is_ok()
}

/// The `webhook-signature` header value: one entry per active secret or signing key.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut header = String::new();
    for secret in secrets {
        // Stored secrets were validated on save; an unreadable one is skipped rather than
        // blocking the delivery (the remaining signatures still verify).
        if let Ok(sig) = sign(secret, msg_id, timestamp, body) {
            if !header.is_empty() {
                header.push(' ');
            }
            header.push_str(&sig);
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../../tests/vectors/signatures.json");

    #[test]
    fn the_signer_reproduces_every_standard_webhooks_vector() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let vectors = v["standard_webhooks"].as_array().unwrap();
        assert!(!vectors.is_empty());
        for t in vectors {
            let sig = sign(
                t["secret"].as_str().unwrap(),
                t["id"].as_str().unwrap(),
                t["timestamp"].as_i64().unwrap(),
                t["payload"].as_str().unwrap().as_bytes(),
            )
            .unwrap();
            assert_eq!(sig, t["signature"].as_str().unwrap());
        }
    }

    fn v1a_vectors() -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let vectors = v["standard_webhooks_v1a"].as_array().unwrap().clone();
        assert!(!vectors.is_empty());
        vectors
    }

    #[test]
    fn the_ed25519_signer_reproduces_every_v1a_vector_from_either_key_form() {
        for t in v1a_vectors() {
            let (id, ts) = (t["id"].as_str().unwrap(), t["timestamp"].as_i64().unwrap());
            let body = t["payload"].as_str().unwrap().as_bytes();
            for key in ["signing_key", "signing_key_64"] {
                let sig = sign(t[key].as_str().unwrap(), id, ts, body).unwrap();
                assert_eq!(
                    sig,
                    t["signature"].as_str().unwrap(),
                    "{key}: {}",
                    t["case"]
                );
            }
            assert_eq!(
                public_key_of(t["signing_key"].as_str().unwrap()).as_deref(),
                t["public_key"].as_str()
            );
        }
    }

    #[test]
    fn a_v1a_signature_verifies_with_its_public_key_and_nothing_else() {
        for t in v1a_vectors() {
            let (id, ts) = (t["id"].as_str().unwrap(), t["timestamp"].as_i64().unwrap());
            let body = t["payload"].as_str().unwrap().as_bytes();
            let key = parse_public_key(t["public_key"].as_str().unwrap()).unwrap();
            let sig = B64
                .decode(
                    t["signature"]
                        .as_str()
                        .unwrap()
                        .strip_prefix("v1a,")
                        .unwrap(),
                )
                .unwrap();
            assert!(verify_v1a(&key, id, ts, body, &sig));
            assert!(
                !verify_v1a(&key, id, ts + 1, body, &sig),
                "another timestamp"
            );
            assert!(!verify_v1a(&key, "msg_other", ts, body, &sig), "another id");
            let mut tampered = body.to_vec();
            tampered.push(b' ');
            assert!(!verify_v1a(&key, id, ts, &tampered, &sig), "another body");
            let other =
                parse_public_key(&public_key_of(&SignatureKind::Ed25519.generate()).unwrap())
                    .unwrap();
            assert!(!verify_v1a(&other, id, ts, body, &sig), "another key");
        }
    }

    #[test]
    fn signing_keys_and_public_keys_are_refused_when_malformed() {
        let seed = B64.encode([7u8; 32]);
        assert!(parse_signing_key(&format!("whsk_{seed}")).is_ok());
        assert_eq!(
            parse_signing_key(&seed).err(),
            Some(SecretError::NotASigningKey)
        );
        assert_eq!(
            parse_signing_key(&format!("whsk_{}", B64.encode([7u8; 31]))).err(),
            Some(SecretError::NotASigningKey)
        );
        // 64 bytes whose second half is not the seed's public key.
        assert_eq!(
            parse_signing_key(&format!("whsk_{}", B64.encode([7u8; 64]))).err(),
            Some(SecretError::NotASigningKey)
        );
        assert_eq!(
            parse_public_key("whpk_AAAA").err(),
            Some(SecretError::NotAPublicKey)
        );
        assert_eq!(
            parse_public_key(&format!("whsk_{seed}")).err(),
            Some(SecretError::NotAPublicKey)
        );
        // A signing key is no HMAC secret, and the other way round.
        assert!(SignatureKind::Hmac.check(&format!("whsk_{seed}")).is_err());
        assert!(SignatureKind::Ed25519.check(&generate_secret()).is_err());
    }

    #[test]
    fn a_rotation_between_ed25519_keys_signs_with_both() {
        let (old, new) = (
            SignatureKind::Ed25519.generate(),
            SignatureKind::Ed25519.generate(),
        );
        let header = signature_header([new.as_str(), old.as_str()], "msg_1", 5, b"{}");
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        for (entry, key) in entries.iter().zip([&new, &old]) {
            let sig = B64.decode(entry.strip_prefix("v1a,").unwrap()).unwrap();
            let pk = parse_public_key(&public_key_of(key).unwrap()).unwrap();
            assert!(verify_v1a(&pk, "msg_1", 5, b"{}", &sig));
        }
    }

    #[test]
    fn a_one_byte_change_gives_another_signature() {
        let s = generate_secret();
        let a = sign(&s, "msg_1", 1, b"{\"a\":1}").unwrap();
        let b = sign(&s, "msg_1", 1, b"{\"a\":2}").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn generated_secrets_are_valid_and_distinct() {
        let a = generate_secret();
        assert!(a.starts_with("whsec_"));
        assert_eq!(parse_secret(&a, Accept::New).unwrap().len(), 32);
        assert_ne!(a, generate_secret());
    }

    #[test]
    fn malformed_new_secrets_are_refused() {
        assert_eq!(
            parse_secret("whsec_!!!", Accept::New),
            Err(SecretError::NotBase64)
        );
        assert_eq!(
            parse_secret("whsec_AAAA", Accept::New),
            Err(SecretError::WrongLength)
        );
        assert_eq!(parse_secret("", Accept::New), Err(SecretError::WrongLength));
        let too_long = format!("whsec_{}", B64.encode([7u8; 65]));
        assert_eq!(
            parse_secret(&too_long, Accept::New),
            Err(SecretError::WrongLength)
        );
    }

    #[test]
    fn a_secret_with_or_without_its_prefix_or_padding_names_the_same_key() {
        let key = [42u8; 32];
        let padded = B64.encode(key);
        assert!(padded.ends_with('='));
        for s in [
            format!("whsec_{padded}"),
            padded.clone(),
            format!("whsec_{}", padded.trim_end_matches('=')),
            format!("  whsec_{padded}\n"),
        ] {
            assert_eq!(parse_secret(&s, Accept::New).unwrap(), key, "{s:?}");
        }
    }

    #[test]
    fn stored_secrets_saved_under_the_old_inbound_rules_still_open() {
        // URL-safe alphabet and a short key: refused as new secrets, read as stored ones.
        let url_safe = "whsec_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_";
        assert_eq!(
            parse_secret(url_safe, Accept::New),
            Err(SecretError::NotBase64)
        );
        assert!(parse_secret(url_safe, Accept::Stored).is_ok());
        let short = "whsec_MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=";
        assert_eq!(
            parse_secret(short, Accept::New),
            Err(SecretError::WrongLength)
        );
        assert_eq!(
            parse_secret(short, Accept::Stored).unwrap(),
            b"12345678901234567890"
        );
        assert!(parse_secret("whsec_", Accept::Stored).is_err());
    }

    #[test]
    fn every_active_secret_signs_during_a_rotation() {
        let (old, new) = (generate_secret(), generate_secret());
        let header = signature_header([new.as_str(), old.as_str()], "msg_1", 42, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&new, "msg_1", 42, b"{}").unwrap());
        assert_eq!(parts[1], sign(&old, "msg_1", 42, b"{}").unwrap());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Secrets typed by users go through `parse_secret` on save: it answers every
            /// input, and accepts only keys of 24-64 bytes.
            #[test]
            fn parse_secret_answers_every_input_and_accepts_only_well_formed_secrets(s in ".{0,120}") {
                if let Ok(key) = parse_secret(&s, Accept::New) {
                    prop_assert!((MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()));
                }
                let _ = parse_secret(&s, Accept::Stored);
            }

            #[test]
            fn well_formed_secrets_round_trip_to_their_key(key in proptest::collection::vec(any::<u8>(), MIN_SECRET_BYTES..=MAX_SECRET_BYTES)) {
                let s = format!("{SECRET_PREFIX}{}", B64.encode(&key));
                prop_assert_eq!(parse_secret(&s, Accept::New).unwrap(), key);
            }

            #[test]
            fn the_header_carries_one_entry_per_valid_secret(n in 1usize..4, body in proptest::collection::vec(any::<u8>(), 0..64)) {
                let secrets: Vec<String> = (0..n).map(|_| generate_secret()).collect();
                let header = signature_header(secrets.iter().map(String::as_str), "msg", 1, &body);
                prop_assert_eq!(header.split(' ').count(), n);
                prop_assert!(header.split(' ').all(|e| e.starts_with("v1,")));
            }
        }
    }
}
