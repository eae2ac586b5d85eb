//! TUF keys as Notary sees them: algorithms, key IDs and public key encodings.
//!
//! Facts from NOTARY-INTEROP.md: the key ID is the SHA-256 of the canonical JSON of
//! `{"keytype":ALG,"keyval":{"private":null,"public":BASE64(public key bytes)}}`; public key
//! bytes are DER SubjectPublicKeyInfo for `ecdsa` and `rsa` and the raw 32 bytes for `ed25519`.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use signerd_vocab::oid::{
    EC_PUBLIC_KEY as EC_PUBLIC_KEY_OID, ED25519 as ED25519_OID, P256 as P256_OID,
    RSA_ENCRYPTION as RSA_OID,
};

/// A key algorithm as named in TUF metadata and in the Notary signer protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA over P-256; signatures are raw `r||s` over SHA-256 of the content.
    Ecdsa,
    /// Pure Ed25519 over the content.
    Ed25519,
    /// RSA; signatures are RSASSA-PSS with SHA-256 and a 32-byte salt.
    Rsa,
}

impl KeyAlgorithm {
    /// Every algorithm signerd creates, in the order they are documented.
    pub const ALL: [KeyAlgorithm; 3] = [
        KeyAlgorithm::Ecdsa,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa,
    ];

    /// The TUF `keytype` string (`ecdsa`, `ed25519`, `rsa`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ecdsa => "ecdsa",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa => "rsa",
        }
    }

    /// The TUF signature method Notary records for this key type (`ecdsa`, `eddsa`, `rsapss`).
    pub fn signature_method(self) -> &'static str {
        match self {
            KeyAlgorithm::Ecdsa => "ecdsa",
            KeyAlgorithm::Ed25519 => "eddsa",
            KeyAlgorithm::Rsa => "rsapss",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TUF key ID: SHA-256 of the key's canonical JSON, shown as 64 lowercase hex characters.
///
/// In the token it is the key objects' `CKA_ID` (the 32 raw bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 32]);

impl KeyId {
    /// The TUF key ID of a public key of `algorithm` given in Notary's encoding.
    pub fn of_public_key(algorithm: KeyAlgorithm, public_key: &[u8]) -> KeyId {
        KeyId::of_tuf_public(algorithm.as_str(), public_key)
    }

    /// The TUF key ID for any `keytype` string (also `ecdsa-x509`, whose public value is a PEM
    /// certificate).
    pub fn of_tuf_public(keytype: &str, public_value: &[u8]) -> KeyId {
        // serde_json's map is ordered, so this is the canonical form: sorted keys, no spaces.
        let canonical = serde_json::json!({
            "keytype": keytype,
            "keyval": {
                "private": null,
                "public": base64::engine::general_purpose::STANDARD.encode(public_value),
            },
        });
        KeyId(Sha256::digest(canonical.to_string().as_bytes()).into())
    }

    /// The raw 32 bytes, as stored in `CKA_ID`.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The ID as 64 lowercase hex digits, written into `buf` (no allocation: a key ID is
    /// written on every Sign answer, audit record and log line).
    pub fn hex<'a>(&self, buf: &'a mut [u8; 64]) -> &'a str {
        // 32 bytes always fill 64 digits, and hex digits are ASCII: neither error can occur.
        match hex::encode_to_slice(self.0, buf) {
            Ok(()) => std::str::from_utf8(buf).unwrap_or_default(),
            Err(_) => "",
        }
    }

    /// Reads a `CKA_ID` value; `None` when it is not 32 bytes (not a signerd key ID).
    pub fn from_cka_id(bytes: &[u8]) -> Option<KeyId> {
        bytes.try_into().ok().map(KeyId)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex(&mut [0; 64]))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Which edge made a key, and so which edge may reach it: kept in the label, so a restarted
/// signerd or a replica on the same token sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum KeyDomain {
    /// Made before domains existed, or by another tool: no mark in the label.
    #[default]
    Legacy,
    /// Made through the Notary port's `CreateKey` (label `notary:role@gun`).
    Notary,
    /// Made through the admin API (label `admin:role@gun`).
    Admin,
}

impl KeyDomain {
    /// The name used in labels, policy rules and logs (`legacy`, `notary`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyDomain::Legacy => "legacy",
            KeyDomain::Notary => "notary",
            KeyDomain::Admin => "admin",
        }
    }

    /// The domain named `text`, if it is one.
    pub fn parse(text: &str) -> Option<KeyDomain> {
        match text {
            "legacy" => Some(KeyDomain::Legacy),
            "notary" => Some(KeyDomain::Notary),
            "admin" => Some(KeyDomain::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for KeyDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The repository, role and domain of a key, kept on the token objects in `CKA_LABEL` as
/// `domain:role@gun` (e.g. `notary:timestamp@example.com/org/app`), or `role@gun` for keys
/// from before domains, so the token is the only store.
///
/// Roles contain neither `:` nor `@`; GUNs may contain both (`localhost:5000/app`), so the
/// label splits at the first `@`, and the part before it at its `:`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyUsage {
    /// The Globally Unique Name of the repository (may be empty).
    pub gun: String,
    /// The TUF role (`root`, `targets`, `snapshot`, `timestamp`, `targets/releases`, ...).
    pub role: String,
    /// Which edge made the key.
    pub domain: KeyDomain,
}

impl KeyUsage {
    /// A usage in `domain`.
    pub fn new(domain: KeyDomain, gun: impl Into<String>, role: impl Into<String>) -> KeyUsage {
        KeyUsage {
            gun: gun.into(),
            role: role.into(),
            domain,
        }
    }

    /// The `CKA_LABEL` value for this usage.
    pub fn label(&self) -> String {
        match self.domain {
            KeyDomain::Legacy => format!("{}@{}", self.role, self.gun),
            domain => format!("{}:{}@{}", domain.as_str(), self.role, self.gun),
        }
    }

    /// Reads a `CKA_LABEL`; a label that is not `role@gun` yields an empty gun and the whole
    /// label as role, so keys made by other tools still show something useful. Only the
    /// `notary:` and `admin:` marks make a domain; anything else is legacy.
    pub fn from_label(label: &str) -> KeyUsage {
        let (head, gun) = match label.split_once('@') {
            Some((head, gun)) => (head, gun),
            None => (label, ""),
        };
        let (domain, role) = match head.split_once(':') {
            Some(("notary", role)) => (KeyDomain::Notary, role),
            Some(("admin", role)) => (KeyDomain::Admin, role),
            _ => (KeyDomain::Legacy, head),
        };
        KeyUsage::new(domain, gun, role)
    }
}

/// A public key in Notary's encoding, read from a DER SubjectPublicKeyInfo (of a certificate or
/// a CSR): the SPKI itself for P-256 and RSA, the raw 32 bytes for Ed25519.
pub fn public_key_from_spki(spki_der: &[u8]) -> Result<(KeyAlgorithm, Vec<u8>), String> {
    use der::{Decode as _, Encode as _};
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(spki_der)
        .map_err(|e| format!("not a DER SubjectPublicKeyInfo: {e}"))?;
    let oid = spki.algorithm.oid.to_string();
    match oid.as_str() {
        EC_PUBLIC_KEY_OID => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                .map(|o| o.to_string());
            if curve.as_deref() != Some(P256_OID) {
                return Err(
                    "an EC key that is not on P-256 (signerd's ecdsa is P-256 only)".into(),
                );
            }
            // Re-encode so the bytes are exactly what the token layer gives for the same key.
            spki.to_der()
                .map(|d| (KeyAlgorithm::Ecdsa, d))
                .map_err(|e| e.to_string())
        }
        ED25519_OID => {
            let raw = spki.subject_public_key.raw_bytes();
            if raw.len() != 32 {
                return Err(format!("an Ed25519 key has 32 bytes, not {}", raw.len()));
            }
            Ok((KeyAlgorithm::Ed25519, raw.to_vec()))
        }
        RSA_OID => spki
            .to_der()
            .map(|d| (KeyAlgorithm::Rsa, d))
            .map_err(|e| e.to_string()),
        other => Err(format!(
            "public key algorithm {other} is not one signerd uses (P-256, Ed25519, RSA)"
        )),
    }
}

/// The DER SubjectPublicKeyInfo of a public key given in Notary's encoding (only Ed25519 keys
/// differ: their raw 32 bytes get wrapped).
pub fn spki_from_public_key(algorithm: KeyAlgorithm, public_key: &[u8]) -> Result<Vec<u8>, String> {
    use der::Encode as _;
    match algorithm {
        KeyAlgorithm::Ecdsa | KeyAlgorithm::Rsa => Ok(public_key.to_vec()),
        KeyAlgorithm::Ed25519 => spki::SubjectPublicKeyInfoOwned {
            algorithm: spki::AlgorithmIdentifierOwned {
                oid: der::asn1::ObjectIdentifier::new_unwrap(ED25519_OID),
                parameters: None,
            },
            subject_public_key: der::asn1::BitString::from_bytes(public_key)
                .map_err(|e| e.to_string())?,
        }
        .to_der()
        .map_err(|e| e.to_string()),
    }
}

/// A key held in the token, as the signer protocol describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The TUF key ID (and `CKA_ID`).
    pub id: KeyId,
    /// The key algorithm.
    pub algorithm: KeyAlgorithm,
    /// The public key in Notary's encoding (SPKI DER for ecdsa/rsa, raw 32 bytes for ed25519).
    pub public_key: Vec<u8>,
    /// Repository and role.
    pub usage: KeyUsage,
}

/// A signature made by the token, in Notary's encoding for its algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The key that signed.
    pub key: std::sync::Arc<KeyInfo>,
    /// Signature bytes: raw `r||s` (ecdsa), 64 bytes (ed25519) or PSS (rsa).
    pub bytes: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenError;

    #[test]
    fn key_id_matches_notary_canonical_json() {
        // hex(sha256('{"keytype":"ed25519","keyval":{"private":null,"public":"AAEC"}}'))
        let id = KeyId::of_public_key(KeyAlgorithm::Ed25519, &[0, 1, 2]);
        let expected =
            Sha256::digest(br#"{"keytype":"ed25519","keyval":{"private":null,"public":"AAEC"}}"#);
        assert_eq!(id.to_string(), hex::encode(expected));
        assert_eq!(id.hex(&mut [0; 64]), hex::encode(expected));
    }

    #[test]
    fn key_id_parses_and_rejects() {
        let id = KeyId::of_public_key(KeyAlgorithm::Ecdsa, b"x");
        assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
        assert!(matches!(
            "".parse::<KeyId>(),
            Err(TokenError::InvalidKeyId(_))
        ));
        assert!(matches!(
            "zz".repeat(32).parse::<KeyId>(),
            Err(TokenError::InvalidKeyId(_))
        ));
        assert!(KeyId::from_cka_id(&[1]).is_none());
    }

    #[test]
    fn usage_label_round_trips() {
        let u = KeyUsage::new(
            KeyDomain::Legacy,
            "localhost:5000/org/app",
            "targets/releases",
        );
        assert_eq!(u.label(), "targets/releases@localhost:5000/org/app");
        assert_eq!(KeyUsage::from_label(&u.label()), u);
        assert_eq!(KeyUsage::from_label("plain").role, "plain");
    }

    #[test]
    fn domains_are_marked_in_the_label() {
        let notary = KeyUsage::new(KeyDomain::Notary, "localhost:5000/org/app", "timestamp");
        assert_eq!(notary.label(), "notary:timestamp@localhost:5000/org/app");
        assert_eq!(KeyUsage::from_label(&notary.label()), notary);
        let admin = KeyUsage::new(KeyDomain::Admin, "", "ca");
        assert_eq!(admin.label(), "admin:ca@");
        assert_eq!(KeyUsage::from_label("admin:ca@"), admin);
        // Only the two marks make a domain; a colon elsewhere stays in the role or the GUN.
        let other = KeyUsage::from_label("pkcs11:key@host:5000/app");
        assert_eq!(other.domain, KeyDomain::Legacy);
        assert_eq!(other.role, "pkcs11:key");
        assert_eq!(other.gun, "host:5000/app");
        assert_eq!(
            KeyUsage::from_label("timestamp@example.com/app").domain,
            KeyDomain::Legacy
        );
        assert_eq!(KeyUsage::from_label("notary:x").domain, KeyDomain::Notary);
    }

    #[test]
    fn spki_round_trips_for_every_algorithm() {
        use p256::pkcs8::EncodePublicKey as _;
        let p256 = p256::SecretKey::from_slice(&[7u8; 32])
            .unwrap()
            .public_key()
            .to_public_key_der()
            .unwrap()
            .into_vec();
        let (alg, bytes) = public_key_from_spki(&p256).unwrap();
        assert_eq!((alg, &bytes), (KeyAlgorithm::Ecdsa, &p256));
        let ed = spki_from_public_key(KeyAlgorithm::Ed25519, &[3u8; 32]).unwrap();
        assert_eq!(
            public_key_from_spki(&ed).unwrap(),
            (KeyAlgorithm::Ed25519, vec![3u8; 32])
        );
        assert!(public_key_from_spki(b"junk").is_err());
    }

    #[test]
    fn algorithms_parse() {
        for alg in KeyAlgorithm::ALL {
            assert_eq!(alg.as_str().parse::<KeyAlgorithm>().unwrap(), alg);
        }
        assert!(matches!(
            "ecdsa-x509".parse::<KeyAlgorithm>(),
            Err(TokenError::UnsupportedAlgorithm(_))
        ));
    }
}
