//! Key IDs, key usages (`role@gun` labels), key algorithms and public keys as requests carry
//! them: whatever a caller sends, parsing answers Ok or Err (never panics), and what parses
//! formats back to what was sent.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use signerd_token::{public_key_from_spki, spki_from_public_key, KeyAlgorithm, KeyId, KeyUsage};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // Notary's key IDs are 64 hex characters; the token stores them as a 32-byte CKA_ID.
        if let Ok(id) = KeyId::from_str(text) {
            assert_eq!(id.to_string(), text.to_ascii_lowercase());
            assert_eq!(KeyId::from_cka_id(id.as_bytes()), Some(id));
        }
        // A CKA_LABEL read from the token: `role@gun`, or anything another tool wrote.
        let usage = KeyUsage::from_label(text);
        if text.contains('@') {
            assert_eq!(usage.label(), text);
        } else {
            assert_eq!(usage.role, text);
            assert!(usage.gun.is_empty());
        }
        if let Ok(algorithm) = KeyAlgorithm::from_str(text) {
            assert_eq!(
                KeyAlgorithm::from_str(algorithm.as_str()).ok(),
                Some(algorithm)
            );
        }
    }
    assert_eq!(KeyId::from_cka_id(data).is_some(), data.len() == 32);
    // A public key from a certificate or CSR: what parses re-encodes and parses back the same.
    if let Ok((algorithm, public_key)) = public_key_from_spki(data) {
        let spki = spki_from_public_key(algorithm, &public_key).expect("a parsed key re-encodes");
        assert_eq!(
            public_key_from_spki(&spki),
            Ok((algorithm, public_key.clone()))
        );
    }
    for algorithm in [
        KeyAlgorithm::Ecdsa,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa,
    ] {
        let _ = KeyId::of_public_key(algorithm, data);
        let _ = spki_from_public_key(algorithm, data);
    }
});
