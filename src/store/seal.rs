//! Secrets at rest: the columns that hold credentials are sealed with an AEAD before they reach
//! the database and opened when they are read back, here and nowhere else.
//!
//! A sealed value is text, so it fits the existing `TEXT` columns:
//!
//! ```text
//! hsec1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>
//! ```
//!
//! * `hsec1` versions the format, so a later scheme can be read next to this one.
//! * The key id (8 hex digits of a hash of the key) names the key that sealed the value, so a
//!   database may hold values sealed under several keys while a rotation is under way: a node
//!   opens any value whose key it has (current or old) and always seals with the current one.
//! * XChaCha20-Poly1305 with a random 192-bit nonce per value: random nonces that large never
//!   repeat in practice, so no counter has to be kept (and shared between nodes).
//! * The associated data is `table.column/row id`: a sealed value copied into another row or
//!   column (by someone with write access to the database) fails to open instead of, say,
//!   making one tenant's destination sign with another tenant's secret.
//!
//! Values without the prefix are clear text written before sealing existed (or by an older
//! node during a rolling upgrade): they are read as they are, and
//! [`crate::store::Store::seal_at_rest`] seals them at the next start.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::secrets::SecretKind;

/// The format version every sealed value starts with.
pub const PREFIX: &str = "hsec1:";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// A column that holds sealed values, and the table's id column (the associated data names
/// the row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub table: &'static str,
    pub id: &'static str,
    pub name: &'static str,
}

/// `destinations.secrets`: the JSON list of a destination's signing secrets.
pub const DESTINATION_SECRETS: Column = Column {
    table: "destinations",
    id: "id",
    name: "secrets",
};

/// `destinations.headers`: the custom headers of a destination, which often carry a
/// receiver's credentials (`Authorization: Bearer …`).
pub const DESTINATION_HEADERS: Column = Column {
    table: "destinations",
    id: "id",
    name: "headers",
};

/// `callback_endpoints.verification`: the JSON verification scheme of an inbound endpoint,
/// with its secret or token.
pub const ENDPOINT_VERIFICATION: Column = Column {
    table: "callback_endpoints",
    id: "id",
    name: "verification",
};

/// `destinations.amqp_url` (RabbitMQ destinations): the URL carries the broker's user and
/// password.
pub const DESTINATION_AMQP_URL: Column = Column {
    table: "destinations",
    id: "id",
    name: "amqp_url",
};

/// Every sealed column: what [`crate::store::Store::seal_at_rest`] walks at start. A new
/// column holding a credential (for example `destinations.amqp_url`) is added here, and its
/// reads and writes go through [`Keyring::open`] and [`Keyring::seal`].
pub const SEALED_COLUMNS: &[Column] = &[
    DESTINATION_SECRETS,
    DESTINATION_HEADERS,
    ENDPOINT_VERIFICATION,
    DESTINATION_AMQP_URL,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "{column} is sealed with encryption key {key_id}, which this node does not have: \
         every node needs the same `encryption_key` (and, during a rotation, the previous key \
         in `encryption_old_keys`)"
    )]
    UnknownKey { column: String, key_id: String },
    #[error("`{column}` of {row} does not open with key {key_id}: it was altered or moved")]
    Tampered {
        column: String,
        row: String,
        key_id: String,
    },
    #[error("`{column}` of {row} is not a well-formed sealed value")]
    Malformed { column: String, row: String },
}

/// Why a configured key is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 32 bytes in base64 (e.g. `openssl rand -base64 32`), got {0}")]
pub struct BadKey(String);

struct Key {
    id: String,
    aead: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; KEY_LEN]) -> Self {
        let mut h = Sha256::new();
        h.update(b"herald encryption key id\0");
        h.update(bytes);
        Key {
            id: hex::encode(&h.finalize()[..4]),
            aead: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// The keys a node seals and opens with: the current one, and older ones kept for opening
/// values not yet re-sealed.
pub struct Keyring {
    current: Key,
    old: Vec<Key>,
}

/// Only the key ids: a keyring printed in a log or a panic shows no key material.
impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("old", &self.old.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

/// Decodes a base64 (standard or URL-safe, padded or not) 32-byte key.
pub fn decode_key(s: &str) -> Result<[u8; KEY_LEN], BadKey> {
    let s = s.trim();
    let bytes = STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .map_err(|_| BadKey("text that is not base64".into()))?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| BadKey(format!("{} bytes", bytes.len())))
}

/// A new random key, base64-encoded as the configuration expects it.
pub fn generate_key() -> String {
    const _: () = assert!(SecretKind::EncryptionKey.bytes() == KEY_LEN);
    crate::domain::secrets::generate(SecretKind::EncryptionKey)
}

/// The key in `path`, or, when the file does not exist, a new one written there (mode 0600,
/// created exclusively, so two processes starting at once cannot both write one). This is how
/// a single-node deployment gets a key with no configuration; several nodes must share one
/// through `encryption_key` instead.
pub fn load_or_create_key_file(path: &Path) -> std::io::Result<String> {
    use std::io::Write;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => {
            let key = generate_key();
            f.write_all(format!("{key}\n").as_bytes())?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)?.trim().to_string())
        }
        Err(e) => Err(e),
    }
}

impl Keyring {
    pub fn new(current: &[u8; KEY_LEN], old: &[[u8; KEY_LEN]]) -> Self {
        Keyring {
            current: Key::new(current),
            old: old.iter().map(Key::new).collect(),
        }
    }

    /// From the configured base64 keys.
    pub fn parse(current: &str, old: &[String]) -> Result<Self, BadKey> {
        let old = old
            .iter()
            .map(|k| decode_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(&decode_key(current)?, &old))
    }

    /// A keyring with one fresh random key: for tools and tests whose data does not outlive
    /// the process.
    pub fn ephemeral() -> Self {
        Self::parse(&generate_key(), &[]).expect("a generated key decodes")
    }

    /// The id of the key new values are sealed with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Whether `id` names a key of this ring.
    pub fn knows(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    fn key(&self, id: &str) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
    }

    fn aad(column: Column, row: &str) -> String {
        format!("{}.{}/{row}", column.table, column.name)
    }

    /// Seals `plain`, the value of `column` in row `row`, under the current key.
    pub fn seal(&self, column: Column, row: &str, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = Self::aad(column, row);
        let ct = self
            .current
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length we store");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!(
            "{PREFIX}{}:{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(blob)
        )
    }

    /// The clear text of a stored value of `column` in row `row`: opened when sealed, as it is
    /// when written before sealing existed.
    pub fn open(&self, column: Column, row: &str, stored: &str) -> Result<String, SealError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let col = || format!("{}.{}", column.table, column.name);
        let malformed = || SealError::Malformed {
            column: col(),
            row: row.to_string(),
        };
        let (key_id, b64) = rest.split_once(':').ok_or_else(malformed)?;
        let key = self.key(key_id).ok_or_else(|| SealError::UnknownKey {
            column: format!("`{}`", col()),
            key_id: key_id.to_string(),
        })?;
        let blob = URL_SAFE_NO_PAD.decode(b64).map_err(|_| malformed())?;
        if blob.len() < NONCE_LEN {
            return Err(malformed());
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let aad = Self::aad(column, row);
        let plain = key
            .aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Tampered {
                column: col(),
                row: row.to_string(),
                key_id: key_id.to_string(),
            })?;
        String::from_utf8(plain).map_err(|_| malformed())
    }

    /// [`Keyring::seal`] for a nullable column: `None` stays NULL.
    pub fn seal_opt(&self, column: Column, row: &str, plain: Option<&str>) -> Option<String> {
        plain.map(|p| self.seal(column, row, p))
    }

    /// [`Keyring::open`] for a nullable column.
    pub fn open_opt(
        &self,
        column: Column,
        row: &str,
        stored: Option<&str>,
    ) -> Result<Option<String>, SealError> {
        stored.map(|s| self.open(column, row, s)).transpose()
    }

    /// A stored value sealed under the current key needs nothing; a clear one, or one sealed
    /// under an old key, is returned sealed anew (the re-seal step at start).
    pub fn reseal(
        &self,
        column: Column,
        row: &str,
        stored: &str,
    ) -> Result<Option<String>, SealError> {
        let current = format!("{PREFIX}{}:", self.current.id);
        if stored.starts_with(&current) {
            return Ok(None);
        }
        let plain = self.open(column, row, stored)?;
        Ok(Some(self.seal(column, row, &plain)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(seed: u8) -> Keyring {
        Keyring::new(&[seed; KEY_LEN], &[])
    }

    #[test]
    fn a_sealed_value_opens_to_the_clear_text_and_does_not_contain_it() {
        let r = ring(1);
        let s = r.seal(DESTINATION_SECRETS, "dst_1", r#"[{"secret":"whsec_abc"}]"#);
        assert!(s.starts_with(&format!("{PREFIX}{}:", r.current_id())));
        assert!(!s.contains("whsec_abc"));
        assert_eq!(
            r.open(DESTINATION_SECRETS, "dst_1", &s).unwrap(),
            r#"[{"secret":"whsec_abc"}]"#
        );
    }

    #[test]
    fn sealing_the_same_value_twice_gives_different_ciphertexts() {
        let r = ring(1);
        let a = r.seal(DESTINATION_SECRETS, "dst_1", "x");
        let b = r.seal(DESTINATION_SECRETS, "dst_1", "x");
        assert_ne!(a, b);
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_does_not_open() {
        let r = ring(1);
        let s = r.seal(DESTINATION_SECRETS, "dst_1", "x");
        assert!(matches!(
            r.open(DESTINATION_SECRETS, "dst_2", &s),
            Err(SealError::Tampered { .. })
        ));
        assert!(matches!(
            r.open(ENDPOINT_VERIFICATION, "dst_1", &s),
            Err(SealError::Tampered { .. })
        ));
    }

    #[test]
    fn a_flipped_ciphertext_byte_is_detected() {
        let r = ring(1);
        let s = r.seal(DESTINATION_SECRETS, "dst_1", "secret");
        let mut bytes = s.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let s = String::from_utf8(bytes).unwrap();
        assert!(r.open(DESTINATION_SECRETS, "dst_1", &s).is_err());
    }

    #[test]
    fn a_value_sealed_under_an_unknown_key_names_the_key() {
        let s = ring(1).seal(DESTINATION_SECRETS, "dst_1", "x");
        let e = ring(2).open(DESTINATION_SECRETS, "dst_1", &s).unwrap_err();
        assert!(
            matches!(&e, SealError::UnknownKey { key_id, .. } if *key_id == ring(1).current_id())
        );
        assert!(e.to_string().contains("encryption_key"));
    }

    #[test]
    fn after_a_rotation_old_values_open_and_are_resealed_under_the_new_key() {
        let old = ring(1);
        let s = old.seal(DESTINATION_SECRETS, "dst_1", "x");
        let rotated = Keyring::new(&[2; KEY_LEN], &[[1; KEY_LEN]]);
        assert_eq!(rotated.open(DESTINATION_SECRETS, "dst_1", &s).unwrap(), "x");
        let again = rotated
            .reseal(DESTINATION_SECRETS, "dst_1", &s)
            .unwrap()
            .unwrap();
        assert!(again.starts_with(&format!("{PREFIX}{}:", rotated.current_id())));
        assert_eq!(
            rotated
                .reseal(DESTINATION_SECRETS, "dst_1", &again)
                .unwrap(),
            None
        );
        // The new key alone opens it: the old one can be retired.
        assert_eq!(
            ring(2).open(DESTINATION_SECRETS, "dst_1", &again).unwrap(),
            "x"
        );
    }

    #[test]
    fn clear_values_from_before_sealing_are_read_as_they_are_and_resealed() {
        let r = ring(1);
        assert_eq!(r.open(DESTINATION_SECRETS, "d", "[]").unwrap(), "[]");
        let sealed = r.reseal(DESTINATION_SECRETS, "d", "[]").unwrap().unwrap();
        assert_eq!(r.open(DESTINATION_SECRETS, "d", &sealed).unwrap(), "[]");
    }

    #[test]
    fn nullable_columns_keep_null_and_seal_values() {
        let r = ring(1);
        assert_eq!(r.seal_opt(DESTINATION_AMQP_URL, "d", None), None);
        let url = "amqp://user:pw@broker:5672/%2f";
        let sealed = r.seal_opt(DESTINATION_AMQP_URL, "d", Some(url)).unwrap();
        assert!(!sealed.contains("pw@"));
        assert_eq!(
            r.open_opt(DESTINATION_AMQP_URL, "d", Some(&sealed))
                .unwrap(),
            Some(url.to_string())
        );
        assert_eq!(r.open_opt(DESTINATION_AMQP_URL, "d", None).unwrap(), None);
    }

    #[test]
    fn keys_are_32_bytes_of_base64_in_either_alphabet() {
        let k = generate_key();
        assert!(decode_key(&k).is_ok());
        let url = URL_SAFE_NO_PAD.encode(decode_key(&k).unwrap());
        assert_eq!(decode_key(&url).unwrap(), decode_key(&k).unwrap());
        assert!(
            decode_key("c2hvcnQ=")
                .unwrap_err()
                .to_string()
                .contains("5 bytes")
        );
        assert!(decode_key("not base64!").is_err());
    }

    #[test]
    fn the_debug_form_of_a_keyring_shows_ids_only() {
        let r = Keyring::new(&[7; KEY_LEN], &[[8; KEY_LEN]]);
        let shown = format!("{r:?}");
        assert!(shown.contains(r.current_id()));
        assert!(!shown.contains(&STANDARD.encode([7u8; KEY_LEN])));
    }

    #[test]
    fn a_key_file_is_created_once_with_owner_only_permissions_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/encryption.key");
        let first = load_or_create_key_file(&path).unwrap();
        assert!(decode_key(&first).is_ok());
        assert_eq!(load_or_create_key_file(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
