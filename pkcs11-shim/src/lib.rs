//! pkcs11-shim: a PKCS#11 provider that forwards to signerd, so clients sign with keys they
//! never hold.
//!
//! Load `libpkcs11_shim.so` into any PKCS#11 consumer (OpenSC `pkcs11-tool`, OpenSSL's libp11
//! engine, the notary CLI as `libykcs11.so`); every operation goes to signerd's admin API
//! (`signerd.admin.v1`, Unix socket or mTLS) and the keys stay in signerd's token.
//!
//! Layout: [`ffi`] is the C ABI and the only module with `unsafe`; it checks pointers, copies
//! arguments into Rust values and calls [`backend`], the safe state machine (slots, sessions,
//! login, objects, searches, signing), one file per function family in both. [`objects`] maps
//! the shim's handles to signerd's object references and derives attributes; [`template`]
//! parses templates; [`mechanism`] knows the signing mechanisms; [`bridge`] runs the shared
//! admin client ([`signerd_client`]) on the library's own I/O thread; [`config`] reads env and
//! file; [`error`] maps every failure to a `CK_RV` in one place.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// CK_ULONG is u64 only on LP64 targets; the `as u64` casts to the wire's uint64 keep other
// targets right.
#![allow(clippy::unnecessary_cast)]

pub mod backend;
pub mod bridge;
pub mod config;
pub mod error;
pub mod ffi;
pub mod log;
pub mod mechanism;
pub mod objects;
pub mod template;
pub mod verify;
