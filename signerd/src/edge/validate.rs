//! What a request may carry, checked before anything reaches the token: a GUN and a role are
//! names, not payloads. Both are at most [`MAX_NAME_BYTES`] bytes (Notary's database columns
//! hold 255) of printable ASCII without spaces (`!` to `~`: letters, digits and punctuation
//! such as `/ . _ - : @`), so they cannot smuggle control characters into logs, token labels
//! or the audit trail. Empty is allowed: the Go signer accepts it.

use signerd_token::TokenError;

/// The longest GUN or role accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Checks a GUN or role (`what` names the field in the message).
pub fn name(what: &str, value: &str) -> Result<(), TokenError> {
    if value.len() > MAX_NAME_BYTES {
        return Err(TokenError::InvalidRequest(format!(
            "{what} is {} bytes long; send at most {MAX_NAME_BYTES} bytes",
            value.len()
        )));
    }
    if let Some((at, c)) = value.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        return Err(TokenError::InvalidRequest(format!(
            "{what} has {c:?} at byte {at}; send printable ASCII without spaces ('!' to '~', e.g. docker.io/library/alpine or targets/releases)"
        )));
    }
    Ok(())
}

/// Checks the GUN and role a new key is made for.
pub fn usage(gun: &str, role: &str) -> Result<(), TokenError> {
    name("gun", gun)?;
    name("role", role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_notary_uses_pass() {
        for ok in [
            "",
            "docker.io/library/alpine",
            "registry:5000/team/app",
            "targets/releases",
            "timestamp",
            "user@example.com/x",
        ] {
            assert!(name("gun", ok).is_ok(), "{ok}");
        }
        assert!(name("gun", &"a".repeat(MAX_NAME_BYTES)).is_ok());
    }

    #[test]
    fn long_control_and_space_are_refused_saying_what_to_send() {
        let e = name("gun", &"a".repeat(10_000)).unwrap_err().to_string();
        assert_eq!(e, "gun is 10000 bytes long; send at most 255 bytes");
        let e = usage("ok", "tar\ngets").unwrap_err().to_string();
        assert!(
            e.starts_with("role has '\\n' at byte 3; send printable ASCII"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        for bad in ["a b", "a\u{7f}", "a\u{0}", "caf\u{e9}", "a\u{1b}[31m"] {
            let e = name("gun", bad).unwrap_err();
            assert!(matches!(e, TokenError::InvalidRequest(_)), "{bad:?}");
        }
    }
}
