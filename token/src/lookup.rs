//! TUF keys by key ID, the way notary-server asks for them: look a key up (through the handle
//! cache), describe it, list every key, delete one.

use std::sync::Arc;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::connection::{CachedKey, Connection, Token};
use crate::encoding::read_public_key;
use crate::error::{Attempt, OpError, TokenError};
use crate::key::{KeyAlgorithm, KeyId, KeyInfo, KeyUsage};

impl Token {
    /// The public key, algorithm and usage of a key.
    pub fn key_info(&self, id: &KeyId) -> Result<KeyInfo, TokenError> {
        self.run(|conn, session| Ok(KeyInfo::clone(&self.lookup(conn, session, id)?.info)))
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

    /// The cached key, or the key found in the token by `CKA_ID` (and then cached).
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
        let cka_id = Attribute::Id(id.as_bytes().to_vec());
        let find_one = |class: ObjectClass| -> Attempt<Option<ObjectHandle>> {
            let found = session.find_objects(&[Attribute::Class(class), cka_id.clone()])?;
            Ok(found.first().copied())
        };
        let Some(private) = find_one(ObjectClass::PRIVATE_KEY)? else {
            return Err(TokenError::KeyNotFound(*id).into());
        };
        let malformed = |reason: String| TokenError::MalformedKey {
            id: id.to_string(),
            reason,
        };
        let Some(public) = find_one(ObjectClass::PUBLIC_KEY)? else {
            return Err(
                malformed("the private key has no public key object beside it".into()).into(),
            );
        };
        let attrs =
            session.get_attributes(private, &[AttributeType::KeyType, AttributeType::Label])?;
        let mut key_type = None;
        let mut label = String::new();
        for attr in attrs {
            match attr {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                _ => {}
            }
        }
        let algorithm = match key_type {
            Some(KeyType::EC) => KeyAlgorithm::Ecdsa,
            Some(KeyType::EC_EDWARDS) => KeyAlgorithm::Ed25519,
            Some(KeyType::RSA) => KeyAlgorithm::Rsa,
            other => return Err(malformed(format!("unsupported key type {other:?}")).into()),
        };
        let public_key = read_public_key(session, public, algorithm)?;
        if KeyId::of_public_key(algorithm, &public_key) != *id {
            return Err(
                malformed("its CKA_ID is not the TUF key ID of its public key".into()).into(),
            );
        }
        let key = CachedKey {
            info: Arc::new(KeyInfo {
                id: *id,
                algorithm,
                public_key,
                usage: KeyUsage::from_label(&label),
            }),
            private,
            generation: conn.generation,
        };
        self.write_keys().insert(*id, key.clone());
        Ok(key)
    }
}
