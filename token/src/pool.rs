//! A bounded pool of open, logged-in sessions on one token slot.
//!
//! A cryptoki `Session` is `Send` but not `Sync`: one thread uses it at a time. The pool hands
//! each caller a session of its own (opening one while fewer than `max` exist), so signatures run
//! in parallel on as many sessions as the token allows; no session is shared behind a lock.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::session::Session;

use crate::error::TokenError;

/// Sessions on one slot, opened on demand up to `max`.
pub(crate) struct SessionPool {
    state: Mutex<PoolState>,
    returned: Condvar,
    max: usize,
    checkout_timeout: Duration,
}

struct PoolState {
    idle: Vec<Session>,
    /// Sessions open in all: idle ones and checked-out ones.
    open: usize,
}

impl SessionPool {
    pub(crate) fn new(max: usize, checkout_timeout: Duration) -> SessionPool {
        SessionPool {
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
            max: max.max(1),
            checkout_timeout,
        }
    }

    /// Takes an idle session, or opens one with `open` while fewer than `max` are open, or
    /// waits for one to come back.
    pub(crate) fn checkout(
        &self,
        open: impl FnOnce() -> Result<Session, TokenError>,
    ) -> Result<PooledSession<'_>, TokenError> {
        let deadline = Instant::now() + self.checkout_timeout;
        let mut state = self.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(PooledSession {
                    pool: self,
                    session: Some(session),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match open() {
                    Ok(session) => Ok(PooledSession {
                        pool: self,
                        session: Some(session),
                    }),
                    Err(e) => {
                        self.forget_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TokenError::PoolExhausted(self.max));
            }
            state = match self.returned.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Closes every idle session (checked-out ones close when their holders drop them).
    pub(crate) fn close_idle(&self) {
        let idle = {
            let mut state = self.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        drop(idle);
        self.returned.notify_all();
    }

    /// Sessions open now (for diagnostics).
    pub(crate) fn open_sessions(&self) -> usize {
        self.lock().open
    }

    /// Sessions checked out now (for diagnostics).
    pub(crate) fn busy_sessions(&self) -> usize {
        let state = self.lock();
        state.open - state.idle.len()
    }

    fn give_back(&self, session: Session) {
        self.lock().idle.push(session);
        self.returned.notify_one();
    }

    fn forget_one(&self) {
        self.lock().open -= 1;
        self.returned.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is a list and a counter, valid after any panic mid-update.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A session checked out of the pool; it goes back when dropped unless discarded.
pub(crate) struct PooledSession<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
}

impl PooledSession<'_> {
    /// Closes the session instead of returning it (after a session or token fault).
    pub(crate) fn discard(mut self) {
        if self.session.take().is_some() {
            self.pool.forget_one();
        }
    }
}

impl std::ops::Deref for PooledSession<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        // Invariant: `session` is only None after `discard`, which consumes self.
        self.session
            .as_ref()
            .expect("pooled session used after discard")
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.give_back(session);
        }
    }
}
