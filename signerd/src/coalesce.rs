//! Answers written together: on a runtime of several threads, a connection's first write after
//! each flush waits for the end of the runtime's turn, so the answers that are ready in that
//! turn leave in one system call.
//!
//! There hyper runs every HTTP/2 stream as a task of its own ([`crate::h2::Streams`]). A stream
//! whose answer is ready wakes the connection task, and tokio runs a task woken that way next,
//! so the connection flushed each answer on its own: one `writev` per answer, each a trip
//! through the whole TCP stack (on loopback through the receiver's side too) and often a
//! wake-up of the client's idle CPU. A token worker finishes signatures one by one while the
//! runtime waits, so when the runtime runs it finds several answers ready at once.
//!
//! [`Coalesced`] makes the first write after each flush wait: it hands a waker to tokio's
//! deferred wake-ups (what `tokio::task::yield_now` does), which the runtime wakes at its next
//! poll of the I/O driver (when no task is ready, or after 8 tasks: `server::runtime`), and
//! returns `Pending` until then. The other streams' answers join the connection's buffer
//! meanwhile, and the next write takes them all. Reads, flushes and shutdown pass straight
//! through. A task that woke itself instead would, on a runtime of several threads, also wake
//! an idle thread to take it (measured on two cores: 79-104 µs of CPU per request in 5 runs,
//! against 77-85 without coalescing and 75-77 deferred).
//!
//! On a runtime of one thread (signerd on one CPU) writes go straight through: there a
//! connection's task runs its streams itself ([`crate::h2::Streams`]) and writes the answers
//! ready in its turn together anyway (0.06 `writev` per request). Waiting as well (the task
//! requeued itself behind the tasks ready then, as it did while each stream was a task of its
//! own) cost more: side by side (ECDSA at 32 in flight, 5 interleaved rounds), the runtime
//! thread's CPU per request 11.7-15.2 µs (median 12.8) writing straight through against
//! 12.7-13.9 (median 13.7) waiting, lower in 4 of 5.
//!
//! Only while the active clients batch ([`Scheduling::batching`], as for the runtime threads'
//! `SCHED_BATCH`): one connection alone (notary-server keeps one), or several that each keep
//! more calls in flight than their share, evenly (behind a load balancer). Beside a connection
//! that keeps thousands of streams busy, the run queue holds that connection's stream tasks,
//! and a quieter client's answer would wait behind all of them: in `hostile_input` the quieter
//! client kept 44-92 % of its rate with every connection coalesced, against 64-82 % without.
//! With a lighter client active beside another, writes go straight through.
//!
//! Measured side by side when every stream was a task of its own on one core too (one
//! connection, ECDSA at 32 in flight, 10 interleaved pairs, docs/performance.md): 0.16-0.18
//! `writev` per request instead of 0.93-0.98, and the runtime thread's CPU per request 3.1-9.0
//! µs lower (median 6).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::scheduling::Scheduling;

/// An I/O stream whose first write after each flush waits for the runtime's turn to end while
/// the active clients batch.
#[derive(Debug)]
pub struct Coalesced<T> {
    inner: T,
    /// Says whether the active clients batch.
    scheduling: Scheduling,
    /// How a write waits for the end of the turn.
    wait: Wait,
    turn: Turn,
}

/// Whether a write waits for the end of the runtime's turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Never: on a runtime of one thread the connection's task writes every answer ready in
    /// its turn together ([`crate::h2::Streams`]).
    Never,
    /// Through tokio's deferred wake-ups: on a runtime of several threads, a task that woke
    /// itself would also wake an idle thread to take it.
    Deferred,
}

/// Where the pending write stands in the runtime's turn.
#[derive(Debug)]
enum Turn {
    /// No write since the last flush.
    Idle,
    /// The write waits for the end of the turn, which the [`TurnWaker`] (handed to the
    /// runtime's deferred wake-ups) tells.
    Waiting(TurnWaker),
    /// The turn ended: writes go through until the next flush.
    Ended,
}

/// Woken by the runtime at the end of a turn; wakes the connection's task in turn.
#[derive(Debug)]
struct TurnWaker(Arc<TurnState>);

#[derive(Debug, Default)]
struct TurnState {
    ended: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for TurnState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ended.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl TurnWaker {
    /// Asks the runtime to wake this at the end of its turn, and `cx`'s task then.
    fn start(cx: &mut Context<'_>) -> TurnWaker {
        let state = Arc::new(TurnState::default());
        *state.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        let waker = Waker::from(Arc::clone(&state));
        // tokio's yield_now hands the waker to the runtime's deferred wake-ups (woken at its
        // next poll of the I/O driver; at once outside a runtime).
        // Its first poll does that and nothing else; it is not polled again.
        let yielded = std::pin::pin!(tokio::task::yield_now());
        let _ = yielded.poll(&mut Context::from_waker(&waker));
        TurnWaker(state)
    }

    /// Whether the turn ended; if not, `cx`'s task is the one to wake when it does.
    fn ended(&self, cx: &mut Context<'_>) -> bool {
        if self.0.ended.load(Ordering::Acquire) {
            return true;
        }
        *self.0.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        // Ended meanwhile: its wake-up may have found the old waker.
        self.0.ended.load(Ordering::Acquire)
    }
}

impl<T> Coalesced<T> {
    /// Wraps `inner`, coalescing while `scheduling` says the active clients batch, on a runtime
    /// of several threads (called within it; outside one, as on several).
    pub fn new(inner: T, scheduling: Scheduling) -> Self {
        Self {
            inner,
            scheduling,
            wait: if crate::scheduling::one_runtime_thread() {
                Wait::Never
            } else {
                Wait::Deferred
            },
            turn: Turn::Idle,
        }
    }

    /// `Pending` from the first write after a flush until the runtime's turn ends (the task is
    /// woken then), `Ready` after that; `Ready` at once while the active clients do not batch,
    /// and on a runtime of one thread.
    fn take_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.turn {
            Turn::Ended => Poll::Ready(()),
            Turn::Idle if self.wait == Wait::Never || !self.scheduling.batching() => {
                Poll::Ready(())
            }
            Turn::Idle => {
                self.turn = Turn::Waiting(TurnWaker::start(cx));
                Poll::Pending
            }
            Turn::Waiting(waker) => {
                if waker.ended(cx) {
                    self.turn = Turn::Ended;
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.take_turn(cx));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.take_turn(cx));
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if flushed.is_ready() {
            self.turn = Turn::Idle;
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Wake, Waker};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Counts the writes that reach it and what they carried.
    #[derive(Default)]
    struct Sink {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes.lock().unwrap().push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_first_write_after_a_flush_yields_once_and_wakes_its_task() {
        let sink = Sink::default();
        let writes = Arc::clone(&sink.writes);
        let mut stream = Coalesced::new(sink, Scheduling::new());
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);

        let first = Pin::new(&mut stream).poll_write(&mut cx, b"one");
        assert!(first.is_pending(), "the first write yields");
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "and wakes its own task"
        );
        assert!(writes.lock().unwrap().is_empty(), "nothing written yet");

        let again = Pin::new(&mut stream).poll_write(&mut cx, b"one");
        assert!(matches!(again, Poll::Ready(Ok(3))));
        let more =
            Pin::new(&mut stream).poll_write_vectored(&mut cx, &[std::io::IoSlice::new(b"two")]);
        assert!(
            matches!(more, Poll::Ready(Ok(3))),
            "further writes before the flush go through"
        );
        assert!(Pin::new(&mut stream).poll_flush(&mut cx).is_ready());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);

        let next =
            Pin::new(&mut stream).poll_write_vectored(&mut cx, &[std::io::IoSlice::new(b"three")]);
        assert!(
            next.is_pending(),
            "after a flush the next write yields again"
        );
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(
            *writes.lock().unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
    }

    #[test]
    fn with_a_lighter_client_beside_another_writes_go_straight_through() {
        let sink = Sink::default();
        let writes = Arc::clone(&sink.writes);
        let scheduling = Scheduling::new();
        let mut stream = Coalesced::new(sink, scheduling.clone());
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);

        scheduling.set_batching(false);
        let first = Pin::new(&mut stream).poll_write(&mut cx, b"one");
        assert!(matches!(first, Poll::Ready(Ok(3))), "no turn yielded");
        assert!(Pin::new(&mut stream).poll_flush(&mut cx).is_ready());
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);

        scheduling.set_batching(true);
        let alone = Pin::new(&mut stream).poll_write(&mut cx, b"two");
        assert!(alone.is_pending(), "batching again: writes coalesce again");
        assert_eq!(*writes.lock().unwrap(), vec![b"one".to_vec()]);
    }

    /// What the wrapper is for: a write made while other tasks are ready to run goes out after
    /// them, so what they add to a shared buffer leaves with it; on a runtime of one thread
    /// (whose connections write their streams' answers together themselves) at once.
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_waits_for_the_tasks_already_queued_on_several_threads_only() {
        let picked = Coalesced::new(tokio::io::sink(), Scheduling::new());
        assert_eq!(picked.wait, Wait::Never, "one runtime thread: no wait");
        for (wait, expected) in [
            (Wait::Deferred, ["task 0", "task 1", "task 2", "written"]),
            (Wait::Never, ["written", "task 0", "task 1", "task 2"]),
        ] {
            let order = Arc::new(Mutex::new(Vec::new()));
            let (mut client, server) = tokio::io::duplex(1024);
            let mut server = Coalesced::new(server, Scheduling::new());
            server.wait = wait;

            let spawned: Vec<_> = (0..3)
                .map(|i| {
                    let order = Arc::clone(&order);
                    tokio::spawn(async move { order.lock().unwrap().push(format!("task {i}")) })
                })
                .collect();
            // The spawned tasks are queued, not run yet: this task has not yielded.
            server.write_all(b"answers").await.unwrap();
            order.lock().unwrap().push("written".to_string());
            server.flush().await.unwrap();
            for task in spawned {
                task.await.unwrap();
            }
            assert_eq!(*order.lock().unwrap(), expected, "{wait:?}");

            server.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(
                got, b"answers",
                "{wait:?}: everything written arrives, once"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runtime_of_several_threads_defers_the_write() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = Coalesced::new(server, Scheduling::new());
        assert_eq!(server.wait, Wait::Deferred);
        server.write_all(b"answer").await.unwrap();
        server.flush().await.unwrap();
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"answer");
    }
}
