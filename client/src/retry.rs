//! When a failed call is sent again: the one retry policy of the admin client.

use std::time::Duration;

use crate::error::{Error, Refusal};
use crate::rpc::Rpc;

/// How often, and after which failures, a call is tried again. The call's deadline bounds the
/// whole, pauses included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts per call, the first included.
    pub attempts: u32,
    /// Pause after the first failure; it doubles after each further one.
    pub first_pause: Duration,
}

impl Default for RetryPolicy {
    /// Four attempts, 50, 100 and 200 ms apart: enough to ride out a signerd restart.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            first_pause: Duration::from_millis(50),
        }
    }
}

impl RetryPolicy {
    /// The pause before trying `rpc` again after attempt number `attempt` (0 for the first)
    /// ended in `failure`, or `None` to give up with it.
    ///
    /// A request that never reached signerd is always sent again. One that may have reached it
    /// (the connection failed under it), or that signerd answered with `Unavailable` (its
    /// token is away, perhaps coming back), is sent again only if sending twice does no harm.
    pub fn pause(&self, rpc: Rpc, attempt: u32, failure: &Error) -> Option<Duration> {
        if attempt.saturating_add(1) >= self.attempts {
            return None;
        }
        let again = match failure {
            Error::NotReached { .. } => true,
            Error::ConnectionLost { .. }
            | Error::Refused {
                refusal: Refusal::Unavailable,
                ..
            } => rpc.is_idempotent(),
            Error::Setup(_) | Error::TimedOut { .. } | Error::Refused { .. } => false,
        };
        again.then(|| self.first_pause.saturating_mul(1 << attempt.min(16)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_reached() -> Error {
        Error::NotReached {
            target: "unix:/s".into(),
            source: "connection refused".into(),
        }
    }

    fn lost() -> Error {
        Error::ConnectionLost {
            target: "unix:/s".into(),
            source: "broken pipe".into(),
        }
    }

    fn answered(refusal: Refusal) -> Error {
        Error::Refused {
            rpc: Rpc::Sign,
            refusal,
            code: tonic::Code::Unknown,
            message: String::new(),
        }
    }

    #[test]
    fn pauses_double_and_stop_after_the_last_attempt() {
        let policy = RetryPolicy::default();
        let pauses: Vec<_> = (0..5)
            .map(|n| policy.pause(Rpc::Sign, n, &not_reached()))
            .collect();
        assert_eq!(
            pauses,
            [
                Some(Duration::from_millis(50)),
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                None,
                None
            ]
        );
    }

    #[test]
    fn only_a_request_that_never_left_is_sent_twice_when_it_changes_the_token() {
        let policy = RetryPolicy::default();
        for rpc in Rpc::ALL {
            assert!(policy.pause(rpc, 0, &not_reached()).is_some(), "{rpc}");
            let twice_is_harmless = rpc.is_idempotent();
            assert_eq!(
                policy.pause(rpc, 0, &lost()).is_some(),
                twice_is_harmless,
                "{rpc}"
            );
            assert_eq!(
                policy
                    .pause(rpc, 0, &answered(Refusal::Unavailable))
                    .is_some(),
                twice_is_harmless,
                "{rpc}"
            );
        }
        assert!(!Rpc::Login.is_idempotent());
        assert!(!Rpc::GenerateKeyPair.is_idempotent());
        assert!(Rpc::Sign.is_idempotent());
    }

    #[test]
    fn answers_timeouts_and_setup_errors_are_final() {
        let policy = RetryPolicy::default();
        for refusal in [
            Refusal::NotFound,
            Refusal::PermissionDenied,
            Refusal::InvalidArgument,
            Refusal::Failed,
            Refusal::ResourceExhausted,
        ] {
            assert_eq!(policy.pause(Rpc::Sign, 0, &answered(refusal)), None);
        }
        let timed_out = Error::TimedOut {
            target: "t".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(policy.pause(Rpc::Sign, 0, &timed_out), None);
        let setup = Error::Setup(crate::error::SetupError::SocketPath("x".into()));
        assert_eq!(policy.pause(Rpc::Sign, 0, &setup), None);
    }
}
