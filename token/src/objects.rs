//! Token objects as the admin API and the PKCS#11 shim behind it see them: their types, how
//! one is described, found and destroyed.
//!
//! Objects are named by [`ObjectRef`] (class, `CKA_ID`, optional `CKA_LABEL`), never by handle:
//! handles change when the token or signerd restarts. Every operation runs through
//! `Token::run`, so it gets the same pooled sessions, retries and recovery as signing.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::{Decode as _, Encode as _};

use crate::connection::{Connection, Token, TokenDescription};
use crate::date::date_text;
use crate::encoding::{key_algorithm, read_public_key};
use crate::error::{Attempt, OpError, TokenError};
use crate::gc::{is_pending_label, is_session_label};
use crate::key::{public_key_from_spki, spki_from_public_key, KeyAlgorithm, KeyId, KeyUsage};
use crate::uri::ObjectUri;

/// PKCS#11 mechanism numbers signerd names (kept here for callers of `objects::ckm`).
pub use signerd_vocab::ckm;

/// The classes of object the admin API deals in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `CKO_PRIVATE_KEY`.
    PrivateKey,
    /// `CKO_PUBLIC_KEY`.
    PublicKey,
    /// `CKO_CERTIFICATE` (X.509).
    Certificate,
}

impl ObjectKind {
    pub(crate) fn class(self) -> ObjectClass {
        match self {
            ObjectKind::PrivateKey => ObjectClass::PRIVATE_KEY,
            ObjectKind::PublicKey => ObjectClass::PUBLIC_KEY,
            ObjectKind::Certificate => ObjectClass::CERTIFICATE,
        }
    }

    fn from_class(class: ObjectClass) -> Option<ObjectKind> {
        match class {
            ObjectClass::PRIVATE_KEY => Some(ObjectKind::PrivateKey),
            ObjectClass::PUBLIC_KEY => Some(ObjectKind::PublicKey),
            ObjectClass::CERTIFICATE => Some(ObjectKind::Certificate),
            _ => None,
        }
    }

    /// The RFC 7512 `type` value (`private`, `public`, `cert`).
    pub fn uri_type(self) -> &'static str {
        match self {
            ObjectKind::PrivateKey => "private",
            ObjectKind::PublicKey => "public",
            ObjectKind::Certificate => "cert",
        }
    }
}

/// A stable name for token objects: class, `CKA_ID`, and optionally `CKA_LABEL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// The object class.
    pub kind: ObjectKind,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// `CKA_LABEL`; `None` matches any label.
    pub label: Option<String>,
}

impl ObjectRef {
    /// The PKCS#11 template that finds the objects this reference names.
    pub(crate) fn template(&self) -> Vec<Attribute> {
        let mut t = vec![
            Attribute::Class(self.kind.class()),
            Attribute::Token(true),
            Attribute::Id(self.id.clone()),
        ];
        if let Some(label) = &self.label {
            t.push(Attribute::Label(label.clone().into_bytes()));
        }
        t
    }

    /// The reference in words, for messages.
    pub(crate) fn describe(&self) -> String {
        let id = match KeyId::from_cka_id(&self.id) {
            Some(k) => k.to_string(),
            None => format!("0x{}", hex::encode(&self.id)),
        };
        match &self.label {
            Some(l) => format!(
                "{} object with CKA_ID {id} and label '{l}'",
                self.kind.uri_type()
            ),
            None => format!("{} object with CKA_ID {id}", self.kind.uri_type()),
        }
    }
}

/// Which objects to find; every field left `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectFilter {
    /// Only this class.
    pub kind: Option<ObjectKind>,
    /// Only this `CKA_ID`.
    pub id: Option<Vec<u8>>,
    /// Only this exact `CKA_LABEL`.
    pub label: Option<String>,
    /// Only objects labelled `role@<gun>` for this gun.
    pub gun: Option<String>,
    /// Only objects labelled `<role>@gun` for this role.
    pub role: Option<String>,
    /// Only objects whose (subject) public key has this TUF key ID.
    pub tuf_key_id: Option<KeyId>,
    /// Only keys of this type (and certificates for such keys).
    pub key_type: Option<KeyAlgorithm>,
}

/// What the admin API tells about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenObject {
    /// Class, `CKA_ID` and label.
    pub reference: ObjectRef,
    /// The key type (for certificates, the subject key's), when it is one signerd knows.
    pub key_type: Option<KeyAlgorithm>,
    /// Gun and role read from a `role@gun` label.
    pub usage: KeyUsage,
    /// The TUF key ID of the (subject) public key, when it can be computed.
    pub tuf_key_id: Option<KeyId>,
    /// DER SubjectPublicKeyInfo of the (subject) public key (Ed25519 too).
    pub public_key_spki: Option<Vec<u8>>,
    /// The DER certificate (certificates only).
    pub certificate_der: Option<Vec<u8>>,
    /// `CKA_START_DATE` as `YYYY-MM-DD`, when set.
    pub created: Option<String>,
    /// Modulus size (RSA keys only).
    pub rsa_bits: Option<u32>,
    /// `CKA_SENSITIVE` (private keys).
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE` (private keys).
    pub extractable: bool,
    /// RFC 7512 URI of the object (token, id, object label, type).
    pub uri: String,
}

// === impl Token ===

impl Token {
    /// Every token object matching `filter`, sorted by class, label and `CKA_ID`.
    pub fn find_objects(&self, filter: &ObjectFilter) -> Result<Vec<TokenObject>, TokenError> {
        self.run(|conn, session| {
            let mut template = vec![Attribute::Token(true)];
            if let Some(kind) = filter.kind {
                template.push(Attribute::Class(kind.class()));
            }
            if let Some(id) = &filter.id {
                template.push(Attribute::Id(id.clone()));
            }
            if let Some(label) = &filter.label {
                template.push(Attribute::Label(label.clone().into_bytes()));
            }
            let mut found = Vec::new();
            for handle in session.find_objects(&template)? {
                let Some(object) = describe(conn, session, handle)? else {
                    continue;
                };
                if is_half_made(&object) {
                    continue;
                }
                if matches_filter(&object, filter) {
                    found.push(object);
                }
            }
            found.sort_by(|a, b| {
                let key = |o: &TokenObject| {
                    (
                        o.reference.label.clone(),
                        o.reference.id.clone(),
                        o.reference.kind as u8,
                    )
                };
                key(a).cmp(&key(b))
            });
            Ok(found)
        })
    }

    /// Destroys every object `reference` names; returns how many. Destroying nothing is not
    /// an error.
    pub fn destroy_objects(&self, reference: &ObjectRef) -> Result<usize, TokenError> {
        if let Some(id) = KeyId::from_cka_id(&reference.id) {
            self.forget_key(&id);
        }
        let template = reference.template();
        self.run(|_conn, session| {
            let mut destroyed = 0;
            for object in session.find_objects(&template)? {
                match session.destroy_object(object) {
                    Ok(()) => destroyed += 1,
                    Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(destroyed)
        })
    }
}

/// The one object `reference` names (the first, if several do).
pub(crate) fn find_one(session: &Session, reference: &ObjectRef) -> Attempt<ObjectHandle> {
    session
        .find_objects(&reference.template())?
        .first()
        .copied()
        .ok_or_else(|| {
            OpError::Final(TokenError::ObjectNotFound(format!(
                "no {} in the token; list objects with `signerd key list`",
                reference.describe()
            )))
        })
}

/// A key object of a pair still being made (or left half-made by a crash), or of a session
/// key pair: never shown, so no admin client or PKCS#11 application picks it up (see `gc`;
/// a session key pair's owner knows it from the answer that made it).
fn is_half_made(o: &TokenObject) -> bool {
    o.reference.kind != ObjectKind::Certificate
        && o.reference
            .label
            .as_deref()
            .is_some_and(|l| is_pending_label(l.as_bytes()) || is_session_label(l.as_bytes()))
}

fn matches_filter(o: &TokenObject, f: &ObjectFilter) -> bool {
    f.gun.as_ref().is_none_or(|g| *g == o.usage.gun)
        && f.role.as_ref().is_none_or(|r| *r == o.usage.role)
        && f.tuf_key_id.is_none_or(|id| o.tuf_key_id == Some(id))
        && f.key_type.is_none_or(|t| o.key_type == Some(t))
}

/// Reads what the admin API tells about an object; `None` for classes it does not deal in.
pub(crate) fn describe(
    conn: &Connection,
    session: &Session,
    handle: ObjectHandle,
) -> Attempt<Option<TokenObject>> {
    let class = session
        .get_attributes(handle, &[AttributeType::Class])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Class(c) => ObjectKind::from_class(c),
            _ => None,
        });
    let Some(kind) = class else { return Ok(None) };
    // Only attributes of this class are asked for. A private key's date is read from its public
    // half: SoftHSM 2.6 fails C_GetAttributeValue of CK_DATE values of private objects.
    let wanted: &[AttributeType] = match kind {
        ObjectKind::PrivateKey => &[
            AttributeType::Id,
            AttributeType::Label,
            AttributeType::KeyType,
            AttributeType::Sensitive,
            AttributeType::Extractable,
        ],
        ObjectKind::PublicKey => &[
            AttributeType::Id,
            AttributeType::Label,
            AttributeType::KeyType,
            AttributeType::StartDate,
            AttributeType::ModulusBits,
        ],
        ObjectKind::Certificate => &[
            AttributeType::Id,
            AttributeType::Label,
            AttributeType::StartDate,
        ],
    };
    let attrs = session.get_attributes(handle, wanted)?;
    let (mut id, mut label, mut key_type, mut created) = (Vec::new(), String::new(), None, None);
    let (mut sensitive, mut extractable, mut bits) = (false, false, None);
    for attr in attrs {
        match attr {
            Attribute::Id(v) => id = v,
            Attribute::Label(v) => label = String::from_utf8_lossy(&v).into_owned(),
            Attribute::KeyType(t) => key_type = key_algorithm(t),
            Attribute::StartDate(d) => created = date_text(&d),
            Attribute::Sensitive(b) => sensitive = b,
            Attribute::Extractable(b) => extractable = b,
            Attribute::ModulusBits(b) => bits = u32::try_from(u64::from(b)).ok(),
            _ => {}
        }
    }
    let mut object = TokenObject {
        reference: ObjectRef {
            kind,
            id,
            label: Some(label.clone()),
        },
        key_type,
        usage: if label.contains('@') {
            KeyUsage::from_label(&label)
        } else {
            KeyUsage::default()
        },
        tuf_key_id: None,
        public_key_spki: None,
        certificate_der: None,
        created,
        rsa_bits: None,
        sensitive: kind == ObjectKind::PrivateKey && sensitive,
        extractable: kind == ObjectKind::PrivateKey && extractable,
        uri: String::new(),
    };
    // The public half: the object itself, the public key object beside a private key, or the
    // subject key of a certificate.
    let public = match kind {
        ObjectKind::PublicKey => {
            key_type.and_then(|alg| read_public_key(session, handle, alg).ok().map(|p| (alg, p)))
        }
        ObjectKind::PrivateKey => {
            let beside = session.find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(object.reference.id.clone()),
            ])?;
            if let Some(&h) = beside.first() {
                object.created = session
                    .get_attributes(h, &[AttributeType::StartDate])?
                    .into_iter()
                    .find_map(|a| match a {
                        Attribute::StartDate(d) => date_text(&d),
                        _ => None,
                    });
            }
            match (key_type, beside.first()) {
                (Some(alg), Some(&h)) => read_public_key(session, h, alg).ok().map(|p| (alg, p)),
                _ => None,
            }
        }
        ObjectKind::Certificate => {
            let value = session
                .get_attributes(handle, &[AttributeType::Value])?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Value(v) => Some(v),
                    _ => None,
                });
            let subject_key = value.as_deref().and_then(|der| {
                let cert = x509_cert::Certificate::from_der(der).ok()?;
                let spki = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
                public_key_from_spki(&spki).ok()
            });
            object.certificate_der = value;
            if let Some((alg, _)) = &subject_key {
                object.key_type = Some(*alg);
            }
            subject_key
        }
    };
    if let Some((alg, public_key)) = public {
        object.tuf_key_id = Some(KeyId::of_public_key(alg, &public_key));
        object.public_key_spki = spki_from_public_key(alg, &public_key).ok();
        if alg == KeyAlgorithm::Rsa {
            object.rsa_bits = bits.or_else(|| rsa_bits_of(&public_key));
        }
    } else if key_type == Some(KeyAlgorithm::Rsa) {
        object.rsa_bits = bits;
    }
    object.uri = object_uri(&conn.description, &object.reference);
    Ok(Some(object))
}

fn rsa_bits_of(spki_der: &[u8]) -> Option<u32> {
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::RsaPublicKey::from_public_key_der(spki_der).ok()?;
    u32::try_from(key.n().bits()).ok()
}

/// The RFC 7512 URI of an object in the token `token`.
fn object_uri(token: &TokenDescription, r: &ObjectRef) -> String {
    ObjectUri {
        token: &token.label,
        manufacturer: &token.manufacturer,
        serial: &token.serial,
        model: &token.model,
        id: &r.id,
        object: r.label.as_deref(),
        kind: r.kind.uri_type(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_percent_encode_ids_and_labels() {
        let token = crate::TokenDescription {
            label: "signerd test".into(),
            manufacturer: "SoftHSM project".into(),
            model: "SoftHSM v2".into(),
            serial: "abc".into(),
            slot: 0,
        };
        let uri = object_uri(
            &token,
            &ObjectRef {
                kind: ObjectKind::Certificate,
                id: vec![0x01, 0xff],
                label: Some("root@example.com/org/app".into()),
            },
        );
        assert_eq!(
            uri,
            "pkcs11:token=signerd%20test;manufacturer=SoftHSM%20project;serial=abc;model=SoftHSM%20v2;id=%01%ff;object=root%40example.com%2Forg%2Fapp;type=cert"
        );
        let parsed: crate::Pkcs11Uri = uri.parse().unwrap();
        assert_eq!(parsed.id, Some(vec![0x01, 0xff]));
        assert_eq!(parsed.object.as_deref(), Some("root@example.com/org/app"));
    }
}
