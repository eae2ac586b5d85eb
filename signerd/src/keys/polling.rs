//! How long a token worker that found the queue empty polls it before it sleeps.
//!
//! A client that waits for each answer before it sends its next request (notary-server signing
//! one piece of metadata at a time) leaves the queue empty for a short gap after every
//! signature: the answer goes out, the client reads it, the next request comes in. A worker that
//! sleeps at once must be woken for the next job (a futex wake-up, and a thread switch when it
//! shares a core with the runtime), and the CPU goes idle in the gap: an idle virtual CPU halts,
//! and waking it costs tens of microseconds where the guest's own idle polling is off
//! (`guest_halt_poll_ns = 0`, as on the machines the benchmark runs on). So the last worker to go
//! idle polls the queue for a while first, yielding its CPU to any thread with work.
//!
//! The window adapts to the gaps as the kernel's haltpoll governor adapts its own: it grows
//! (doubling, from [`START`]) while jobs come within the most it may poll (`token.idle_poll_us`,
//! 200 µs by default, as the kernel's own default for a guest) of the queue going empty, and
//! shrinks (halving, to nothing below [`START`]) when they come later. Sparse requests soon cost
//! no polling at all; a worker polls at most once per spell of an empty queue.

use std::time::{Duration, Instant};

/// Where a window that had shrunk to nothing grows from again.
pub(super) const START: Duration = Duration::from_micros(25);

/// The polling window, kept under the queue's lock.
#[derive(Debug)]
pub(super) struct IdlePoll {
    /// The most a worker polls, and the gap past which polling is not worth it; zero: never.
    max: Duration,
    /// How long the next worker to find the queue empty polls.
    window: Duration,
    /// Since when the queue stands empty (a worker found it so), until the next job.
    empty_since: Option<Instant>,
    /// A worker polled in this spell of an empty queue.
    polled: bool,
}

impl IdlePoll {
    /// A window that starts at `max` (a worker polls at once, and shrinks it if jobs come
    /// sparsely).
    pub(super) fn new(max: Duration) -> IdlePoll {
        IdlePoll {
            max,
            window: max,
            empty_since: None,
            polled: false,
        }
    }

    /// A worker found the queue empty; `last_awake` when no other worker runs a job. Returns
    /// how long it polls, if it is the one to: the last worker awake, once per spell of an
    /// empty queue, while the window is open.
    pub(super) fn on_empty(&mut self, last_awake: bool) -> Option<Duration> {
        self.empty_since.get_or_insert_with(Instant::now);
        if !last_awake || self.polled || self.window.is_zero() {
            return None;
        }
        self.polled = true;
        Some(self.window)
    }

    /// A job came: adapt the window to how long the queue stood empty before it.
    pub(super) fn on_job(&mut self) {
        self.polled = false;
        if let Some(since) = self.empty_since.take() {
            self.adapt(since.elapsed());
        }
    }

    /// Polling for `gap` would have caught the job (it came within [`IdlePoll::max`]): poll
    /// longer; otherwise shorter.
    fn adapt(&mut self, gap: Duration) {
        self.window = if gap <= self.max {
            (self.window * 2).clamp(START.min(self.max), self.max)
        } else if self.window / 2 < START {
            Duration::ZERO
        } else {
            self.window / 2
        };
    }

    /// How long the next worker to find the queue empty polls.
    #[cfg(test)]
    pub(super) fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = crate::config::defaults::IDLE_POLL;

    #[test]
    fn the_window_grows_with_quick_jobs_and_shrinks_to_nothing_with_sparse_ones() {
        let mut poll = IdlePoll::new(MAX);
        assert_eq!(poll.window(), MAX);
        let us = Duration::from_micros;
        for expected in [100, 50, 25, 0, 0] {
            poll.adapt(us(5_000));
            assert_eq!(poll.window(), us(expected));
        }
        for expected in [25, 50, 100, 200, 200] {
            poll.adapt(us(150));
            assert_eq!(poll.window(), us(expected));
        }
        // A gap of exactly the most polling catches still counts as caught.
        poll.adapt(MAX);
        assert_eq!(poll.window(), MAX);
    }

    #[test]
    fn only_the_last_worker_awake_polls_and_once_per_empty_spell() {
        let mut poll = IdlePoll::new(MAX);
        assert_eq!(
            poll.on_empty(false),
            None,
            "another worker still runs a job"
        );
        assert_eq!(poll.on_empty(true), Some(MAX));
        assert_eq!(poll.on_empty(true), None, "polled already in this spell");
        poll.on_job();
        assert_eq!(poll.on_empty(true), Some(MAX), "a new spell after the job");
    }

    #[test]
    fn a_job_that_comes_late_shrinks_the_window() {
        let mut poll = IdlePoll::new(MAX);
        poll.on_empty(true);
        std::thread::sleep(MAX * 3);
        poll.on_job();
        assert_eq!(poll.window(), MAX / 2, "came after 600 µs at least");
        // A job with no empty spell before it (the queue held work) changes nothing.
        poll.on_job();
        assert_eq!(poll.window(), MAX / 2);
    }

    #[test]
    fn a_zero_maximum_never_polls() {
        let mut poll = IdlePoll::new(Duration::ZERO);
        assert_eq!(poll.on_empty(true), None);
        poll.on_job();
        assert_eq!(poll.on_empty(true), None);
    }
}
