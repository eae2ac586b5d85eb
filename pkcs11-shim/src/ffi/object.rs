//! Object management and search: create, destroy, attributes, find.

use std::ptr;

use cryptoki_sys::*;

use super::args::*;
use crate::backend;
use crate::error::Error;
use crate::objects::AttrValue;

cryptoki_fn! {
    /// Stores a certificate or imports a private key into signerd's token.
    fn C_CreateObject(
        hSession: CK_SESSION_HANDLE,
        pTemplate: *mut CK_ATTRIBUTE,
        ulCount: CK_ULONG,
        phObject: *mut CK_OBJECT_HANDLE,
    ) {
        let shim = backend::get()?;
        // SAFETY: checked by `out`.
        let object = unsafe { out(phObject, "phObject") }?;
        // SAFETY: checked by `template_in`; the caller gave ulCount attributes.
        let template = unsafe { template_in(pTemplate, ulCount) }?;
        *object = shim.create_object(hSession, &template)?;
        Ok(())
    }
}

cryptoki_fn! {
    /// Destroys an object in signerd's token.
    fn C_DestroyObject(hSession: CK_SESSION_HANDLE, hObject: CK_OBJECT_HANDLE) {
        backend::get()?.destroy_object(hSession, hObject)
    }
}

cryptoki_fn! {
    /// Reads attributes with the size convention: a null `pValue` asks for the length.
    fn C_GetAttributeValue(
        hSession: CK_SESSION_HANDLE,
        hObject: CK_OBJECT_HANDLE,
        pTemplate: *mut CK_ATTRIBUTE,
        ulCount: CK_ULONG,
    ) {
        let shim = backend::get()?;
        if pTemplate.is_null() || !pTemplate.is_aligned() {
            return Err(Error::ArgumentsBad("pTemplate"));
        }
        // SAFETY: checked by `slice_in`; the caller gave ulCount attributes. Only the types
        // are read here; the array is written below through the same pointer.
        let types: Vec<CK_ATTRIBUTE_TYPE> = unsafe { slice_in(pTemplate.cast_const(), ulCount, "pTemplate") }?
            .iter()
            .map(|a| a.type_)
            .collect();
        let values = shim.attributes(hSession, hObject, &types)?;
        let mut result = Ok(());
        let mut worse = |e: Error| {
            let rank = |e: &Result<(), Error>| match e {
                Err(Error::AttributeSensitive) => 3,
                Err(Error::AttributeTypeInvalid) => 2,
                Err(Error::BufferTooSmall) => 1,
                _ => 0,
            };
            let candidate = Err(e);
            if rank(&candidate) > rank(&result) {
                result = candidate;
            }
        };
        for (i, value) in values.into_iter().enumerate() {
            // SAFETY: `i < ulCount` (one value per type read above) and pTemplate is a valid,
            // aligned array of ulCount attributes (checked by `slice_in`).
            let attr = unsafe { &mut *pTemplate.add(i) };
            match value {
                AttrValue::Sensitive => {
                    attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    worse(Error::AttributeSensitive);
                }
                AttrValue::Invalid => {
                    attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    worse(Error::AttributeTypeInvalid);
                }
                AttrValue::Value(bytes) => {
                    if attr.pValue.is_null() {
                        attr.ulValueLen = bytes.len() as CK_ULONG;
                    } else if (attr.ulValueLen as usize) < bytes.len() {
                        attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        worse(Error::BufferTooSmall);
                    } else {
                        // SAFETY: pValue is non-null (checked) with ulValueLen bytes of room
                        // by the caller's contract, and bytes.len() <= ulValueLen (checked).
                        unsafe {
                            ptr::copy_nonoverlapping(bytes.as_ptr(), attr.pValue.cast::<u8>(), bytes.len())
                        };
                        attr.ulValueLen = bytes.len() as CK_ULONG;
                    }
                }
            }
        }
        result
    }
}

cryptoki_fn! {
    /// Starts a search; signerd is asked now.
    fn C_FindObjectsInit(hSession: CK_SESSION_HANDLE, pTemplate: *mut CK_ATTRIBUTE, ulCount: CK_ULONG) {
        let shim = backend::get()?;
        // SAFETY: checked by `template_in`; the caller gave ulCount attributes.
        let template = unsafe { template_in(pTemplate, ulCount) }?;
        shim.find_init(hSession, &template)
    }
}

cryptoki_fn! {
    /// The next handles of the search.
    fn C_FindObjects(
        hSession: CK_SESSION_HANDLE,
        phObject: *mut CK_OBJECT_HANDLE,
        ulMaxObjectCount: CK_ULONG,
        pulObjectCount: *mut CK_ULONG,
    ) {
        let shim = backend::get()?;
        // SAFETY: checked by `out`.
        let count = unsafe { out(pulObjectCount, "pulObjectCount") }?;
        if (phObject.is_null() && ulMaxObjectCount > 0) || !phObject.is_aligned() {
            return Err(Error::ArgumentsBad("phObject"));
        }
        let max = usize::try_from(ulMaxObjectCount).unwrap_or(usize::MAX);
        let found = shim.find(hSession, max)?;
        if !found.is_empty() {
            // SAFETY: phObject is non-null and aligned (checked) with room for
            // ulMaxObjectCount handles, and found.len() <= ulMaxObjectCount.
            unsafe { ptr::copy_nonoverlapping(found.as_ptr(), phObject, found.len()) };
        }
        *count = found.len() as CK_ULONG;
        Ok(())
    }
}

cryptoki_fn! {
    /// Ends the search.
    fn C_FindObjectsFinal(hSession: CK_SESSION_HANDLE) {
        backend::get()?.find_final(hSession)
    }
}
