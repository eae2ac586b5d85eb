//! signerd's token layer: TUF signing keys held in a PKCS#11 token.
//!
//! [`Token`] generates keys in the token (sensitive, never extractable), finds them again by
//! their TUF key ID (`CKA_ID`), and signs in Notary's encodings, over a pool of logged-in
//! sessions that recovers from session and token faults. The object-level operations of the
//! admin API (find, sign by mechanism, certificates, import, destroy) are in [`objects`]. It knows nothing of gRPC: the daemon's
//! edge maps [`TokenError::kind`] to status codes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod encoding;
pub mod error;
pub mod key;
pub mod objects;
pub mod pin;
mod pool;
pub mod softhsm;
mod token;
pub mod uri;

pub use error::{ErrorKind, TokenError};
pub use key::{
    public_key_from_spki, spki_from_public_key, KeyAlgorithm, KeyDomain, KeyId, KeyInfo, KeyUsage,
    Signature,
};
pub use objects::{
    KeyNaming, KeySpec, MechanismFacts, ObjectFilter, ObjectKind, ObjectRef, PrivateKeyImport,
    PssParams, SignMechanism, TokenObject,
};
pub use pin::PinSource;
pub use token::{Token, TokenConfig, TokenDescription};
pub use uri::{Pkcs11Uri, UriError};
