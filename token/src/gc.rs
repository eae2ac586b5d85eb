//! Half-made key pairs: the pending marker a new pair carries until it is named, and the
//! collection of pairs a crash left behind.
//!
//! A TUF key ID is known only once the pair exists, and PKCS#11 renames two objects in two
//! calls, so `keygen` makes a pair in steps, each one leaving the token in a state every
//! lookup handles:
//!
//! 1. generate both halves under a random 16-byte `CKA_ID` and the pending label;
//! 2. give the public half its final `CKA_ID` (its label stays pending);
//! 3. give the private half its final `CKA_ID` and label: from here the key exists;
//! 4. give the public half its final label.
//!
//! Until step 3 no private key has a 32-byte `CKA_ID`, so the Notary port's lookups and key
//! listings cannot reach the pair, and [`Token::find_objects`](crate::Token::find_objects)
//! (the admin API, and the PKCS#11 shim behind it) hides key objects with a pending label.
//! A failed step destroys both halves. What signerd dying in between leaves behind is
//! collected here: pending objects are removed, except a public half whose private half
//! reached step 3, which gets the private half's label (the key is whole and may be in use).
//!
//! The pending label carries the time the pair was started, `signerd-pending:<unix
//! seconds>:<final label>`, so a collector leaves alone what a live signerd (another replica
//! on the same token) may be naming right now: only markers older than [`PENDING_GRACE`] go.
//!
//! Session key pairs (a PKCS#11 client's `CKA_TOKEN` false, made through the admin API) are
//! token objects too, labelled `signerd-session:<owner>:<label>`, where the owner is one admin
//! connection of one signerd process ([`SessionOwner`]). They are hidden like half-made pairs,
//! destroyed when that connection closes ([`Token::destroy_session_keys`]), and, for what a
//! killed signerd left, collected at the next start: those of signerd processes on this host
//! that no longer run. A replica on another host may still own its own, so they are left.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::connection::Token;
use crate::error::{Attempt, TokenError};
use crate::objects::ObjectKind;

/// How every pending label starts. Labels a caller gives may not start with it.
pub const PENDING_PREFIX: &str = "signerd-pending:";

/// How old a pending marker must be before it is collected: naming takes milliseconds after
/// generation (even an RSA-4096 pair on a slow HSM is generated in well under a minute), and
/// replicas on other hosts may have clocks a little apart.
pub const PENDING_GRACE: Duration = Duration::from_secs(300);

/// The pending label of a pair started at `started`, to be named `label`.
pub(crate) fn pending_label(started: SystemTime, label: &str) -> String {
    let secs = started
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{PENDING_PREFIX}{secs}:{label}")
}

/// Whether `label` marks an object of a pair still being made.
pub fn is_pending_label(label: &[u8]) -> bool {
    label.starts_with(PENDING_PREFIX.as_bytes())
}

/// Refuses a label a caller chose that would read as a pending or a session marker.
pub(crate) fn check_label(label: &str) -> Result<(), TokenError> {
    if is_pending_label(label.as_bytes()) {
        return Err(TokenError::InvalidRequest(format!(
            "labels starting with '{PENDING_PREFIX}' mark key pairs signerd is still making; \
             choose another label"
        )));
    }
    if is_session_label(label.as_bytes()) {
        return Err(TokenError::InvalidRequest(format!(
            "labels starting with '{SESSION_PREFIX}' mark session key pairs; choose another \
             label (a session key pair is asked for with the request's session flag)"
        )));
    }
    Ok(())
}

/// How every session key's label starts. Labels a caller gives may not start with it.
pub const SESSION_PREFIX: &str = "signerd-session:";

/// Whether `label` marks a key of a session key pair.
pub fn is_session_label(label: &[u8]) -> bool {
    label.starts_with(SESSION_PREFIX.as_bytes())
}

/// The owner of session key pairs: one admin connection of one signerd process, named so that
/// a signerd starting later on the same host can tell whether that process still runs (host
/// name, pid and the process's start time, which tells a reused pid apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOwner {
    host: String,
    pid: u32,
    started: u64,
    connection: u64,
}

impl SessionOwner {
    /// Connection `connection` of this process.
    pub fn of_this_process(connection: u64) -> SessionOwner {
        let (host, pid, started) = this_process();
        SessionOwner {
            host,
            pid,
            started,
            connection,
        }
    }

    /// What every label of this owner's keys starts with.
    pub fn label_prefix(&self) -> String {
        format!(
            "{SESSION_PREFIX}{}:{}:{}:{}:",
            self.host, self.pid, self.started, self.connection
        )
    }

    /// The label of a key of this owner that the client calls `label`.
    pub fn label(&self, label: &str) -> String {
        format!("{}{label}", self.label_prefix())
    }

    /// Whether `label` is the label of one of this owner's keys.
    pub fn owns(&self, label: &str) -> bool {
        label.starts_with(&self.label_prefix())
    }

    /// The owner a session label names, and the client's label; `None` for other labels.
    pub fn parse(label: &str) -> Option<(SessionOwner, String)> {
        let rest = label.strip_prefix(SESSION_PREFIX)?;
        let mut parts = rest.splitn(5, ':');
        let host = parts.next()?.to_owned();
        let pid = parts.next()?.parse().ok()?;
        let started = parts.next()?.parse().ok()?;
        let connection = parts.next()?.parse().ok()?;
        let label = parts.next().unwrap_or_default().to_owned();
        Some((
            SessionOwner {
                host,
                pid,
                started,
                connection,
            },
            label,
        ))
    }

    /// Whether the signerd process that owns the keys may still run: always, for one on
    /// another host (it cannot be asked); on this host, whether that pid runs with the same
    /// start time.
    fn may_run(&self) -> bool {
        let (host, pid, started) = this_process();
        if self.host != host {
            return true;
        }
        if self.pid == pid {
            return self.started == started;
        }
        start_time(self.pid).is_some_and(|t| t == self.started)
    }
}

/// This host's name, this process's pid and its start time.
fn this_process() -> (String, u32, u64) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(':', "_"))
        .unwrap_or_default();
    let pid = std::process::id();
    (host, pid, start_time(pid).unwrap_or(0))
}

/// When process `pid` started, in clock ticks after boot (`/proc/<pid>/stat`, field 22);
/// `None` when no such process runs.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// A pending label read back: when the pair was started, and the label it was to get.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingMarker {
    /// Seconds since the Unix epoch; 0 when the marker's time is unreadable (collected as old).
    started: u64,
    /// The final label.
    label: String,
}

impl PendingMarker {
    fn parse(label: &str) -> Option<PendingMarker> {
        let rest = label.strip_prefix(PENDING_PREFIX)?;
        let (secs, label) = rest.split_once(':').unwrap_or((rest, ""));
        Some(PendingMarker {
            started: secs.parse().unwrap_or(0),
            label: label.to_owned(),
        })
    }
}

/// What the collector does with one pending object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PendingAction {
    /// Destroyed: its pair never got its name.
    Remove,
    /// Given this label: its private half was named, so the key is whole.
    Complete(String),
    /// Left alone: younger than the grace period, a live signerd may be naming it.
    Keep,
}

impl PendingAction {
    /// The action in a word or two, for reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            PendingAction::Remove => "remove",
            PendingAction::Complete(_) => "complete",
            PendingAction::Keep => "keep (too young)",
        }
    }
}

/// One key object with a pending label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingObject {
    /// Private or public key.
    pub kind: ObjectKind,
    /// Its `CKA_ID` now.
    pub id: Vec<u8>,
    /// The label the pair was to get.
    pub final_label: String,
    /// When its pair was started (from the marker).
    pub started: SystemTime,
    /// What the collector does (or did) with it.
    pub action: PendingAction,
}

// === impl Token ===

impl Token {
    /// Every pending key object in the token and what collecting with `grace` does with it;
    /// changes nothing.
    pub fn pending_objects(&self, grace: Duration) -> Result<Vec<PendingObject>, TokenError> {
        let now = SystemTime::now();
        self.run(|_conn, session| {
            Ok(plan(session, now, grace)?
                .into_iter()
                .map(|(_, o)| o)
                .collect())
        })
    }

    /// Collects what [`Token::pending_objects`] lists: removes pending objects older than
    /// `grace`, completes the public halves of whole keys. Returns what it found, and did.
    pub fn collect_pending(&self, grace: Duration) -> Result<Vec<PendingObject>, TokenError> {
        let now = SystemTime::now();
        self.run(|_conn, session| {
            let planned = plan(session, now, grace)?;
            for (handle, object) in &planned {
                let done = match &object.action {
                    PendingAction::Remove => session.destroy_object(*handle),
                    PendingAction::Complete(label) => session.update_attributes(
                        *handle,
                        &[Attribute::Label(label.clone().into_bytes())],
                    ),
                    PendingAction::Keep => Ok(()),
                };
                match done {
                    // Another collector (a replica starting at the same time) got there first.
                    Ok(()) | Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(planned.into_iter().map(|(_, o)| o).collect())
        })
    }

    /// Collects what a signerd that died left behind, on a thread of its own so the start is
    /// not held up: the session key pairs of its connections, and pending objects of a key it
    /// was making. Logs what it did.
    pub fn spawn_pending_collection(self: &Arc<Token>) {
        let token = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("pending-gc".into())
            .spawn(move || {
                match token.collect_session_keys() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        objects = n,
                        "removed session key pairs of a signerd that no longer runs"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "could not remove the session key pairs of a signerd that no longer runs; the next start tries again"
                    ),
                }
                collect_pending_now(&token);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start collecting half-made key objects");
        }
    }
}

/// Collects half-made key objects now, and logs what it did.
fn collect_pending_now(token: &Token) {
    match token.collect_pending(PENDING_GRACE) {
        Ok(objects) => {
            let removed = objects
                .iter()
                .filter(|o| o.action == PendingAction::Remove)
                .count();
            let completed = objects
                .iter()
                .filter(|o| matches!(o.action, PendingAction::Complete(_)))
                .count();
            if removed + completed > 0 {
                tracing::info!(
                    removed,
                    completed,
                    "collected key objects left half-made by an interrupted key generation"
                );
            } else {
                tracing::debug!(
                    pending = objects.len(),
                    "no half-made key objects to collect"
                );
            }
        }
        Err(e) => tracing::warn!(
            error = %e,
            "could not collect half-made key objects; `signerd key gc` does it by hand"
        ),
    }
}

// === session key pairs ===

impl Token {
    /// Destroys every key of `owner`'s session key pairs; returns how many objects went.
    pub fn destroy_session_keys(&self, owner: &SessionOwner) -> Result<usize, TokenError> {
        let prefix = owner.label_prefix();
        self.destroy_session_keys_where(|label| label.starts_with(&prefix))
    }

    /// Destroys the session keys of signerd processes on this host that no longer run (a
    /// signerd killed while clients held session key pairs); returns how many objects went.
    pub fn collect_session_keys(&self) -> Result<usize, TokenError> {
        self.destroy_session_keys_where(|label| {
            SessionOwner::parse(label).is_some_and(|(owner, _)| !owner.may_run())
        })
    }

    fn destroy_session_keys_where(
        &self,
        doomed: impl Fn(&str) -> bool,
    ) -> Result<usize, TokenError> {
        self.run(|_conn, session| {
            let mut destroyed = 0;
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                let found =
                    session.find_objects(&[Attribute::Token(true), Attribute::Class(class)])?;
                for handle in found {
                    let label = session
                        .get_attributes(handle, &[AttributeType::Label])?
                        .into_iter()
                        .find_map(|a| match a {
                            Attribute::Label(l) => Some(l),
                            _ => None,
                        })
                        .unwrap_or_default();
                    if !is_session_label(&label) || !doomed(&String::from_utf8_lossy(&label)) {
                        continue;
                    }
                    match session.destroy_object(handle) {
                        Ok(()) => destroyed += 1,
                        // Destroyed by another sweep (the owner's own close) meanwhile.
                        Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(destroyed)
        })
    }
}

/// Every pending key object, with its handle and what to do with it.
fn plan(
    session: &Session,
    now: SystemTime,
    grace: Duration,
) -> Attempt<Vec<(ObjectHandle, PendingObject)>> {
    // Labels of named private keys by CKA_ID: a pending public half beside one is completed.
    let mut named_private: HashMap<Vec<u8>, String> = HashMap::new();
    let mut pending = Vec::new();
    for kind in [ObjectKind::PrivateKey, ObjectKind::PublicKey] {
        let class = match kind {
            ObjectKind::PrivateKey => ObjectClass::PRIVATE_KEY,
            _ => ObjectClass::PUBLIC_KEY,
        };
        for handle in session.find_objects(&[Attribute::Token(true), Attribute::Class(class)])? {
            let (mut id, mut label) = (Vec::new(), Vec::new());
            for attr in
                session.get_attributes(handle, &[AttributeType::Id, AttributeType::Label])?
            {
                match attr {
                    Attribute::Id(v) => id = v,
                    Attribute::Label(v) => label = v,
                    _ => {}
                }
            }
            let label = String::from_utf8_lossy(&label).into_owned();
            match PendingMarker::parse(&label) {
                Some(marker) => pending.push((handle, kind, id, marker)),
                None if kind == ObjectKind::PrivateKey => {
                    named_private.insert(id, label);
                }
                None => {}
            }
        }
    }
    Ok(pending
        .into_iter()
        .map(|(handle, kind, id, marker)| {
            let started = UNIX_EPOCH + Duration::from_secs(marker.started);
            // A marker from the future (a clock ahead of ours) is young.
            let old = now.duration_since(started).is_ok_and(|age| age >= grace);
            let action = match (kind, named_private.get(&id)) {
                (ObjectKind::PublicKey, Some(label)) => PendingAction::Complete(label.clone()),
                _ if old => PendingAction::Remove,
                _ => PendingAction::Keep,
            };
            let object = PendingObject {
                kind,
                id,
                final_label: marker.label,
                started,
                action,
            };
            (handle, object)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_carries_its_time_and_final_label() {
        let started = UNIX_EPOCH + Duration::from_secs(1_764_496_566);
        let label = pending_label(started, "notary:root@example.com/app");
        assert_eq!(
            label,
            "signerd-pending:1764496566:notary:root@example.com/app"
        );
        assert!(is_pending_label(label.as_bytes()));
        assert_eq!(
            PendingMarker::parse(&label),
            Some(PendingMarker {
                started: 1_764_496_566,
                label: "notary:root@example.com/app".into()
            })
        );
        // A damaged time reads as the oldest possible: it is collected, not kept forever.
        assert_eq!(
            PendingMarker::parse("signerd-pending:soon").map(|m| m.started),
            Some(0)
        );
        assert_eq!(PendingMarker::parse("notary:root@example.com/app"), None);
    }

    #[test]
    fn session_labels_name_their_owner() {
        let owner = SessionOwner::of_this_process(7);
        let label = owner.label("my:key");
        assert!(is_session_label(label.as_bytes()));
        assert!(owner.owns(&label));
        assert!(!SessionOwner::of_this_process(8).owns(&label));
        let (parsed, client) = SessionOwner::parse(&label).unwrap();
        assert_eq!((parsed.clone(), client.as_str()), (owner, "my:key"));
        assert!(parsed.may_run(), "this process runs");
        let gone = SessionOwner {
            pid: u32::MAX,
            ..parsed.clone()
        };
        assert!(!gone.may_run(), "no process has that pid");
        let reused = SessionOwner {
            started: parsed.started + 1,
            ..parsed.clone()
        };
        assert!(
            !reused.may_run(),
            "same pid, another start: another process"
        );
        let elsewhere = SessionOwner {
            host: "another-host".into(),
            pid: u32::MAX,
            ..parsed
        };
        assert!(elsewhere.may_run(), "a replica elsewhere cannot be asked");
        assert!(check_label(&label).is_err());
        assert_eq!(SessionOwner::parse("signerd-session:h:x:1:2:l"), None);
    }

    #[test]
    fn callers_cannot_choose_a_pending_label() {
        let err = check_label("signerd-pending:1:x").unwrap_err();
        assert!(matches!(err, TokenError::InvalidRequest(_)));
        assert!(err.to_string().contains("choose another label"), "{err}");
        assert!(check_label("pending@example.com").is_ok());
    }
}
