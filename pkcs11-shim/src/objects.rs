//! Token objects as the shim shows them: the shim's own `CK_OBJECT_HANDLE`s mapped to signerd's
//! stable [`ObjectRef`]s, and the PKCS#11 attributes of each object, derived from what signerd
//! says about it (its public key, its certificate).
//!
//! Handles are never reused and do not depend on signerd's: they stay valid when signerd
//! restarts, because they name `(class, CKA_ID, CKA_LABEL)`, not a token session's handle.

use std::collections::HashMap;
use std::sync::Arc;

use cryptoki_sys::*;
use der::{Decode, Encode};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use signerd_proto::admin::{KeyType, Object, ObjectClass, ObjectRef};
use signerd_vocab::curve::{ED25519_PARAMS, P256_PARAMS};
use spki::SubjectPublicKeyInfoRef;

/// One attribute of an object, as `C_GetAttributeValue` answers it.
#[derive(Debug, PartialEq, Eq)]
pub enum AttrValue {
    /// The value's bytes.
    Value(Vec<u8>),
    /// The attribute exists but is never revealed (private key material).
    Sensitive,
    /// The object has no such attribute.
    Invalid,
}

fn ulong(v: CK_ULONG) -> AttrValue {
    AttrValue::Value(v.to_ne_bytes().to_vec())
}

fn flag(v: bool) -> AttrValue {
    AttrValue::Value(vec![if v { CK_TRUE } else { CK_FALSE }])
}

/// A DER OCTET STRING around `bytes` (the form of `CKA_EC_POINT`).
fn octet_string(bytes: &[u8]) -> Option<Vec<u8>> {
    der::asn1::OctetStringRef::new(bytes).ok()?.to_der().ok()
}

/// An object as the shim knows it: what signerd said, plus the attributes derived from it.
#[derive(Debug)]
pub struct ObjectView {
    /// signerd's description.
    pub object: Object,
    class: Option<CK_OBJECT_CLASS>,
    key_type: Option<CK_KEY_TYPE>,
    ec_params: Option<Vec<u8>>,
    ec_point: Option<Vec<u8>>,
    modulus: Option<Vec<u8>>,
    public_exponent: Option<Vec<u8>>,
    modulus_bits: Option<CK_ULONG>,
    subject: Option<Vec<u8>>,
    issuer: Option<Vec<u8>>,
    serial: Option<Vec<u8>>,
    derived: bool,
    session: Option<CK_SESSION_HANDLE>,
    /// signerd's name for a session key pair's half, which the client knows by its own
    /// `CKA_ID` and label (those of `object`).
    session_key: Option<ObjectRef>,
    /// Attributes a session object's template gave that the shim does not derive (e.g. a
    /// certificate's `CKA_HASH_OF_SUBJECT_PUBLIC_KEY`), answered as given.
    given: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
}

/// The objects signerd listed, each with the public key object of every private key that has
/// none stored beside it (same `CKA_ID` and label): a client that finds a key's public half by
/// `CKO_PUBLIC_KEY` + `CKA_ID` (securesystemslib's `HSMSigner`, python-pkcs11) finds one for
/// every key whose public key is known. signerd knows it from the stored public key object or,
/// for keys put into the token without one (a private key and its certificate, as PIV-style
/// tools store them), from the certificate with the same `CKA_ID`, which this also copies onto
/// the private key. The flag says which objects were derived.
pub fn with_public_halves(mut objects: Vec<Object>) -> Vec<(Object, bool)> {
    let class_of = |o: &Object| o.r#ref.as_ref().map(|r| r.class).unwrap_or_default();
    let id_of = |o: &Object| o.r#ref.as_ref().map(|r| r.id.clone()).unwrap_or_default();
    let certified: Vec<(Vec<u8>, i32, Vec<u8>)> = objects
        .iter()
        .filter(|o| class_of(o) == ObjectClass::Certificate as i32)
        .filter(|o| !o.public_key_spki.is_empty())
        .map(|o| (id_of(o), o.key_type, o.public_key_spki.clone()))
        .collect();
    for private in objects
        .iter_mut()
        .filter(|o| class_of(o) == ObjectClass::PrivateKey as i32 && o.public_key_spki.is_empty())
    {
        let id = id_of(private);
        if let Some((_, _, spki)) = certified
            .iter()
            .find(|(cid, kt, _)| *cid == id && *kt == private.key_type)
        {
            private.public_key_spki = spki.clone();
        }
    }
    let has_public = |private: &Object| {
        objects.iter().any(|o| {
            class_of(o) == ObjectClass::PublicKey as i32
                && o.r#ref.as_ref().map(|r| (&r.id, &r.label))
                    == private.r#ref.as_ref().map(|r| (&r.id, &r.label))
        })
    };
    let derived: Vec<Object> = objects
        .iter()
        .filter(|o| class_of(o) == ObjectClass::PrivateKey as i32)
        .filter(|o| !o.public_key_spki.is_empty() && !has_public(o))
        .map(|private| {
            let mut public = private.clone();
            if let Some(r) = public.r#ref.as_mut() {
                r.class = ObjectClass::PublicKey as i32;
            }
            public.sensitive = false;
            public.extractable = true;
            public.uri = String::new();
            public
        })
        .collect();
    objects
        .into_iter()
        .map(|o| (o, false))
        .chain(derived.into_iter().map(|o| (o, true)))
        .collect()
}

impl ObjectView {
    /// The public key object derived from a private key's public half (no such object is
    /// stored in the token, so it cannot be destroyed on its own).
    pub fn derived(object: Object) -> ObjectView {
        ObjectView {
            derived: true,
            ..ObjectView::new(object)
        }
    }

    /// A session object (`CKA_TOKEN` false) kept in the shim's memory for `session`: public
    /// keys and certificates a client creates for the session's life.
    pub fn session_object(object: Object, session: CK_SESSION_HANDLE) -> ObjectView {
        ObjectView {
            session: Some(session),
            ..ObjectView::new(object)
        }
    }

    /// A half of a session key pair: in signerd's token under `object`'s reference, shown to
    /// the client with the `CKA_ID` and label it asked for, for `session`'s life.
    pub fn session_key(
        object: Object,
        id: Vec<u8>,
        label: String,
        session: CK_SESSION_HANDLE,
    ) -> ObjectView {
        let in_token = object.r#ref.clone().unwrap_or_default();
        let mut shown = object;
        shown.r#ref = Some(ObjectRef {
            class: in_token.class,
            id,
            label,
        });
        // signerd's URI names the marked object, which no client can use by name.
        shown.uri = String::new();
        ObjectView {
            session: Some(session),
            session_key: Some(in_token),
            ..ObjectView::new(shown)
        }
    }

    /// signerd's reference for operations on the object: for a session key, the one in the
    /// token, not the client's name for it.
    pub fn signerd_reference(&self) -> ObjectRef {
        self.session_key.clone().unwrap_or_else(|| self.reference())
    }

    /// Whether the object is a half of a session key pair in signerd's token.
    pub fn is_session_key(&self) -> bool {
        self.session_key.is_some()
    }

    /// The same session object, also answering the attributes of `template` it does not
    /// derive itself, as given.
    pub fn with_given(mut self, template: &[crate::template::Attr]) -> ObjectView {
        self.given = template
            .iter()
            .filter(|a| self.attribute(a.ty) == AttrValue::Invalid)
            .map(|a| (a.ty, a.value.to_vec()))
            .collect();
        self
    }

    /// The session a session object belongs to; `None` for objects in signerd's token.
    pub fn session(&self) -> Option<CK_SESSION_HANDLE> {
        self.session
    }

    /// Whether the object exists only in the shim's view ([`ObjectView::derived`]).
    pub fn is_derived(&self) -> bool {
        self.derived
    }

    /// Derives the PKCS#11 view of `object`. What cannot be derived is simply absent.
    pub fn new(object: Object) -> ObjectView {
        let oref = object.r#ref.clone().unwrap_or_default();
        let class = match ObjectClass::try_from(oref.class) {
            Ok(ObjectClass::PrivateKey) => Some(CKO_PRIVATE_KEY),
            Ok(ObjectClass::PublicKey) => Some(CKO_PUBLIC_KEY),
            Ok(ObjectClass::Certificate) => Some(CKO_CERTIFICATE),
            _ => None,
        };
        let key_type = match KeyType::try_from(object.key_type) {
            Ok(KeyType::EcP256) => Some(CKK_EC),
            Ok(KeyType::Ed25519) => Some(CKK_EC_EDWARDS),
            Ok(KeyType::Rsa) => Some(CKK_RSA),
            _ => None,
        };
        let mut view = ObjectView {
            object,
            class,
            key_type,
            ec_params: None,
            ec_point: None,
            modulus: None,
            public_exponent: None,
            modulus_bits: None,
            subject: None,
            issuer: None,
            serial: None,
            derived: false,
            session: None,
            session_key: None,
            given: Vec::new(),
        };
        if let Ok(spki) = SubjectPublicKeyInfoRef::from_der(&view.object.public_key_spki) {
            let point = spki.subject_public_key.raw_bytes();
            match key_type {
                Some(CKK_EC) => {
                    view.ec_params = Some(P256_PARAMS.to_vec());
                    view.ec_point = octet_string(point);
                }
                Some(CKK_EC_EDWARDS) => {
                    view.ec_params = Some(ED25519_PARAMS.to_vec());
                    view.ec_point = octet_string(point);
                }
                _ => {}
            }
        }
        if key_type == Some(CKK_RSA) {
            if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(&view.object.public_key_spki) {
                view.modulus = Some(key.n().to_bytes_be());
                view.public_exponent = Some(key.e().to_bytes_be());
                view.modulus_bits = Some(key.n().bits() as CK_ULONG);
            }
        }
        if class == Some(CKO_CERTIFICATE) {
            if let Ok(cert) = x509_cert::Certificate::from_der(&view.object.certificate_der) {
                view.subject = cert.tbs_certificate.subject.to_der().ok();
                view.issuer = cert.tbs_certificate.issuer.to_der().ok();
                view.serial = cert.tbs_certificate.serial_number.to_der().ok();
            }
        }
        view
    }

    /// signerd's name for the object.
    pub fn reference(&self) -> ObjectRef {
        self.object.r#ref.clone().unwrap_or_default()
    }

    /// `CKA_CLASS`.
    pub fn class(&self) -> Option<CK_OBJECT_CLASS> {
        self.class
    }

    /// signerd's key type of the object (or of a certificate's subject key).
    pub fn key_type(&self) -> KeyType {
        KeyType::try_from(self.object.key_type).unwrap_or(KeyType::Unspecified)
    }

    /// Whether the object is private (`CKA_PRIVATE`): only a logged-in user sees it.
    pub fn is_private(&self) -> bool {
        self.class == Some(CKO_PRIVATE_KEY)
    }

    /// The length of a signature this key makes, for the size query of `C_Sign`.
    pub fn signature_len(&self) -> Option<usize> {
        match self.key_type() {
            KeyType::EcP256 | KeyType::Ed25519 => Some(64),
            KeyType::Rsa => {
                let bits = match self.object.rsa_bits {
                    0 => self.modulus_bits? as usize,
                    b => b as usize,
                };
                Some(bits.div_ceil(8))
            }
            KeyType::Unspecified => None,
        }
    }

    /// The value of attribute `ty`.
    pub fn attribute(&self, ty: CK_ATTRIBUTE_TYPE) -> AttrValue {
        let oref = self.reference();
        let Some(class) = self.class else {
            return AttrValue::Invalid;
        };
        let is_key = class == CKO_PRIVATE_KEY || class == CKO_PUBLIC_KEY;
        let private = class == CKO_PRIVATE_KEY;
        let some = |v: &Option<Vec<u8>>| match v {
            Some(v) => AttrValue::Value(v.clone()),
            None => AttrValue::Invalid,
        };
        match ty {
            CKA_CLASS => ulong(class),
            CKA_TOKEN => flag(self.session.is_none()),
            CKA_PRIVATE => flag(private),
            CKA_MODIFIABLE | CKA_COPYABLE => flag(false),
            CKA_DESTROYABLE => flag(!self.derived),
            CKA_LABEL => AttrValue::Value(oref.label.into_bytes()),
            CKA_ID => AttrValue::Value(oref.id),
            CKA_PUBLIC_KEY_INFO if !self.object.public_key_spki.is_empty() => {
                AttrValue::Value(self.object.public_key_spki.clone())
            }
            CKA_KEY_TYPE if is_key => match self.key_type {
                Some(k) => ulong(k),
                None => AttrValue::Invalid,
            },
            CKA_DERIVE if is_key => flag(false),
            // No key object of signerd's carries a subject name of its own.
            CKA_SUBJECT if is_key => AttrValue::Value(Vec::new()),
            CKA_KEY_GEN_MECHANISM if is_key => ulong(CK_UNAVAILABLE_INFORMATION),
            CKA_START_DATE | CKA_END_DATE if is_key => AttrValue::Value(Vec::new()),
            // What a private key can do, and how it is kept.
            CKA_SIGN if private => flag(true),
            CKA_DECRYPT | CKA_UNWRAP | CKA_SIGN_RECOVER | CKA_ALWAYS_AUTHENTICATE if private => {
                flag(false)
            }
            CKA_SENSITIVE if private => flag(self.object.sensitive),
            CKA_EXTRACTABLE if private => flag(self.object.extractable),
            // signerd makes and imports keys sensitive and non-extractable from the start and
            // never changes that, so the history attributes follow the current ones.
            CKA_ALWAYS_SENSITIVE if private => flag(self.object.sensitive),
            CKA_NEVER_EXTRACTABLE if private => flag(!self.object.extractable),
            CKA_VALUE | CKA_PRIVATE_EXPONENT | CKA_PRIME_1 | CKA_PRIME_2 | CKA_EXPONENT_1
            | CKA_EXPONENT_2 | CKA_COEFFICIENT
                if private =>
            {
                AttrValue::Sensitive
            }
            // What a public key can do.
            CKA_VERIFY if class == CKO_PUBLIC_KEY => flag(true),
            CKA_ENCRYPT | CKA_WRAP | CKA_VERIFY_RECOVER if class == CKO_PUBLIC_KEY => flag(false),
            CKA_TRUSTED if class == CKO_PUBLIC_KEY || class == CKO_CERTIFICATE => flag(false),
            // Public parts, on both halves of a key pair (libp11 reads them from the private
            // key).
            CKA_EC_PARAMS if is_key => some(&self.ec_params),
            CKA_EC_POINT if is_key => some(&self.ec_point),
            CKA_MODULUS if is_key => some(&self.modulus),
            CKA_PUBLIC_EXPONENT if is_key => some(&self.public_exponent),
            CKA_MODULUS_BITS if is_key => match self.modulus_bits {
                Some(b) => ulong(b),
                None => AttrValue::Invalid,
            },
            // Certificates.
            CKA_CERTIFICATE_TYPE if class == CKO_CERTIFICATE => ulong(CKC_X_509),
            CKA_CERTIFICATE_CATEGORY if class == CKO_CERTIFICATE => ulong(0),
            CKA_VALUE if class == CKO_CERTIFICATE => {
                AttrValue::Value(self.object.certificate_der.clone())
            }
            CKA_SUBJECT if class == CKO_CERTIFICATE => some(&self.subject),
            CKA_ISSUER if class == CKO_CERTIFICATE => some(&self.issuer),
            CKA_SERIAL_NUMBER if class == CKO_CERTIFICATE => some(&self.serial),
            _ => match self.given.iter().find(|(t, _)| *t == ty) {
                Some((_, v)) => AttrValue::Value(v.clone()),
                None => AttrValue::Invalid,
            },
        }
    }

    /// Whether every attribute of `template` has exactly the given value on this object.
    pub fn matches(&self, template: &[crate::template::Attr]) -> bool {
        template.iter().all(|a| match self.attribute(a.ty) {
            AttrValue::Value(v) => v == *a.value,
            AttrValue::Sensitive | AttrValue::Invalid => false,
        })
    }
}

/// The key of an object in the handle table: signerd's reference, in full.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RefKey {
    class: i32,
    id: Vec<u8>,
    label: String,
}

impl From<&ObjectRef> for RefKey {
    fn from(r: &ObjectRef) -> Self {
        RefKey {
            class: r.class,
            id: r.id.clone(),
            label: r.label.clone(),
        }
    }
}

/// The shim's object handles.
#[derive(Debug)]
pub struct ObjectTable {
    next: CK_OBJECT_HANDLE,
    by_handle: HashMap<CK_OBJECT_HANDLE, Arc<ObjectView>>,
    by_ref: HashMap<RefKey, CK_OBJECT_HANDLE>,
}

impl Default for ObjectTable {
    fn default() -> Self {
        ObjectTable {
            next: 1,
            by_handle: HashMap::new(),
            by_ref: HashMap::new(),
        }
    }
}

impl ObjectTable {
    /// The handle of `object` (a new one the first time it is seen), with its refreshed view.
    pub fn upsert(&mut self, object: Object) -> (CK_OBJECT_HANDLE, Arc<ObjectView>) {
        self.upsert_view(ObjectView::new(object))
    }

    /// As [`ObjectTable::upsert`], for a view already made.
    pub fn upsert_view(&mut self, view: ObjectView) -> (CK_OBJECT_HANDLE, Arc<ObjectView>) {
        let view = Arc::new(view);
        let key = RefKey::from(&view.reference());
        let handle = match self.by_ref.get(&key) {
            Some(h) => *h,
            None => {
                let h = self.next;
                self.next += 1;
                self.by_ref.insert(key, h);
                h
            }
        };
        self.by_handle.insert(handle, view.clone());
        (handle, view)
    }

    /// Adds a session object, which no reference of signerd's names: a new handle each time.
    pub fn insert_session_object(&mut self, view: ObjectView) -> CK_OBJECT_HANDLE {
        let h = self.next;
        self.next += 1;
        self.by_handle.insert(h, Arc::new(view));
        h
    }

    /// The session objects, with their handles.
    pub fn session_objects(&self) -> Vec<(CK_OBJECT_HANDLE, Arc<ObjectView>)> {
        self.by_handle
            .iter()
            .filter(|(_, v)| v.session.is_some())
            .map(|(h, v)| (*h, v.clone()))
            .collect()
    }

    /// Drops the session objects of the sessions `closed` says are closed, and gives back the
    /// session keys among them (to destroy in signerd's token).
    pub fn drop_session_objects(
        &mut self,
        closed: impl Fn(CK_SESSION_HANDLE) -> bool,
    ) -> Vec<ObjectRef> {
        let mut keys = Vec::new();
        self.by_handle.retain(|_, v| {
            let keep = v.session.is_none_or(|s| !closed(s));
            if !keep {
                keys.extend(v.session_key.clone());
            }
            keep
        });
        keys
    }

    /// The object behind `handle`.
    pub fn get(&self, handle: CK_OBJECT_HANDLE) -> Option<Arc<ObjectView>> {
        self.by_handle.get(&handle).cloned()
    }

    /// Forgets `handle` (its object was destroyed).
    pub fn remove(&mut self, handle: CK_OBJECT_HANDLE) {
        if let Some(view) = self.by_handle.remove(&handle) {
            if view.session.is_none() {
                self.by_ref.remove(&RefKey::from(&view.reference()));
            }
        }
    }

    /// Forgets the objects signerd no longer lists among `seen` for a search that covered
    /// every object (an unfiltered `FindObjects`).
    pub fn retain_seen(&mut self, seen: &[CK_OBJECT_HANDLE]) {
        self.by_handle
            .retain(|h, v| v.session.is_some() || seen.contains(h));
        self.by_ref.retain(|_, h| seen.contains(h));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Attr;

    fn p256_spki() -> Vec<u8> {
        use p256::pkcs8::EncodePublicKey;
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        secret
            .public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    fn object(class: ObjectClass, id: &[u8], label: &str) -> Object {
        Object {
            r#ref: Some(ObjectRef {
                class: class as i32,
                id: id.to_vec(),
                label: label.into(),
            }),
            key_type: KeyType::EcP256 as i32,
            public_key_spki: p256_spki(),
            sensitive: true,
            ..Object::default()
        }
    }

    #[test]
    fn private_keys_show_public_parts_and_hide_secrets() {
        let view = ObjectView::new(object(ObjectClass::PrivateKey, &[2], "root"));
        assert_eq!(
            view.attribute(CKA_CLASS),
            AttrValue::Value(CKO_PRIVATE_KEY.to_ne_bytes().to_vec())
        );
        assert_eq!(view.attribute(CKA_PRIVATE), AttrValue::Value(vec![1]));
        assert_eq!(view.attribute(CKA_VALUE), AttrValue::Sensitive);
        assert_eq!(
            view.attribute(CKA_EC_PARAMS),
            AttrValue::Value(P256_PARAMS.to_vec())
        );
        let AttrValue::Value(point) = view.attribute(CKA_EC_POINT) else {
            panic!("EC point")
        };
        // The notary CLI reads X at [3..35] and Y at [35..]: DER OCTET STRING of 04||X||Y.
        assert_eq!(&point[..3], &[0x04, 0x41, 0x04]);
        assert_eq!(point.len(), 67);
        assert_eq!(view.attribute(CKA_MODULUS), AttrValue::Invalid);
        assert_eq!(view.signature_len(), Some(64));
    }

    #[test]
    fn templates_match_on_every_attribute() {
        let view = ObjectView::new(object(ObjectClass::PublicKey, &[2], "root"));
        let attr = |ty, value: Vec<u8>| Attr::new(ty, value);
        assert!(view.matches(&[
            attr(CKA_TOKEN, vec![1]),
            attr(CKA_ID, vec![2]),
            attr(CKA_CLASS, CKO_PUBLIC_KEY.to_ne_bytes().to_vec()),
        ]));
        assert!(!view.matches(&[attr(CKA_ID, vec![3])]));
        assert!(!view.matches(&[attr(CKA_VALUE, vec![])]));
        assert!(view.matches(&[]));
    }

    #[test]
    fn private_keys_without_a_stored_public_key_get_a_derived_one() {
        let mut bare = object(ObjectClass::PrivateKey, &[2], "b");
        let spki = std::mem::take(&mut bare.public_key_spki);
        let mut certificate = object(ObjectClass::Certificate, &[2], "b-cert");
        certificate.public_key_spki = spki;
        let stored = vec![
            object(ObjectClass::PrivateKey, &[1], "a"),
            object(ObjectClass::PublicKey, &[1], "a"),
            bare,
            certificate,
            // No public key known: nothing to derive.
            Object {
                public_key_spki: Vec::new(),
                ..object(ObjectClass::PrivateKey, &[3], "c")
            },
        ];
        let all = with_public_halves(stored);
        assert_eq!(all.len(), 6);
        let derived: Vec<_> = all.iter().filter(|(_, d)| *d).collect();
        assert_eq!(
            derived.len(),
            1,
            "only key 2 lacks a stored public half and has a certificate"
        );
        let view = ObjectView::derived(derived[0].0.clone());
        assert_eq!(view.class(), Some(CKO_PUBLIC_KEY));
        assert_eq!(view.attribute(CKA_ID), AttrValue::Value(vec![2]));
        assert_eq!(view.attribute(CKA_PRIVATE), AttrValue::Value(vec![0]));
        assert_eq!(view.attribute(CKA_DESTROYABLE), AttrValue::Value(vec![0]));
        assert!(matches!(view.attribute(CKA_EC_POINT), AttrValue::Value(p) if p.len() == 67));
        assert_eq!(view.attribute(CKA_VALUE), AttrValue::Invalid);
    }

    #[test]
    fn session_objects_keep_their_handles_apart_and_go_with_their_session() {
        let mut table = ObjectTable::default();
        let (token, _) = table.upsert(object(ObjectClass::PublicKey, &[1], "a"));
        let given = [
            Attr::new(CKA_HASH_OF_SUBJECT_PUBLIC_KEY, vec![9; 20]),
            Attr::new(CKA_ID, vec![2]),
        ];
        let mine = table.insert_session_object(
            ObjectView::session_object(object(ObjectClass::PublicKey, &[1], "a"), 7)
                .with_given(&given),
        );
        assert_eq!(
            table
                .get(mine)
                .unwrap()
                .attribute(CKA_HASH_OF_SUBJECT_PUBLIC_KEY),
            AttrValue::Value(vec![9; 20]),
            "a template's attribute the shim does not derive is kept"
        );
        assert_eq!(
            table.get(mine).unwrap().attribute(CKA_ID),
            AttrValue::Value(vec![1]),
            "what the shim derives is not overridden"
        );
        assert_ne!(token, mine);
        assert_eq!(
            table.get(mine).unwrap().attribute(CKA_TOKEN),
            AttrValue::Value(vec![0])
        );
        table.retain_seen(&[]);
        assert!(
            table.get(mine).is_some(),
            "signerd's listing does not drop them"
        );
        table.drop_session_objects(|s| s == 7);
        assert!(table.get(mine).is_none());
    }

    #[test]
    fn handles_are_stable_per_reference_and_never_reused() {
        let mut table = ObjectTable::default();
        let (a, _) = table.upsert(object(ObjectClass::PrivateKey, &[1], "a"));
        let (b, _) = table.upsert(object(ObjectClass::PublicKey, &[1], "a"));
        let (a2, _) = table.upsert(object(ObjectClass::PrivateKey, &[1], "a"));
        assert_ne!(a, b);
        assert_eq!(a, a2);
        table.remove(a);
        assert!(table.get(a).is_none());
        let (a3, _) = table.upsert(object(ObjectClass::PrivateKey, &[1], "a"));
        assert!(a3 > b, "a destroyed object's handle is not reused");
    }
}
