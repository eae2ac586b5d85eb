//! TUF keys by key ID, the way notary-server asks for them: the key index (every key's handle
//! and public key, read once when the token is connected), look a key up, describe it, list
//! every key, delete one.
//!
//! The index is what keeps the token's object search off the request path: a search walks every
//! object in the token (SoftHSM: tens of milliseconds in a token of 1,000 keys), a lookup in the
//! index is a hash map read. It is kept current by what signerd does (create, delete) and by
//! what it meets: a key the index does not have is searched for once per request (another
//! replica on the same token may have just made it), and a handle the token no longer knows
//! (another replica deleted the key) drops that key from the index and is searched for again.

use std::collections::HashMap;
use std::sync::Arc;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::connection::{CachedKey, Connection, Token};
use crate::encoding::{key_algorithm, read_public_key};
use crate::error::{Attempt, Fault, OpError, TokenError};
use crate::key::{KeyId, KeyInfo, KeyUsage};

/// What is read of every key object found, in one `C_GetAttributeValue` batch: enough to pair
/// the halves and name the key. Attributes a class does not have are left out by the token.
const KEY_FACTS: &[AttributeType] = &[
    AttributeType::Class,
    AttributeType::Id,
    AttributeType::KeyType,
    AttributeType::Label,
];

/// One key object's [`KEY_FACTS`].
struct KeyObject {
    handle: ObjectHandle,
    class: Option<ObjectClass>,
    id: Vec<u8>,
    key_type: Option<KeyType>,
    label: Vec<u8>,
}

impl KeyObject {
    fn read(session: &Session, handle: ObjectHandle) -> Attempt<KeyObject> {
        let mut object = KeyObject {
            handle,
            class: None,
            id: Vec::new(),
            key_type: None,
            label: Vec::new(),
        };
        for attr in session.get_attributes(handle, KEY_FACTS)? {
            match attr {
                Attribute::Class(c) => object.class = Some(c),
                Attribute::Id(id) => object.id = id,
                Attribute::KeyType(t) => object.key_type = Some(t),
                Attribute::Label(l) => object.label = l,
                _ => {}
            }
        }
        Ok(object)
    }
}

impl Token {
    /// The public key, algorithm and usage of a key, from the key index (the token is searched
    /// only for a key not in it). Unlike [`Token::key_info`] this does not confirm that the key
    /// is still in the token: it is for a caller about to use the key, whose own token call
    /// finds a key deleted meanwhile (by another replica) and answers that it is not found.
    pub fn indexed_key_info(&self, id: &KeyId) -> Result<KeyInfo, TokenError> {
        self.run(|conn, session| Ok(KeyInfo::clone(&self.lookup(conn, session, id)?.info)))
    }

    /// The public key, algorithm and usage of a key.
    pub fn key_info(&self, id: &KeyId) -> Result<KeyInfo, TokenError> {
        self.run(|conn, session| {
            let key = self.lookup(conn, session, id)?;
            // The index answers without the token: make sure the key is still there (one
            // attribute read on its handle), so a key another replica deleted is not described.
            match session.get_attributes(key.private, &[AttributeType::Class]) {
                Ok(_) => Ok(KeyInfo::clone(&key.info)),
                Err(e) => {
                    let call = crate::error::CallError::from(e);
                    if call.fault() == Fault::StaleHandle {
                        self.forget_key(id);
                        Ok(KeyInfo::clone(&self.lookup(conn, session, id)?.info))
                    } else {
                        Err(OpError::Call(call))
                    }
                }
            }
        })
    }

    /// Deletes both halves of key `id`; `false` when there was nothing to delete.
    pub fn delete_key(&self, id: &KeyId) -> Result<bool, TokenError> {
        self.write_keys().remove(id);
        self.run(|_conn, session| {
            let objects = session.find_objects(&[Attribute::Id(id.as_bytes().to_vec())])?;
            for object in &objects {
                match session.destroy_object(*object) {
                    Ok(()) | Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(!objects.is_empty())
        })
    }

    /// Every signerd key in the token (private keys whose `CKA_ID` is a TUF key ID).
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, TokenError> {
        self.run(|conn, session| {
            let handles = session.find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Token(true),
            ])?;
            let mut keys = Vec::new();
            for handle in handles {
                let attrs = session.get_attributes(handle, &[AttributeType::Id])?;
                let id = attrs.iter().find_map(|a| match a {
                    Attribute::Id(bytes) => KeyId::from_cka_id(bytes),
                    _ => None,
                });
                if let Some(id) = id {
                    match self.lookup(conn, session, &id) {
                        Ok(key) => keys.push(KeyInfo::clone(&key.info)),
                        Err(OpError::Final(TokenError::MalformedKey { id, reason })) => {
                            tracing::warn!(%id, %reason, "skipping a key object signerd cannot use");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            keys.sort_by(|a, b| (&a.usage.gun, &a.usage.role, a.id).cmp(&(&b.usage.gun, &b.usage.role, b.id)));
            Ok(keys)
        })
    }

    /// The key from the index, or (a miss) found in the token by `CKA_ID` and then indexed.
    pub(crate) fn lookup(
        &self,
        conn: &Connection,
        session: &Session,
        id: &KeyId,
    ) -> Attempt<CachedKey> {
        if let Some(key) = self.read_keys().get(id) {
            if key.generation == conn.generation {
                return Ok(key.clone());
            }
        }
        // One search for both halves: a search walks every object in the token.
        let found = session.find_objects(&[Attribute::Id(id.as_bytes().to_vec())])?;
        let mut private = None;
        let mut public = None;
        for handle in found {
            let object = KeyObject::read(session, handle)?;
            match object.class {
                Some(ObjectClass::PRIVATE_KEY) if private.is_none() => private = Some(object),
                Some(ObjectClass::PUBLIC_KEY) if public.is_none() => public = Some(object),
                _ => {}
            }
        }
        let Some(private) = private else {
            return Err(TokenError::KeyNotFound(*id).into());
        };
        let key = cached_key(conn, session, id, &private, public.as_ref())?;
        self.write_keys().insert(*id, key.clone());
        Ok(key)
    }
}

/// A key from its two halves' facts, its public key read and checked against its key ID.
fn cached_key(
    conn: &Connection,
    session: &Session,
    id: &KeyId,
    private: &KeyObject,
    public: Option<&KeyObject>,
) -> Attempt<CachedKey> {
    let malformed = |reason: String| TokenError::MalformedKey {
        id: id.to_string(),
        reason,
    };
    let Some(public) = public else {
        return Err(malformed("the private key has no public key object beside it".into()).into());
    };
    let Some(algorithm) = private.key_type.and_then(key_algorithm) else {
        return Err(malformed(format!("unsupported key type {:?}", private.key_type)).into());
    };
    let public_key = read_public_key(session, public.handle, algorithm)?;
    if KeyId::of_public_key(algorithm, &public_key) != *id {
        return Err(malformed("its CKA_ID is not the TUF key ID of its public key".into()).into());
    }
    Ok(CachedKey {
        info: Arc::new(KeyInfo {
            id: *id,
            algorithm,
            public_key,
            usage: KeyUsage::from_label(&String::from_utf8_lossy(&private.label)),
        }),
        private: private.handle,
        generation: conn.generation,
    })
}

/// Every TUF key in the token, read in one pass: one `C_FindObjects` over the token's objects,
/// [`KEY_FACTS`] of each in one batch, and the public key of each pair. Keys signerd cannot use
/// (one half missing, an unknown type, a `CKA_ID` that is not their key ID) are left out: a
/// request for one searches, and answers what is wrong with it.
pub(crate) fn index_keys(
    conn: &Connection,
    session: &Session,
) -> Attempt<HashMap<KeyId, CachedKey>> {
    let handles = session.find_objects(&[Attribute::Token(true)])?;
    let mut privates = Vec::new();
    let mut publics: HashMap<KeyId, Vec<KeyObject>> = HashMap::new();
    for handle in handles {
        let object = match KeyObject::read(session, handle) {
            Ok(object) => object,
            // Deleted between the search and the read (another replica): not a key any more.
            Err(OpError::Call(call)) if call.fault() == Fault::StaleHandle => continue,
            Err(e) => return Err(e),
        };
        let Some(id) = KeyId::from_cka_id(&object.id) else {
            continue;
        };
        match object.class {
            Some(ObjectClass::PRIVATE_KEY) => privates.push((id, object)),
            Some(ObjectClass::PUBLIC_KEY) => publics.entry(id).or_default().push(object),
            _ => {}
        }
    }
    let mut index = HashMap::with_capacity(privates.len());
    for (id, private) in privates {
        if index.contains_key(&id) {
            continue;
        }
        let halves = publics.get(&id).map(Vec::as_slice).unwrap_or_default();
        // Several public halves under one ID: the one whose key matches the ID.
        let mut last = None;
        for public in halves
            .iter()
            .map(Some)
            .chain(halves.is_empty().then_some(None))
        {
            match cached_key(conn, session, &id, &private, public) {
                Ok(key) => {
                    index.insert(id, key);
                    last = None;
                    break;
                }
                Err(OpError::Final(e)) => last = Some(e),
                Err(OpError::Call(call)) if call.fault() == Fault::StaleHandle => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = last {
            tracing::debug!(key_id = %id, error = %e, "key left out of the index");
        }
    }
    Ok(index)
}
