//! The `Login` RPC: checks a PIN a PKCS#11 client offers against PIN files of signerd's own,
//! never against the token's PIN: a Login that checked the token's PIN would be an oracle for
//! it, answering guesses without the token ever counting them. USER logins are checked against
//! `admin.user_pin_file`, SO logins against `admin.so_pin_file`; either is refused while its
//! file is unset. PINs are compared in constant time, held in zeroizing buffers, never logged.
//!
//! Guesses are rate-limited per caller (the socket peer's uid, the client certificate's
//! fingerprint), not per connection, so reconnecting does not reset the count: a few typos are
//! free, then each failure doubles the wait before the next attempt is even checked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret as _;
use signerd_token::PinSource;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::error::AdminError;
use crate::edge::identity::Caller;

/// Which PIN a login offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginUser {
    /// `CKU_USER`.
    User,
    /// `CKU_SO`.
    SecurityOfficer,
}

/// Where the PINs a login is checked against come from.
/// Clones share one [`LoginLimiter`], so the socket and the mTLS port count failures together.
#[derive(Clone, Debug)]
pub struct LoginPins {
    user: Option<PinSource>,
    so: Option<PinSource>,
    limiter: Arc<LoginLimiter>,
}

impl LoginPins {
    /// USER logins checked against `user`, SO logins against `so` (each refused when `None`).
    pub fn new(user: Option<PinSource>, so: Option<PinSource>) -> LoginPins {
        LoginPins {
            user,
            so,
            limiter: Arc::default(),
        }
    }

    /// A login by `caller`: refused unchecked while the caller must wait after failing, else
    /// checked, a failure counted and a success forgetting earlier ones.
    pub fn login(
        &self,
        caller: &Caller,
        who: LoginUser,
        offered: &Zeroizing<Vec<u8>>,
    ) -> Result<(), AdminError> {
        let key = LoginLimiter::key(caller);
        let too_many = |wait: Duration| AdminError::TooManyLogins {
            caller: key.clone(),
            retry_after_secs: seconds(wait),
        };
        self.limiter
            .admit(&key, Instant::now())
            .map_err(|b| too_many(b.retry_after))?;
        // A login that is not enabled, or whose PIN file cannot be read, checked no guess.
        if self.matches(who, offered)? {
            self.limiter.succeeded(&key);
            return Ok(());
        }
        let message = wrong_pin(who);
        match self.limiter.failed(&key, Instant::now()) {
            Some(wait) => Err(AdminError::PermissionDenied(format!(
                "{message}; too many failed logins from {key}: the next is checked in {} s",
                seconds(wait)
            ))),
            None => Err(AdminError::PermissionDenied(message)),
        }
    }

    /// Where the PIN for `who` is read from; refused when that login is not enabled.
    fn source(&self, who: LoginUser) -> Result<&PinSource, AdminError> {
        match who {
            LoginUser::User => self.user.as_ref().ok_or_else(|| {
                AdminError::PermissionDenied(
                    "USER login is not enabled; set admin.user_pin_file to a file holding the PIN clients must give (not the token's PIN)".into(),
                )
            }),
            LoginUser::SecurityOfficer => self.so.as_ref().ok_or_else(|| {
                AdminError::PermissionDenied(
                    "SO login is not enabled; set admin.so_pin_file".into(),
                )
            }),
        }
    }

    /// Whether `offered` is the PIN for `who`.
    fn matches(&self, who: LoginUser, offered: &Zeroizing<Vec<u8>>) -> Result<bool, AdminError> {
        let expected = self
            .source(who)?
            .read()
            .map_err(|e| AdminError::NeedsOperator(format!("cannot check the login: {e}")))?;
        Ok(same_pin(expected.expose_secret().as_bytes(), offered))
    }

    /// Accepts `offered` if it is the PIN for `who` (no rate limit: [`LoginPins::login`] is
    /// what callers reach).
    pub fn check(&self, who: LoginUser, offered: &Zeroizing<Vec<u8>>) -> Result<(), AdminError> {
        if self.matches(who, offered)? {
            Ok(())
        } else {
            Err(AdminError::PermissionDenied(wrong_pin(who)))
        }
    }
}

/// What a caller with a wrong PIN is told.
fn wrong_pin(who: LoginUser) -> String {
    let which = match who {
        LoginUser::User => "user PIN (admin.user_pin_file)",
        LoginUser::SecurityOfficer => "SO PIN (admin.so_pin_file)",
    };
    format!("incorrect PIN: it is not the {which} signerd is configured with")
}

/// Constant-time equality that also hides the lengths: both sides are hashed first.
fn same_pin(expected: &[u8], offered: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let a: Zeroizing<[u8; 32]> = Zeroizing::new(Sha256::digest(expected).into());
    let b: Zeroizing<[u8; 32]> = Zeroizing::new(Sha256::digest(offered).into());
    a.ct_eq(&*b).into()
}

/// Failed logins a caller may make before it has to wait (typos).
pub const FREE_FAILURES: u32 = 3;
/// The wait after the first failure beyond [`FREE_FAILURES`]; each further failure doubles it.
pub const FIRST_WAIT: Duration = Duration::from_secs(5);
/// The longest wait: about a dozen guesses an hour once a caller is there.
pub const LONGEST_WAIT: Duration = Duration::from_secs(300);
/// Callers remembered at most; beyond it, those no longer waiting are forgotten first. Only
/// callers the edge admits reach Login, so this bounds memory, not the limit.
const REMEMBERED: usize = 4096;

/// Consecutive failed logins of one caller.
#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    wait_until: Option<Instant>,
}

/// Per-caller backoff for `Login`: the caller's consecutive failures and until when its next
/// attempt is refused unchecked. A success forgets the caller.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    // A std mutex: held for a map lookup, never across an await.
    callers: Mutex<HashMap<String, Failures>>,
}

/// A login refused unchecked because the caller failed too often.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// How long until the caller's next attempt is checked.
    pub retry_after: Duration,
}

impl LoginLimiter {
    /// Whose attempts count together: the uid on the socket, the certificate on the mTLS port.
    pub fn key(caller: &Caller) -> String {
        match caller {
            Caller::Local { uid, .. } => format!("uid={uid}"),
            Caller::Certificate(cert) => format!("sha256:{}", hex::encode(cert.fingerprint)),
            Caller::Unknown => "unidentified".into(),
        }
    }

    /// Whether `who` may attempt a login at `now`.
    pub fn admit(&self, who: &str, now: Instant) -> Result<(), Backoff> {
        let callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        match callers.get(who).and_then(|f| f.wait_until) {
            Some(until) if until > now => Err(Backoff {
                retry_after: until - now,
            }),
            _ => Ok(()),
        }
    }

    /// Records a failed login of `who` at `now`; answers the wait it now has before the next.
    pub fn failed(&self, who: &str, now: Instant) -> Option<Duration> {
        let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        if callers.len() >= REMEMBERED && !callers.contains_key(who) {
            callers.retain(|_, f| f.wait_until.is_some_and(|until| until > now));
        }
        let entry = callers.entry(who.to_owned()).or_insert(Failures {
            count: 0,
            wait_until: None,
        });
        entry.count = entry.count.saturating_add(1);
        let wait = wait_after(entry.count);
        entry.wait_until = wait.map(|w| now + w);
        wait
    }

    /// Forgets `who`'s failures (a correct PIN).
    pub fn succeeded(&self, who: &str) {
        self.callers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(who);
    }
}

/// The wait after `failures` consecutive failures.
fn wait_after(failures: u32) -> Option<Duration> {
    let doublings = failures.checked_sub(FREE_FAILURES)?;
    let wait = FIRST_WAIT
        .checked_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX))
        .unwrap_or(LONGEST_WAIT);
    Some(wait.min(LONGEST_WAIT))
}

/// Whole seconds to tell a caller, rounded up so that waiting that long is always enough.
pub fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn pins(so: bool) -> LoginPins {
        LoginPins::new(
            Some(PinSource::Value(SecretString::from("1234"))),
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
    fn without_a_user_pin_file_user_logins_are_refused() {
        let p = LoginPins::new(None, None);
        let err = p.check(LoginUser::User, &pin("")).unwrap_err();
        assert!(matches!(err, AdminError::PermissionDenied(_)));
        assert!(err.to_string().contains("set admin.user_pin_file"), "{err}");
    }

    #[test]
    fn unreadable_pin_file_needs_an_operator() {
        let p = LoginPins::new(Some(PinSource::File("/nonexistent/pin".into())), None);
        let err = p.check(LoginUser::User, &pin("1")).unwrap_err();
        assert!(matches!(err, AdminError::NeedsOperator(_)), "{err}");
    }

    #[test]
    fn waits_start_after_the_free_failures_double_and_are_capped() {
        assert_eq!(wait_after(0), None);
        assert_eq!(wait_after(FREE_FAILURES - 1), None);
        assert_eq!(wait_after(FREE_FAILURES), Some(FIRST_WAIT));
        assert_eq!(wait_after(FREE_FAILURES + 1), Some(FIRST_WAIT * 2));
        assert_eq!(wait_after(FREE_FAILURES + 2), Some(FIRST_WAIT * 4));
        assert_eq!(wait_after(FREE_FAILURES + 20), Some(LONGEST_WAIT));
        assert_eq!(wait_after(u32::MAX), Some(LONGEST_WAIT));
        assert_eq!(seconds(Duration::from_millis(4001)), 5);
        assert_eq!(seconds(Duration::from_secs(4)), 4);
    }

    #[test]
    fn a_caller_waits_after_failing_and_others_do_not() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(limiter.failed("uid=1000", t0), None);
            assert_eq!(limiter.admit("uid=1000", t0), Ok(()));
        }
        assert_eq!(limiter.failed("uid=1000", t0), Some(FIRST_WAIT));
        assert_eq!(
            limiter.admit("uid=1000", t0 + Duration::from_secs(1)),
            Err(Backoff {
                retry_after: FIRST_WAIT - Duration::from_secs(1)
            })
        );
        assert_eq!(limiter.admit("uid=1001", t0), Ok(()), "per caller");
        // Once the wait is over the next attempt is checked; failing again doubles the wait.
        let t1 = t0 + FIRST_WAIT;
        assert_eq!(limiter.admit("uid=1000", t1), Ok(()));
        assert_eq!(limiter.failed("uid=1000", t1), Some(FIRST_WAIT * 2));
        assert!(limiter.admit("uid=1000", t1 + FIRST_WAIT).is_err());
        // A correct PIN forgets the failures.
        limiter.succeeded("uid=1000");
        assert_eq!(limiter.admit("uid=1000", t1), Ok(()));
        assert_eq!(limiter.failed("uid=1000", t1), None);
    }

    #[test]
    fn memory_stays_bounded_and_waiting_callers_are_kept() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            limiter.failed("uid=7", t0);
        }
        for i in 0..REMEMBERED * 2 {
            limiter.failed(&format!("sha256:{i}"), t0);
        }
        let len = limiter.callers.lock().unwrap().len();
        assert!(len <= REMEMBERED, "{len}");
        assert!(
            limiter.admit("uid=7", t0).is_err(),
            "a waiting caller stays"
        );
    }

    #[test]
    fn logins_count_wrong_pins_only_and_refuse_unchecked_in_the_wait() {
        let p = pins(false);
        let me = Caller::Local {
            uid: 1000,
            gid: 1000,
            groups: vec![],
            pid: None,
        };
        for _ in 0..5 {
            // SO login is not enabled: no PIN was checked, so nothing counts.
            let err = p
                .login(&me, LoginUser::SecurityOfficer, &pin("x"))
                .unwrap_err();
            assert!(matches!(err, AdminError::PermissionDenied(_)), "{err}");
        }
        for _ in 0..FREE_FAILURES - 1 {
            let err = p.login(&me, LoginUser::User, &pin("0000")).unwrap_err();
            assert!(!err.to_string().contains("checked in"), "{err}");
        }
        let err = p.login(&me, LoginUser::User, &pin("0000")).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("too many failed logins from uid=1000: the next is checked in 5 s"),
            "{err}"
        );
        let err = p.login(&me, LoginUser::User, &pin("1234")).unwrap_err();
        let AdminError::TooManyLogins {
            caller,
            retry_after_secs,
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(caller, "uid=1000");
        assert!((1..=5).contains(retry_after_secs), "{err}");
        // Clones share the count: the socket and the mTLS port are one limit.
        assert!(p.clone().login(&me, LoginUser::User, &pin("1234")).is_err());
    }

    #[test]
    fn callers_count_by_uid_or_certificate_not_by_process() {
        let a = Caller::Local {
            uid: 1000,
            gid: 1,
            groups: vec![],
            pid: Some(1),
        };
        let b = Caller::Local {
            uid: 1000,
            gid: 2,
            groups: vec![5],
            pid: Some(2),
        };
        assert_eq!(LoginLimiter::key(&a), LoginLimiter::key(&b));
        assert_eq!(LoginLimiter::key(&a), "uid=1000");
    }
}
