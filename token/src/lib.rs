//! signerd's token layer: TUF signing keys held in a PKCS#11 token.
//!
//! [`Token`] generates keys in the token (sensitive, never extractable), finds them again by
//! their TUF key ID (`CKA_ID`), and signs in Notary's encodings, on sessions owned one each by
//! token workers, while a supervisor thread keeps the token connected through token faults. It knows nothing of gRPC: the daemon's
//! edge maps [`TokenError::kind`] to status codes.
//!
//! One module per operation family, each an `impl Token` block over the core in `connection`
//! (slot, sessions, login, recovery, `Token::run`), which imports none of them:
//! `supervisor` (reconnection off the request path) and `ratelog` (faults under a storm) sit
//! beside the core. The families: `keygen` (key generation), `sign` (Notary and admin signing, one mechanism table from
//! `signerd-vocab`), `lookup` (TUF keys by key ID), [`objects`] (types, describe, find,
//! destroy), `import` (PKCS#8 private keys), `certificates`, `mechanisms`. Below them:
//! [`error`], [`key`], [`pin`], [`uri`] (RFC 7512 parse and format), `encoding` and `date`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod certificates;
mod connection;
mod date;
mod descriptors;
mod encoding;
pub mod error;
pub mod gc;
mod import;
pub mod key;
mod keygen;
mod lookup;
mod mechanisms;
pub mod objects;
mod parse;
pub mod pin;
pub mod ratelog;
mod sign;
pub mod softhsm;
mod supervisor;
mod threads;
pub mod uri;

pub use connection::{
    AbandonListener, StateListener, Token, TokenConfig, TokenDescription, TokenStats, WorkerGuard,
    DEFAULT_UNAVAILABLE_AFTER,
};
pub use error::{ErrorKind, TokenError};
pub use import::PrivateKeyImport;
pub use key::{
    public_key_from_spki, spki_from_public_key, KeyAlgorithm, KeyDomain, KeyId, KeyInfo, KeyUsage,
    Signature,
};
pub use keygen::{KeyNaming, KeySpec};
pub use mechanisms::MechanismFacts;
pub use objects::{ObjectFilter, ObjectKind, ObjectRef, TokenObject};
pub use pin::PinSource;
pub use signerd_vocab::{PssParams, SignMechanism};
pub use uri::{Pkcs11Uri, UriError};
