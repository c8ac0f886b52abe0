//! Standard Webhooks signing: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
//!
//! Secrets are `whsec_` followed by the base64 of 24–64 random bytes; the HMAC key is the
//! decoded bytes. During a rotation a delivery is signed with every active secret, and the
//! `webhook-signature` header carries the signatures space-separated, so receivers that have
//! either secret accept it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret must start with `whsec_`")]
    MissingPrefix,
    #[error("a signing secret must be base64 after `whsec_`")]
    NotBase64,
    #[error("a signing secret must decode to 24-64 bytes")]
    WrongLength,
}

/// A fresh random secret, `whsec_` + base64 of 32 bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", B64.encode(bytes))
}

/// The HMAC key of a `whsec_` secret. Secrets supplied by users are checked with this when a
/// destination is saved, so signing itself cannot fail later.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, SecretError> {
    let b64 = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SecretError::MissingPrefix)?;
    let key = B64.decode(b64).map_err(|_| SecretError::NotBase64)?;
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
        return Err(SecretError::WrongLength);
    }
    Ok(key)
}

/// One signature, `v1,<base64>`, with an already decoded key.
pub fn sign_with_key(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// One signature with a `whsec_` secret. Test vectors and verifiers decode any length.
pub fn sign(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SecretError> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = B64.decode(b64).map_err(|_| SecretError::NotBase64)?;
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

    const VECTORS: &str = include_str!("../../../shared/vectors/signatures.json");

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
        assert_eq!(secret_key(&a).unwrap().len(), 32);
        assert_ne!(a, generate_secret());
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(secret_key("abc"), Err(SecretError::MissingPrefix));
        assert_eq!(secret_key("whsec_!!!"), Err(SecretError::NotBase64));
        assert_eq!(secret_key("whsec_AAAA"), Err(SecretError::WrongLength));
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
            /// Secrets typed by users go through `secret_key` on save: it answers every
            /// input, and accepts exactly `whsec_` + base64 of 24-64 bytes.
            #[test]
            fn secret_key_answers_every_input_and_accepts_only_well_formed_secrets(s in ".{0,120}") {
                if let Ok(key) = secret_key(&s) {
                    prop_assert!(s.starts_with(SECRET_PREFIX));
                    prop_assert!((MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()));
                }
            }

            #[test]
            fn well_formed_secrets_round_trip_to_their_key(key in proptest::collection::vec(any::<u8>(), MIN_SECRET_BYTES..=MAX_SECRET_BYTES)) {
                let s = format!("{SECRET_PREFIX}{}", B64.encode(&key));
                prop_assert_eq!(secret_key(&s).unwrap(), key);
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
