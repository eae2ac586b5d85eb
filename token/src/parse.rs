//! Text into key algorithms and key IDs, with the errors a caller gets for bad text. Above both
//! [`crate::key`] (the identifiers) and [`crate::error`] (which names key IDs), so neither
//! imports the other.

use std::str::FromStr;

use crate::error::TokenError;
use crate::key::{KeyAlgorithm, KeyId};

/// The caller's text as an error quotes it: the first 80 characters, control characters (and
/// quotes) escaped as Rust writes them. The message reaches logs, the audit trail and the caller,
/// so a newline or an escape sequence in a request must not start or repaint a line there.
fn quote(s: &str) -> String {
    s.chars().take(80).flat_map(char::escape_debug).collect()
}

impl FromStr for KeyAlgorithm {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| TokenError::UnsupportedAlgorithm(quote(s)))
    }
}

impl FromStr for KeyId {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || TokenError::InvalidKeyId(quote(s));
        if s.len() != 64 {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| invalid())?;
        KeyId::from_cka_id(&bytes).ok_or_else(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the `validate` fuzz target asserts (docs/fuzzing.md): a key ID or algorithm with a
    /// control character was quoted as is in the refusal, so the caller's text could start a
    /// line of its own in the log.
    #[test]
    fn refusals_quote_caller_text_without_control_characters() {
        let e = "ab\ncd\u{1b}[2K\r"
            .parse::<KeyId>()
            .unwrap_err()
            .to_string();
        assert!(!e.chars().any(char::is_control), "{e}");
        assert!(e.starts_with(r"'ab\ncd\u{1b}[2K\r' is not a key ID"), "{e}");
        let e = "x\nFORGED INFO"
            .parse::<KeyAlgorithm>()
            .unwrap_err()
            .to_string();
        assert!(!e.chars().any(char::is_control), "{e}");
        assert!(
            e.starts_with(r"algorithm 'x\nFORGED INFO' is not supported"),
            "{e}"
        );
    }

    #[test]
    fn refusals_quote_at_most_80_characters() {
        let e = "a"
            .repeat(10_000)
            .parse::<KeyAlgorithm>()
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("'{}'", "a".repeat(80))), "{e}");
        assert!(e.len() < 200, "{e}");
    }
}
