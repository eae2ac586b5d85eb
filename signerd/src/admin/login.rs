//! The `Login` RPC: checks a PIN a PKCS#11 client offers against the PIN files signerd is
//! configured with. USER logins are checked against `admin.user_pin_file` (default: the
//! token's own user PIN source); SO logins against `admin.so_pin_file`, and refused when it is
//! unset. PINs are compared in constant time, held in secrecy types, and never logged.

use secrecy::ExposeSecret as _;
use signerd_token::PinSource;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::error::AdminError;

/// Which PIN a login offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginUser {
    /// `CKU_USER`.
    User,
    /// `CKU_SO`.
    SecurityOfficer,
}

/// Where the PINs a login is checked against come from.
#[derive(Clone, Debug)]
pub struct LoginPins {
    user: PinSource,
    so: Option<PinSource>,
}

impl LoginPins {
    /// USER logins checked against `user`, SO logins against `so` (refused when `None`).
    pub fn new(user: PinSource, so: Option<PinSource>) -> LoginPins {
        LoginPins { user, so }
    }

    /// Accepts `offered` if it is the PIN for `who`.
    pub fn check(&self, who: LoginUser, offered: &Zeroizing<Vec<u8>>) -> Result<(), AdminError> {
        let source = match who {
            LoginUser::User => &self.user,
            LoginUser::SecurityOfficer => self.so.as_ref().ok_or_else(|| {
                AdminError::PermissionDenied(
                    "SO login is not enabled; set admin.so_pin_file".into(),
                )
            })?,
        };
        let expected = source
            .read()
            .map_err(|e| AdminError::NeedsOperator(format!("cannot check the login: {e}")))?;
        if same_pin(expected.expose_secret().as_bytes(), offered) {
            Ok(())
        } else {
            let which = match who {
                LoginUser::User => "user PIN (admin.user_pin_file)",
                LoginUser::SecurityOfficer => "SO PIN (admin.so_pin_file)",
            };
            Err(AdminError::PermissionDenied(format!(
                "incorrect PIN: it is not the {which} signerd is configured with"
            )))
        }
    }
}

/// Constant-time equality that also hides the lengths: both sides are hashed first.
fn same_pin(expected: &[u8], offered: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let a: Zeroizing<[u8; 32]> = Zeroizing::new(Sha256::digest(expected).into());
    let b: Zeroizing<[u8; 32]> = Zeroizing::new(Sha256::digest(offered).into());
    a.ct_eq(&*b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn pins(so: bool) -> LoginPins {
        LoginPins::new(
            PinSource::Value(SecretString::from("1234")),
            so.then(|| PinSource::Value(SecretString::from("so-secret"))),
        )
    }

    fn pin(s: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(s.as_bytes().to_vec())
    }

    #[test]
    fn user_and_so_logins() {
        assert!(pins(false).check(LoginUser::User, &pin("1234")).is_ok());
        let err = pins(false)
            .check(LoginUser::User, &pin("12345"))
            .unwrap_err();
        assert!(matches!(err, AdminError::PermissionDenied(_)));
        assert!(!err.to_string().contains("1234"));
        let err = pins(false)
            .check(LoginUser::SecurityOfficer, &pin("so-secret"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "SO login is not enabled; set admin.so_pin_file"
        );
        assert!(pins(true)
            .check(LoginUser::SecurityOfficer, &pin("so-secret"))
            .is_ok());
        assert!(pins(true)
            .check(LoginUser::SecurityOfficer, &pin("1234"))
            .is_err());
    }

    #[test]
    fn unreadable_pin_file_needs_an_operator() {
        let p = LoginPins::new(PinSource::File("/nonexistent/pin".into()), None);
        let err = p.check(LoginUser::User, &pin("1")).unwrap_err();
        assert!(matches!(err, AdminError::NeedsOperator(_)), "{err}");
    }
}
