//! Standard Webhooks secrets and signatures: the one parser of `whsec_` secrets and the one
//! signer, used by outbound destinations (HTTP and RabbitMQ), the operator webhook, inbound
//! `standard_webhooks` endpoints and the MCP `verify_signature` tool.
//!
//! A signature is `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the key is
//! the base64-decoded part of the secret after `whsec_`. During a rotation a delivery is signed
//! with every active secret, and the `webhook-signature` header carries the signatures
//! space-separated, so receivers that have either secret accept it.
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
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret must be `whsec_` followed by base64")]
    NotBase64,
    #[error("a signing secret must decode to 24-64 bytes")]
    WrongLength,
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

/// One signature with a stored secret (read under [`Accept::Stored`]).
pub fn sign(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SecretError> {
    let key = parse_secret(secret, Accept::Stored)?;
    Ok(sign_with_key(&key, msg_id, timestamp, body))
}

/// The `webhook-signature` header value: one `v1,` entry per active secret.
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
