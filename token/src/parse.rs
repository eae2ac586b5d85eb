//! Text into key algorithms and key IDs, with the errors a caller gets for bad text. Above both
//! [`crate::key`] (the identifiers) and [`crate::error`] (which names key IDs), so neither
//! imports the other.

use std::str::FromStr;

use crate::error::TokenError;
use crate::key::{KeyAlgorithm, KeyId};

impl FromStr for KeyAlgorithm {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| TokenError::UnsupportedAlgorithm(s.to_owned()))
    }
}

impl FromStr for KeyId {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || TokenError::InvalidKeyId(s.chars().take(80).collect());
        if s.len() != 64 {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| invalid())?;
        KeyId::from_cka_id(&bytes).ok_or_else(invalid)
    }
}
