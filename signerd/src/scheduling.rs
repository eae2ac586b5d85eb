//! The runtime threads' CPU scheduling policy: `SCHED_BATCH` while the clients active on the
//! Notary port batch well (one alone, or several that each keep more calls in flight than their
//! share, evenly), the default `SCHED_OTHER` while a lighter client is active beside another.
//!
//! A token worker that finishes a signature wakes a runtime thread to send the answer. Under
//! `SCHED_OTHER` the woken runtime thread preempts the worker at once when both share a core,
//! answers that one signature, and sleeps again: with Ed25519 (140 µs a signature on SoftHSM)
//! every answer costs a pair of context switches and a wake-up of its own. Under `SCHED_BATCH`
//! a woken thread does not preempt (it runs when the worker waits or its time slice ends) and
//! then answers every signature finished meanwhile. Measured with `scripts/bench.sh` (one
//! connection, signerd pinned to one core, docs/performance.md): Ed25519 at 0.81-0.84 of
//! the token's rate against 0.73, 0.31-0.35 context switches per request against 1.6.
//!
//! The price is latency for a client beside another: its call waits up to a time slice behind
//! a busy worker instead of preempting it, and a light client beside a connection that keeps
//! 10,000 streams open kept 52-65 % of its rate instead of 61-68 % (`hostile_input`). So the
//! runtime threads run under `SCHED_BATCH` only while the active clients batch
//! ([`Scheduling::batching`]): one connection alone (notary-server keeps one), or several
//! that each want more than their share of the places, none more than twice what another
//! wants (a signer behind a load balancer, or several notary-servers, under load: all of them
//! throughput-bound, none waiting on its own behind another's calls). Otherwise, with a lighter
//! client beside another, they run under `SCHED_OTHER`. The admission layer
//! ([`crate::edge::admission`]), which counts each connection's calls anyway, says which
//! ([`Scheduling::set_batching`]), and each runtime thread follows when it wakes
//! ([`Scheduling::follow`], one relaxed atomic load; a system call only on a change).
//!
//! The nice value is kept. Threads started from a runtime thread inherit its policy (tokio's
//! blocking pool): `SCHED_BATCH` changes nothing for a thread that does not share a core with
//! a busier one. Where the kernel refuses the change (not Linux, a seccomp filter), the thread
//! stays as it is and says so once (per thread) in the debug log.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use thread_priority::unix::{
    set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
    ThreadSchedulePolicy,
};
use thread_priority::{ThreadPriority, ThreadPriorityValue};

/// Whether the active clients batch, shared by the admission layer (which sets it), the
/// runtime threads (which follow it) and each connection's writes ([`crate::coalesce`]).
/// Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Scheduling {
    /// A lighter client is active beside another: latency first.
    mixed: Arc<AtomicBool>,
}

/// What a thread runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_OTHER`: a woken thread may preempt the one running.
    Other,
    /// `SCHED_BATCH`: a woken thread waits for the running one's wait or time slice.
    Batch,
}

thread_local! {
    /// The policy this thread was last put under; `None` before the first change.
    static CURRENT: Cell<Option<Policy>> = const { Cell::new(None) };
    /// The kernel refused a change on this thread: no more attempts.
    static REFUSED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the runtime this is called on has one worker thread (signerd on one CPU, or
/// `server.runtime_threads = 1`); false outside a runtime.
pub fn one_runtime_thread() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|runtime| runtime.metrics().num_workers() == 1)
}

impl Scheduling {
    /// Starts with one client (or none) active: batching.
    pub fn new() -> Scheduling {
        Scheduling::default()
    }

    /// Whether the clients active on the Notary port now batch (see the module's words).
    pub fn set_batching(&self, batching: bool) {
        if self.mixed.load(Ordering::Relaxed) == batching {
            self.mixed.store(!batching, Ordering::Relaxed);
        }
    }

    /// The active clients batch: the runtime threads run under `SCHED_BATCH` and a
    /// connection's answers are written together ([`crate::coalesce`]).
    pub fn batching(&self) -> bool {
        !self.mixed.load(Ordering::Relaxed)
    }

    /// The policy the runtime threads should run under now.
    pub fn wanted(&self) -> Policy {
        if self.mixed.load(Ordering::Relaxed) {
            Policy::Other
        } else {
            Policy::Batch
        }
    }

    /// Puts the calling thread under [`Scheduling::wanted`] if it is not already (a runtime
    /// thread calls it each time it wakes).
    pub fn follow(&self) {
        let wanted = self.wanted();
        if CURRENT.get() == Some(wanted) || REFUSED.get() {
            return;
        }
        match set_policy(wanted) {
            Ok(()) => CURRENT.set(Some(wanted)),
            Err(e) => {
                REFUSED.set(true);
                tracing::debug!(error = %e, policy = ?wanted, "a runtime thread keeps its CPU scheduling policy");
            }
        }
    }
}

/// Puts the calling thread under `policy`, keeping its nice value.
fn set_policy(policy: Policy) -> Result<(), String> {
    let policy = match policy {
        Policy::Other => ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
        Policy::Batch => ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
    };
    let nice = own_nice()?;
    // The crate sets a normal policy's nice value from a priority of 0-99; find the one that
    // keeps this thread's.
    let priority = (0u8..=99)
        .find_map(|p| {
            let priority = ThreadPriority::Crossplatform(ThreadPriorityValue::try_from(p).ok()?);
            (priority.to_posix(policy).ok()? == nice).then_some(priority)
        })
        .ok_or_else(|| format!("no priority keeps nice {nice}"))?;
    set_thread_priority_and_policy(thread_native_id(), priority, policy)
        .map_err(|e| format!("{e:?}"))
}

/// The calling thread's nice value (`/proc/thread-self/stat`, field 19).
fn own_nice() -> Result<i32, String> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .map_err(|e| format!("/proc/thread-self/stat: {e}"))?;
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(16))
        .and_then(|nice| nice.parse().ok())
        .ok_or_else(|| "no nice value in /proc/thread-self/stat".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's policy as the kernel reports it.
    fn current_policy() -> Option<Policy> {
        match thread_priority::unix::thread_schedule_policy().ok()? {
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other) => Some(Policy::Other),
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch) => Some(Policy::Batch),
            _ => None,
        }
    }

    #[test]
    fn a_thread_follows_whether_the_clients_batch_and_keeps_its_nice_value() {
        let scheduling = Scheduling::new();
        let s = scheduling.clone();
        std::thread::spawn(move || {
            let nice = own_nice().unwrap();
            s.follow();
            assert_eq!(current_policy(), Some(Policy::Batch), "one client: batch");
            s.set_batching(false);
            s.follow();
            assert_eq!(
                current_policy(),
                Some(Policy::Other),
                "mixed clients: other"
            );
            s.set_batching(true);
            s.follow();
            assert_eq!(
                current_policy(),
                Some(Policy::Batch),
                "batching again: batch"
            );
            assert_eq!(own_nice().unwrap(), nice, "the nice value is kept");
        })
        .join()
        .unwrap();
    }
}
