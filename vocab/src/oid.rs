//! Object identifiers of the key and signature algorithms signerd uses, in dotted form.

/// id-ecPublicKey (RFC 5480): the SubjectPublicKeyInfo algorithm of EC keys.
pub const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// secp256r1 / P-256, the only EC curve signerd uses.
pub const P256: &str = "1.2.840.10045.3.1.7";
/// id-Ed25519 (RFC 8410): algorithm of Ed25519 keys, with no parameters.
pub const ED25519: &str = "1.3.101.112";
/// rsaEncryption (RFC 8017): the SubjectPublicKeyInfo algorithm of RSA keys.
pub const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
/// ecdsa-with-SHA256 (RFC 5758): how certificates signed by a P-256 key name the signature.
pub const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
/// sha256WithRSAEncryption (RFC 8017): how certificates signed by an RSA key name the
/// signature.
pub const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
