//! Which threads are inside the module, and whether they are working or waiting: what the
//! supervisor reads when calls of a dead connection do not return (see `supervisor`).

/// The calling thread's kernel thread ID (read once per thread).
pub(crate) fn current_tid() -> i32 {
    thread_local! {
        static TID: i32 = nix::unistd::gettid().as_raw();
    }
    TID.with(|tid| *tid)
}

/// The scheduler state letter of thread `tid` of this process (`R` running, `S` sleeping,
/// `D` in uninterruptible I/O, ...), or `None` when it has ended.
pub(crate) fn state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    parse_state(&stat)
}

/// The state field of a `/proc/<pid>/task/<tid>/stat` line: the first field after the command
/// name, which is in parentheses and may itself hold spaces and parentheses.
fn parse_state(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Whether thread `tid` waits (asleep in the kernel, interruptibly) rather than works: a call
/// that sleeps this way long after its device went away waits for an answer that never comes.
pub(crate) fn is_waiting(tid: i32) -> bool {
    state(tid) == Some('S')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_the_last_parenthesis() {
        assert_eq!(parse_state("12 (token-worker-1) S 1 2 3"), Some('S'));
        assert_eq!(parse_state("12 (a) b (c)) R 1 2 3"), Some('R'));
        assert_eq!(parse_state("garbage"), None);
    }

    #[test]
    fn a_sleeping_thread_waits_and_this_one_runs() {
        let (tx, rx) = std::sync::mpsc::channel::<i32>();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let sleeper = std::thread::spawn(move || {
            tx.send(current_tid()).unwrap();
            let _ = wait.recv();
        });
        let tid = rx.recv().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !is_waiting(tid) {
            assert!(std::time::Instant::now() < deadline, "{:?}", state(tid));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(state(current_tid()), Some('R'));
        release.send(()).unwrap();
        sleeper.join().unwrap();
        assert_eq!(state(tid), None, "an ended thread has no state");
        assert_ne!(tid, current_tid());
    }
}
