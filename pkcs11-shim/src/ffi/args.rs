//! Pointer and length checks, and copies in and out of the caller's memory: every export
//! goes through these before it touches anything the caller passed.

use std::ptr;

use cryptoki_sys::*;

use crate::backend::SignOutput;
use crate::error::Error;
use crate::template::Attr;

/// The `len` elements at `ptr` (an empty slice when `len` is 0, whatever `ptr` is).
///
/// # Safety
/// When `len > 0` and `ptr` is not null, `ptr` must point to `len` readable, initialized `T`s
/// that stay unchanged for the returned lifetime.
pub(super) unsafe fn slice_in<'a, T>(
    ptr: *const T,
    len: CK_ULONG,
    what: &'static str,
) -> Result<&'a [T], Error> {
    let len = usize::try_from(len).map_err(|_| Error::ArgumentsBad(what))?;
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() || !ptr.is_aligned() {
        return Err(Error::ArgumentsBad(what));
    }
    if len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|n| n > isize::MAX as usize)
    {
        return Err(Error::ArgumentsBad(what));
    }
    // SAFETY: `ptr` is non-null and aligned (checked above), the byte length fits `isize`
    // (checked above), and the caller guarantees `len` readable elements behind it.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The byte buffer `(ptr, len)` a caller passed in.
///
/// # Safety
/// As [`slice_in`].
pub(super) unsafe fn bytes_in<'a>(
    ptr: *const CK_BYTE,
    len: CK_ULONG,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    // SAFETY: the same contract, passed on.
    unsafe { slice_in(ptr, len, what) }
}

/// The `T` an out-pointer names, or `CKR_ARGUMENTS_BAD` for null or misaligned.
///
/// # Safety
/// A non-null, aligned `ptr` must point to a writable `T` for the returned lifetime.
pub(super) unsafe fn out<'a, T>(ptr: *mut T, what: &'static str) -> Result<&'a mut T, Error> {
    if !ptr.is_aligned() {
        return Err(Error::ArgumentsBad(what));
    }
    // SAFETY: `as_mut` checks for null; alignment is checked above; the caller guarantees a
    // writable `T` behind a non-null pointer.
    unsafe { ptr.as_mut() }.ok_or(Error::ArgumentsBad(what))
}

/// Copies a template out of the caller's memory (values wiped when dropped).
///
/// # Safety
/// `(ptr, count)` as [`slice_in`]; each attribute's `(pValue, ulValueLen)` as [`bytes_in`].
pub(super) unsafe fn template_in(
    ptr: *const CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Result<Vec<Attr>, Error> {
    // SAFETY: the caller's contract for the template array, passed on.
    let attrs = unsafe { slice_in(ptr, count, "template") }?;
    attrs
        .iter()
        .map(|a| {
            // SAFETY: the caller's contract for each attribute value, passed on.
            let value =
                unsafe { bytes_in(a.pValue as *const CK_BYTE, a.ulValueLen, "attribute value") }?;
            Ok(Attr::new(a.type_, value.to_vec()))
        })
        .collect()
}

/// Copies a mechanism (type and parameter bytes) out of the caller's memory.
///
/// # Safety
/// A non-null `ptr` must point to a readable `CK_MECHANISM` whose parameter is as
/// [`bytes_in`] says.
pub(super) unsafe fn mechanism_in(
    ptr: *const CK_MECHANISM,
) -> Result<(CK_MECHANISM_TYPE, Vec<u8>), Error> {
    if !ptr.is_aligned() {
        return Err(Error::ArgumentsBad("mechanism"));
    }
    // SAFETY: `as_ref` checks for null, alignment is checked above, and the caller guarantees
    // a readable CK_MECHANISM.
    let m = unsafe { ptr.as_ref() }.ok_or(Error::ArgumentsBad("mechanism"))?;
    // SAFETY: the caller's contract for the parameter buffer, passed on.
    let param = unsafe {
        bytes_in(
            m.pParameter as *const CK_BYTE,
            m.ulParameterLen,
            "mechanism parameter",
        )
    }?;
    Ok((m.mechanism, param.to_vec()))
}

/// Writes `items` with the PKCS#11 size convention: a null `list` asks for the count only; a
/// short one gets `CKR_BUFFER_TOO_SMALL` with the count needed.
///
/// # Safety
/// `count` as [`out`]; a non-null `list` must have room for `*count` elements.
pub(super) unsafe fn list_out<T: Copy>(
    items: &[T],
    list: *mut T,
    count: *mut CK_ULONG,
) -> Result<(), Error> {
    // SAFETY: the caller's contract for `count`, passed on.
    let count = unsafe { out(count, "count pointer") }?;
    let needed = items.len() as CK_ULONG;
    if list.is_null() {
        *count = needed;
        return Ok(());
    }
    if !list.is_aligned() {
        return Err(Error::ArgumentsBad("list pointer"));
    }
    let room = *count;
    *count = needed;
    if room < needed {
        return Err(Error::BufferTooSmall);
    }
    // SAFETY: `list` is non-null and aligned (checked), the caller says it has room for
    // `room >= items.len()` elements (checked), and it cannot overlap our own `items`.
    unsafe { ptr::copy_nonoverlapping(items.as_ptr(), list, items.len()) };
    Ok(())
}

/// Writes a `C_Sign`/`C_SignFinal` answer.
///
/// # Safety
/// `signature` must be null or have room for `*len` bytes as the caller said when it asked.
pub(super) unsafe fn signature_out(
    answer: SignOutput,
    signature: *mut CK_BYTE,
    len: &mut CK_ULONG,
) -> Result<(), Error> {
    match answer {
        SignOutput::Length(n) => {
            *len = n as CK_ULONG;
            Ok(())
        }
        SignOutput::TooSmall(n) => {
            *len = n as CK_ULONG;
            Err(Error::BufferTooSmall)
        }
        SignOutput::Signature(bytes) => {
            if signature.is_null() || (*len as usize) < bytes.len() {
                return Err(Error::General(
                    "signature buffer changed under the call".into(),
                ));
            }
            // SAFETY: `signature` is non-null (checked), the caller gave it `*len` bytes of
            // room, and `bytes.len() <= *len` (checked).
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), signature, bytes.len()) };
            *len = bytes.len() as CK_ULONG;
            Ok(())
        }
    }
}

/// The capacity a caller announced for an output buffer: `None` for a size query.
pub(super) fn capacity(buffer: *const CK_BYTE, len: CK_ULONG) -> Option<usize> {
    (!buffer.is_null()).then(|| usize::try_from(len).unwrap_or(usize::MAX))
}
