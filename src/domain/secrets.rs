//! Every random credential Herald makes, and its format, in one place.
//!
//! | kind | format | random bits | where it is used |
//! |---|---|---|---|
//! | [`SecretKind::ApiToken`] | `hld_` + base64url | 256 | admin and tenant API tokens |
//! | [`SecretKind::PortalLink`] | `hpl_` + base64url | 256 | single-use portal sign-in links |
//! | [`SecretKind::PortalSession`] | `hps_` + base64url | 256 | portal session cookies |
//! | [`SecretKind::CallbackSlug`] | base64url | 192 | the `/in/{slug}` path of a callback endpoint |
//! | [`SecretKind::SigningSecret`] | `whsec_` + base64 | 256 | Standard Webhooks secrets (destinations, the operator webhook, inbound `standard_webhooks` and `stripe` endpoints) |
//! | [`SecretKind::SigningKey`] | `whsk_` + base64 | 256 | ed25519 signing keys of destinations (the seed; receivers get the `whpk_` public key) |
//! | [`SecretKind::InboundSecret`] | base64url | 256 | generated secrets and tokens of the other inbound schemes |
//! | [`SecretKind::EncryptionKey`] | base64 | 256 | the key that seals secrets at rest (`herald generate-key`) |
//!
//! base64url is unpadded (tokens travel in URLs and headers); base64 is padded, as the
//! Standard Webhooks libraries and `openssl rand -base64 32` print it. Tokens are stored only
//! as hashes, so their length is fixed here and nowhere else.
//!
//! The bytes come from the thread-local CSPRNG of `rand` (seeded from the OS). That is the
//! one impure thing in `domain`; it is here because a format and its randomness belong
//! together, and no caller ever needs to control it.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;

/// The kinds of random credential; see the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    ApiToken,
    PortalLink,
    PortalSession,
    CallbackSlug,
    SigningSecret,
    SigningKey,
    InboundSecret,
    EncryptionKey,
}

impl SecretKind {
    /// The prefix that tells a human (and a secret scanner) what the credential is.
    pub const fn prefix(self) -> &'static str {
        match self {
            SecretKind::ApiToken => "hld_",
            SecretKind::PortalLink => "hpl_",
            SecretKind::PortalSession => "hps_",
            SecretKind::SigningSecret => "whsec_",
            SecretKind::SigningKey => "whsk_",
            SecretKind::CallbackSlug | SecretKind::InboundSecret | SecretKind::EncryptionKey => "",
        }
    }

    /// How many random bytes it carries.
    pub const fn bytes(self) -> usize {
        match self {
            SecretKind::CallbackSlug => 24,
            _ => 32,
        }
    }

    /// Padded standard base64 (what other tools expect of these), else unpadded base64url.
    const fn standard_base64(self) -> bool {
        matches!(
            self,
            SecretKind::SigningSecret | SecretKind::SigningKey | SecretKind::EncryptionKey
        )
    }
}

/// A new random credential of `kind`.
pub fn generate(kind: SecretKind) -> String {
    let mut bytes = [0u8; 32];
    let bytes = &mut bytes[..kind.bytes()];
    rand::rng().fill_bytes(bytes);
    let encoded = if kind.standard_base64() {
        STANDARD.encode(&*bytes)
    } else {
        URL_SAFE_NO_PAD.encode(&*bytes)
    };
    format!("{}{encoded}", kind.prefix())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [SecretKind; 8] = [
        SecretKind::ApiToken,
        SecretKind::PortalLink,
        SecretKind::PortalSession,
        SecretKind::CallbackSlug,
        SecretKind::SigningSecret,
        SecretKind::SigningKey,
        SecretKind::InboundSecret,
        SecretKind::EncryptionKey,
    ];

    #[test]
    fn every_kind_has_its_prefix_and_decodes_to_its_number_of_random_bytes() {
        for kind in ALL {
            let s = generate(kind);
            let body = s.strip_prefix(kind.prefix()).expect("prefix");
            let decoded = if kind.standard_base64() {
                STANDARD.decode(body)
            } else {
                URL_SAFE_NO_PAD.decode(body)
            }
            .unwrap();
            assert_eq!(decoded.len(), kind.bytes(), "{kind:?}");
            assert_ne!(s, generate(kind), "{kind:?} repeats");
        }
    }

    #[test]
    fn tokens_have_the_lengths_the_parsers_expect() {
        // `hld_`/`hpl_`/`hps_` + 43 characters; the portal refuses anything of 100 or more.
        assert_eq!(generate(SecretKind::ApiToken).len(), 47);
        assert_eq!(generate(SecretKind::PortalLink).len(), 47);
        assert_eq!(generate(SecretKind::CallbackSlug).len(), 32);
        assert_eq!(generate(SecretKind::EncryptionKey).len(), 44);
    }

    #[test]
    fn generated_signing_secrets_are_accepted_as_new_secrets() {
        use crate::domain::signature::{Accept, parse_secret};
        let key = parse_secret(&generate(SecretKind::SigningSecret), Accept::New).unwrap();
        assert_eq!(key.len(), 32);
    }

    #[test]
    fn generated_signing_keys_are_ed25519_seeds() {
        use crate::domain::signature::parse_signing_key;
        assert!(parse_signing_key(&generate(SecretKind::SigningKey)).is_ok());
    }
}
