//! The shim's attribute templates (`pkcs11_shim::template`), as a PKCS#11 application hands
//! them to `C_FindObjectsInit`, `C_CreateObject` and `C_GenerateKeyPair`: any attributes with
//! any values (a CK_ULONG of the wrong size, a label that is not UTF-8, a certificate or a
//! private key that does not parse, RSA components that do not fit). Each parser answers a
//! request or a PKCS#11 error, never a panic (a panic would cross the C ABI), and what it
//! answers carries what the template said.
//!
//! Input: a mechanism selector byte, then attributes as `[type selector][length][value]` (a
//! length byte of 0xfe: two little-endian length bytes follow); a type selector of 0xff ends
//! the public template of a key pair and starts the private one.
#![no_main]

use cryptoki_sys::*;
use libfuzzer_sys::fuzz_target;
use pkcs11_shim::template::{find_request, key_pair_request, new_object, Attr, NewObject};
use signerd_proto::admin::KeyType;

/// The attribute types the parsers look at, and a few they ignore.
const TYPES: [CK_ATTRIBUTE_TYPE; 20] = [
    CKA_CLASS,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
    CKA_ID,
    CKA_VALUE,
    CKA_KEY_TYPE,
    CKA_CERTIFICATE_TYPE,
    CKA_EC_PARAMS,
    CKA_MODULUS,
    CKA_MODULUS_BITS,
    CKA_PUBLIC_EXPONENT,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_SIGN,
    CKA_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_SUBJECT,
    CKA_VENDOR_DEFINED,
];

const MECHANISMS: [CK_MECHANISM_TYPE; 4] = [
    CKM_EC_KEY_PAIR_GEN,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_SHA256,
];

/// The two templates the input spells.
fn templates(mut data: &[u8]) -> (Vec<Attr>, Vec<Attr>) {
    let (mut public, mut private) = (Vec::new(), Vec::new());
    let mut in_private = false;
    while let [selector, rest @ ..] = data {
        if *selector == 0xff {
            in_private = true;
            data = rest;
            continue;
        }
        let ty = TYPES[usize::from(*selector) % TYPES.len()];
        let (len, rest) = match rest {
            // A certificate or an RSA modulus needs more than 253 bytes.
            [0xfe, lo, hi, rest @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), rest),
            [len, rest @ ..] => (usize::from(*len), rest),
            [] => break,
        };
        let len = len.min(rest.len());
        let (value, rest) = rest.split_at(len);
        let attr = Attr::new(ty, value.to_vec());
        if in_private {
            private.push(attr);
        } else {
            public.push(attr);
        }
        data = rest;
    }
    (public, private)
}

fn first(template: &[Attr], ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
    template
        .iter()
        .find(|a| a.ty == ty)
        .map(|a| a.value.as_slice())
}

fuzz_target!(|data: &[u8]| {
    let Some((mechanism, rest)) = data.split_first() else {
        return;
    };
    let mechanism = MECHANISMS[usize::from(*mechanism) % MECHANISMS.len()];
    let (public, private) = templates(rest);

    if let Ok(Some(request)) = find_request(&public) {
        assert_eq!(
            request.id.as_slice(),
            first(&public, CKA_ID).unwrap_or_default()
        );
        if let Some(label) = first(&public, CKA_LABEL) {
            assert_eq!(request.label.as_bytes(), label);
        }
    }

    match new_object(&public) {
        Ok(NewObject::Certificate(c)) => {
            assert_eq!(
                Some(c.certificate_der.as_slice()),
                first(&public, CKA_VALUE)
            );
            assert_eq!(c.id.as_slice(), first(&public, CKA_ID).unwrap_or_default());
        }
        Ok(NewObject::PrivateKey(k)) => {
            use p256::pkcs8::DecodePrivateKey as _;
            assert!(!k.pkcs8_der.is_empty());
            if k.key_type == KeyType::EcP256 as i32 {
                p256::SecretKey::from_pkcs8_der(&k.pkcs8_der).expect("the PKCS#8 made is P-256");
            }
        }
        Ok(NewObject::Session(o)) => {
            // A session object (`CKA_TOKEN` false) holds a parsed certificate or public key,
            // never a private key.
            assert!(!o.certificate_der.is_empty() || !o.public_key_spki.is_empty());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match key_pair_request(mechanism, &public, &private) {
        Ok(request) => {
            let id = first(&private, CKA_ID).or(first(&public, CKA_ID));
            assert_eq!(request.id.as_slice(), id.unwrap_or_default());
            assert_ne!(request.key_type, KeyType::Unspecified as i32);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
