//! signerd's token layer: TUF signing keys held in a PKCS#11 token.
//!
//! [`Token`] generates keys in the token (sensitive, never extractable), finds them again by
//! their TUF key ID (`CKA_ID`), and signs in Notary's encodings, over a pool of logged-in
//! sessions that recovers from session and token faults. It knows nothing of gRPC: the daemon's
//! edge maps [`TokenError::kind`] to status codes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod encoding;
pub mod error;
pub mod key;
pub mod pin;
mod pool;
pub mod softhsm;
mod token;
pub mod uri;

pub use error::{ErrorKind, TokenError};
pub use key::{KeyAlgorithm, KeyId, KeyInfo, KeyUsage, Signature};
pub use pin::PinSource;
pub use token::{Token, TokenConfig, TokenDescription};
pub use uri::{Pkcs11Uri, UriError};
