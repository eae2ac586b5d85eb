//! Admin API messages to and from the token layer's types.

use signerd_proto::admin as pb;
use signerd_token::{KeyAlgorithm, KeyId, ObjectKind, ObjectRef, TokenObject};

use super::error::AdminError;

/// An object class from the wire; `UNSPECIFIED` is `None` (any).
pub fn kind_from_wire(class: i32) -> Result<Option<ObjectKind>, AdminError> {
    match pb::ObjectClass::try_from(class) {
        Ok(pb::ObjectClass::Unspecified) => Ok(None),
        Ok(pb::ObjectClass::PrivateKey) => Ok(Some(ObjectKind::PrivateKey)),
        Ok(pb::ObjectClass::PublicKey) => Ok(Some(ObjectKind::PublicKey)),
        Ok(pb::ObjectClass::Certificate) => Ok(Some(ObjectKind::Certificate)),
        Err(_) => Err(AdminError::InvalidArgument(format!(
            "object class {class} is not one of PRIVATE_KEY, PUBLIC_KEY, CERTIFICATE"
        ))),
    }
}

/// The wire value of an object class.
pub fn kind_to_wire(kind: ObjectKind) -> pb::ObjectClass {
    match kind {
        ObjectKind::PrivateKey => pb::ObjectClass::PrivateKey,
        ObjectKind::PublicKey => pb::ObjectClass::PublicKey,
        ObjectKind::Certificate => pb::ObjectClass::Certificate,
    }
}

/// A key type from the wire; `UNSPECIFIED` is `None`.
pub fn key_type_from_wire(key_type: i32) -> Result<Option<KeyAlgorithm>, AdminError> {
    match pb::KeyType::try_from(key_type) {
        Ok(pb::KeyType::Unspecified) => Ok(None),
        Ok(pb::KeyType::EcP256) => Ok(Some(KeyAlgorithm::Ecdsa)),
        Ok(pb::KeyType::Ed25519) => Ok(Some(KeyAlgorithm::Ed25519)),
        Ok(pb::KeyType::Rsa) => Ok(Some(KeyAlgorithm::Rsa)),
        Err(_) => Err(AdminError::InvalidArgument(format!(
            "key type {key_type} is not one of EC_P256, ED25519, RSA"
        ))),
    }
}

/// The wire value of a key type.
pub fn key_type_to_wire(key_type: Option<KeyAlgorithm>) -> pb::KeyType {
    match key_type {
        None => pb::KeyType::Unspecified,
        Some(KeyAlgorithm::Ecdsa) => pb::KeyType::EcP256,
        Some(KeyAlgorithm::Ed25519) => pb::KeyType::Ed25519,
        Some(KeyAlgorithm::Rsa) => pb::KeyType::Rsa,
    }
}

/// An object reference from the wire: the class is required, an empty label is any label.
pub fn reference_from_wire(r: Option<pb::ObjectRef>) -> Result<ObjectRef, AdminError> {
    let r = r.ok_or_else(|| {
        AdminError::InvalidArgument(
            "the request names no object; set ref (class, id, label)".into(),
        )
    })?;
    let kind = kind_from_wire(r.class)?
        .ok_or_else(|| AdminError::InvalidArgument("the object reference needs a class".into()))?;
    Ok(ObjectRef {
        kind,
        id: r.id,
        label: (!r.label.is_empty()).then_some(r.label),
    })
}

/// A TUF key ID from the wire; empty is `None`.
pub fn tuf_key_id_from_wire(text: &str) -> Result<Option<KeyId>, AdminError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e: signerd_token::TokenError| AdminError::InvalidArgument(e.to_string()))
}

/// The wire form of an object.
pub fn object_to_wire(o: TokenObject) -> pb::Object {
    pb::Object {
        r#ref: Some(pb::ObjectRef {
            class: kind_to_wire(o.reference.kind) as i32,
            id: o.reference.id,
            label: o.reference.label.unwrap_or_default(),
        }),
        key_type: key_type_to_wire(o.key_type) as i32,
        gun: o.usage.gun,
        role: o.usage.role,
        tuf_key_id: o.tuf_key_id.map(|k| k.to_string()).unwrap_or_default(),
        public_key_spki: o.public_key_spki.unwrap_or_default(),
        certificate_der: o.certificate_der.unwrap_or_default(),
        created: o.created.unwrap_or_default(),
        rsa_bits: o.rsa_bits.unwrap_or_default(),
        sensitive: o.sensitive,
        extractable: o.extractable,
        uri: o.uri,
    }
}

/// How a reference reads in the audit line: the TUF key ID when `CKA_ID` is one, else hex.
pub fn audit_id(id: &[u8]) -> String {
    match KeyId::from_cka_id(id) {
        Some(k) => k.to_string(),
        None => hex::encode(id),
    }
}
