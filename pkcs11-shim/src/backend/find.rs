//! Object searches: `C_FindObjectsInit` asks signerd once, `C_FindObjects` pages through the
//! snapshot.

use cryptoki_sys::*;
use signerd_proto::admin::{FindObjectsRequest, FindObjectsResponse, ObjectClass};

use super::login::Login;
use super::Shim;
use crate::error::Error;
use crate::template::{self, Attr};

/// A search in progress.
pub(super) struct FindState {
    pub(super) handles: Vec<CK_OBJECT_HANDLE>,
    pub(super) next: usize,
}

impl Shim {
    /// `C_FindObjectsInit`: asks signerd now, so `C_FindObjects` pages through a snapshot.
    pub fn find_init(&self, handle: CK_SESSION_HANDLE, template: &[Attr]) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        if s.find.is_some() {
            return Err(Error::OperationActive);
        }
        let user = self.login_of(s.slot)? == Some(Login::User);
        let handles = match template::find_request(template)? {
            None => Vec::new(),
            Some(mut request) => {
                let everything = request == FindObjectsRequest::default();
                // A key's public half may be derived from its private key (see
                // `with_public_halves`), so a search for public keys asks for both.
                if request.class == ObjectClass::PublicKey as i32 {
                    request.class = ObjectClass::Unspecified as i32;
                }
                let found: FindObjectsResponse = self.bridge.call(request)?;
                let found = self.remember_found(found.objects)?;
                if everything {
                    let seen: Vec<_> = found.iter().map(|(h, _)| *h).collect();
                    self.objects.lock()?.retain_seen(&seen);
                }
                found
                    .into_iter()
                    .filter(|(_, v)| !self.hidden(v) && (user || !v.is_private()))
                    .filter(|(_, v)| v.matches(template))
                    .map(|(h, _)| h)
                    .collect()
            }
        };
        let mut handles = handles;
        if template::find_request(template)?.is_some() {
            let local = self.objects.lock()?.session_objects();
            handles.extend(
                local
                    .into_iter()
                    .filter(|(_, v)| user || !v.is_private())
                    .filter(|(_, v)| v.matches(template))
                    .map(|(h, _)| h),
            );
        }
        s.find = Some(FindState { handles, next: 0 });
        Ok(())
    }

    /// `C_FindObjects`.
    pub fn find(
        &self,
        handle: CK_SESSION_HANDLE,
        max: usize,
    ) -> Result<Vec<CK_OBJECT_HANDLE>, Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let find = s.find.as_mut().ok_or(Error::OperationNotInitialized)?;
        let end = find.handles.len().min(find.next.saturating_add(max));
        let page = find.handles[find.next..end].to_vec();
        find.next = end;
        Ok(page)
    }

    /// `C_FindObjectsFinal`.
    pub fn find_final(&self, handle: CK_SESSION_HANDLE) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        s.find
            .take()
            .map(|_| ())
            .ok_or(Error::OperationNotInitialized)
    }
}
