//! Objects: which the caller may see, their attributes, and the calls that change the token
//! (certificates, imported keys, generated key pairs, destruction).

use std::sync::Arc;

use cryptoki_sys::*;
use signerd_client::Rpc;
use signerd_proto::admin::{
    DestroyObjectRequest, DestroyObjectResponse, GenerateKeyPairResponse, ImportPrivateKeyResponse,
    Object, ObjectRef,
};

use super::login::Login;
use super::Shim;
use crate::error::Error;
use crate::log::shim_log;
use crate::objects::{with_public_halves, AttrValue, ObjectView};
use crate::template::{self, Attr, NewObject};

impl Shim {
    /// Whether the configuration hides `view` (e.g. Ed25519 keys from libp11).
    pub(super) fn hidden(&self, view: &ObjectView) -> bool {
        let key_type = view.key_type();
        self.config.hide_key_types.contains(&key_type)
            || self
                .config
                .max_id_len
                .is_some_and(|max| view.reference().id.len() > max)
    }

    /// The object behind `object`, if this session may see it.
    pub(super) fn visible_object(
        &self,
        slot: CK_SLOT_ID,
        object: CK_OBJECT_HANDLE,
    ) -> Result<Arc<ObjectView>, Error> {
        let view = self
            .objects
            .lock()?
            .get(object)
            .ok_or(Error::ObjectHandleInvalid)?;
        if self.hidden(&view) {
            return Err(Error::ObjectHandleInvalid);
        }
        if view.is_private() && self.login_of(slot)? != Some(Login::User) {
            return Err(Error::UserNotLoggedIn);
        }
        Ok(view)
    }

    /// Records objects signerd returned and gives their handles.
    pub(super) fn remember(
        &self,
        objects: Vec<Object>,
    ) -> Result<Vec<(CK_OBJECT_HANDLE, Arc<ObjectView>)>, Error> {
        let mut table = self.objects.lock()?;
        Ok(objects.into_iter().map(|o| table.upsert(o)).collect())
    }

    /// Records the objects a search found, with the public halves derived for private keys
    /// that have none stored.
    pub(super) fn remember_found(
        &self,
        objects: Vec<Object>,
    ) -> Result<Vec<(CK_OBJECT_HANDLE, Arc<ObjectView>)>, Error> {
        let mut table = self.objects.lock()?;
        Ok(with_public_halves(objects)
            .into_iter()
            .map(|(o, derived)| {
                table.upsert_view(if derived {
                    ObjectView::derived(o)
                } else {
                    ObjectView::new(o)
                })
            })
            .collect())
    }

    /// `C_GetAttributeValue`: one answer per requested type.
    pub fn attributes(
        &self,
        handle: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>, Error> {
        let slot = self.session(handle)?.lock()?.slot;
        let view = self.visible_object(slot, object)?;
        Ok(types.iter().map(|t| view.attribute(*t)).collect())
    }

    /// Checks that the session may change the token.
    pub(super) fn writable(&self, handle: CK_SESSION_HANDLE) -> Result<(CK_SLOT_ID, Login), Error> {
        let (slot, rw) = {
            let session = self.session(handle)?;
            let s = session.lock()?;
            (s.slot, s.read_write)
        };
        if !rw {
            return Err(Error::SessionReadOnly);
        }
        let who = self.login_of(slot)?.ok_or(Error::UserNotLoggedIn)?;
        Ok((slot, who))
    }

    /// `C_CreateObject`: stores a certificate, or imports a private key into the token (the
    /// notary CLI does this logged in as SO, like ykcs11 allows).
    pub fn create_object(
        &self,
        handle: CK_SESSION_HANDLE,
        template: &[Attr],
    ) -> Result<CK_OBJECT_HANDLE, Error> {
        let read_only = !self.session(handle)?.lock()?.read_write;
        let object = match template::new_object_in(template, read_only)? {
            NewObject::Session(object) => {
                // Session objects may be made in read-only sessions, and public ones without
                // a login (PKCS#11 2.40 section 6.7.1).
                self.session(handle)?;
                let view = ObjectView::session_object(object, handle).with_given(template);
                let h = self.objects.lock()?.insert_session_object(view);
                shim_log!(
                    Info,
                    "C_CreateObject",
                    "session object {h} for session {handle}"
                );
                return Ok(h);
            }
            NewObject::Certificate(request) => {
                self.writable(handle)?;
                self.bridge.call(request)?
            }
            NewObject::PrivateKey(request) => {
                self.writable(handle)?;
                let response: ImportPrivateKeyResponse = self.bridge.call(request)?;
                if let Some(public) = response.public_key {
                    self.remember(vec![public])?;
                }
                response.private_key.ok_or_else(|| Error::Refused {
                    call: Rpc::ImportPrivateKey,
                    message: "signerd returned no private key object".into(),
                })?
            }
        };
        let (h, view) = self
            .remember(vec![object])?
            .pop()
            .ok_or_else(|| Error::General("no object remembered".into()))?;
        shim_log!(
            Info,
            "C_CreateObject",
            "created {:?} object with CKA_ID {} in signerd's token",
            view.class(),
            hex_id(&view.reference().id)
        );
        Ok(h)
    }

    /// `C_GenerateKeyPair`: the key pair is made in signerd's token. A session key pair
    /// (`CKA_TOKEN` false) is too, owned by the shim's connection to signerd: it goes with its
    /// session, and with the connection if the process ends without closing it.
    pub fn generate_key_pair(
        &self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        public: &[Attr],
        private: &[Attr],
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), Error> {
        let request = template::key_pair_request(mechanism, public, private)?;
        if request.session {
            // Session objects may be made in read-only sessions (PKCS#11 2.40 section 6.7.1);
            // a private key, by the user.
            let slot = self.session(handle)?.lock()?.slot;
            if self.login_of(slot)? != Some(Login::User) {
                return Err(Error::UserNotLoggedIn);
            }
        } else {
            self.writable(handle)?;
        }
        let (id, label) = (request.id.clone(), request.label.clone());
        let session = request.session;
        let response: GenerateKeyPairResponse = self.bridge.call(request)?;
        let missing = || Error::Refused {
            call: Rpc::GenerateKeyPair,
            message: "signerd returned no key object".into(),
        };
        let public = response.public_key.ok_or_else(missing)?;
        let private = response.private_key.ok_or_else(missing)?;
        let (public_h, private_h, view) = if session {
            let mut table = self.objects.lock()?;
            let public_h = table.insert_session_object(ObjectView::session_key(
                public,
                id.clone(),
                label.clone(),
                handle,
            ));
            let view = ObjectView::session_key(private, id, label, handle);
            let (key_type, shown_id) = (view.key_type(), view.reference().id);
            let private_h = table.insert_session_object(view);
            (public_h, private_h, (key_type, shown_id))
        } else {
            let mut handles = self.remember(vec![public, private])?;
            let (private_h, view) = handles.pop().ok_or_else(missing)?;
            let (public_h, _) = handles.pop().ok_or_else(missing)?;
            (public_h, private_h, (view.key_type(), view.reference().id))
        };
        shim_log!(
            Info,
            "C_GenerateKeyPair",
            "generated a {:?} {} key pair in signerd's token, CKA_ID {}",
            view.0,
            if session { "session" } else { "token" },
            hex_id(&view.1)
        );
        Ok((public_h, private_h))
    }

    /// Destroys session keys in signerd's token (their session closed). A failure is logged
    /// only: signerd destroys them anyway when the shim's connection closes.
    pub(super) fn destroy_session_keys(&self, keys: Vec<ObjectRef>) {
        for key in keys {
            let destroyed: Result<DestroyObjectResponse, Error> =
                self.bridge.call(DestroyObjectRequest { r#ref: Some(key) });
            if let Err(e) = destroyed {
                shim_log!(
                    Warn,
                    "C_CloseSession",
                    "could not destroy a session key in signerd's token ({e}); signerd does when this process's connection closes"
                );
            }
        }
    }

    /// `C_DestroyObject`.
    pub fn destroy_object(
        &self,
        handle: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        let slot = self.session(handle)?.lock()?.slot;
        let view = self.visible_object(slot, object)?;
        if view.session().is_some() {
            if view.is_session_key() {
                let _: DestroyObjectResponse = self.bridge.call(DestroyObjectRequest {
                    r#ref: Some(view.signerd_reference()),
                })?;
            }
            self.objects.lock()?.remove(object);
            return Ok(());
        }
        self.writable(handle)?;
        if view.is_derived() {
            return Err(Error::ActionProhibited(
                "this public key is the public half of a private key in signerd's token, not an object of its own: destroy the private key",
            ));
        }
        let _: DestroyObjectResponse = self.bridge.call(DestroyObjectRequest {
            r#ref: Some(view.reference()),
        })?;
        self.objects.lock()?.remove(object);
        Ok(())
    }
}

/// A `CKA_ID` for log lines.
fn hex_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}
