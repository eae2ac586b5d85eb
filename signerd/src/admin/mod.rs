//! signerd's admin API, `signerd.admin.v1.TokenAdmin`: keys and certificates in the token for
//! the admin CLI and the PKCS#11 shim, served on a Unix socket and, for client certificates a
//! rule names, on the mTLS port.
//!
//! The same edge as the Notary services stands in front ([`crate::edge`]: identity, audit,
//! policy); [`service`] checks the key-level rules once it knows the key. Errors become status
//! codes in [`crate::edge::status`].

pub mod connection;
pub mod error;
pub mod login;
pub mod service;
pub mod serving;
pub mod socket;
pub mod status;

mod convert;
