//! Token faults against a real SoftHSM2 token: the token's directory pulled away and put back
//! under load, the module finalized underneath. Calls answer unavailable (never "not found"),
//! the supervisor reconnects in the background, and nothing is reopened by the test.
//!
//! Run under cargo-nextest: each test is its own process with its own `SOFTHSM2_CONF`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signerd_token::softhsm::SoftHsmDir;
use signerd_token::{ErrorKind, KeyAlgorithm, KeyUsage, Pkcs11Uri, Token, TokenConfig};

const LABEL: &str = "signerd-faults";

/// How long a test waits for a state it expects (a bound on a hang, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(20);

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "still waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    hsm: SoftHsmDir,
    token: Arc<Token>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsmDir::create(dir.path()).unwrap();
    hsm.init_token(LABEL, "1234", "5678").unwrap();
    std::env::set_var("SOFTHSM2_CONF", hsm.conf());
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "1234").unwrap();
    let uri: Pkcs11Uri = hsm.uri(LABEL, &pin_file).parse().unwrap();
    let token = Arc::new(Token::open(TokenConfig::new(uri)).unwrap());
    Fixture { dir, hsm, token }
}

#[test]
fn a_pulled_token_is_unavailable_not_missing_keys_and_comes_back_by_itself() {
    let f = fixture();
    let token = &f.token;
    let key = token
        .create_key(
            KeyAlgorithm::Ecdsa,
            &KeyUsage {
                gun: "example.com/faults".into(),
                role: "timestamp".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let kinds = Arc::new(Mutex::new(Vec::new()));
    let signed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (token, stop, kinds, signed) = (
                Arc::clone(token),
                Arc::clone(&stop),
                Arc::clone(&kinds),
                Arc::clone(&signed),
            );
            std::thread::spawn(move || {
                let _worker = token.attach_worker();
                while !stop.load(Ordering::Relaxed) {
                    match token.sign(&key.id, b"under load") {
                        Ok(_) => {
                            signed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            kinds.lock().unwrap().push((e.kind(), e.to_string()));
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
            })
        })
        .collect();
    let tokens = f.hsm.token_dir();
    let away = f.dir.path().join("pulled");
    for cycle in 0..3 {
        let before = signed.load(Ordering::Relaxed);
        wait_for("signatures before the pull", || {
            signed.load(Ordering::Relaxed) > before + 10
        });
        std::fs::rename(&tokens, &away).unwrap();
        wait_for("the token marked down", || !token.is_up());
        std::fs::rename(&away, &tokens).unwrap();
        wait_for("the token up again", || token.is_up());
        let after = signed.load(Ordering::Relaxed);
        wait_for("signing again after the token came back", || {
            signed.load(Ordering::Relaxed) > after + 10
        });
        eprintln!("cycle {cycle}: {:?}", token.stats());
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let kinds = kinds.lock().unwrap();
    assert!(!kinds.is_empty(), "the pulls were seen by the signers");
    let wrong: Vec<_> = kinds
        .iter()
        .filter(|(k, _)| *k != ErrorKind::Unavailable)
        .collect();
    assert!(
        wrong.is_empty(),
        "only unavailable while the token was away, never not-found or internal: {wrong:?}"
    );
    let stats = token.stats();
    assert!(stats.up, "{stats:?}");
    assert!(stats.reconnects >= 3, "{stats:?}");
    assert_eq!(
        token.key_info(&key.id).unwrap(),
        key,
        "the key is still there"
    );
}

#[test]
fn a_hung_call_is_never_finalized_under() {
    // The supervisor waits for every call on the old generation before it re-initializes: a
    // worker that holds its session across a fault keeps the token down until it lets go.
    let f = fixture();
    let token = &f.token;
    token.connect().unwrap();
    let worker_token = Arc::clone(token);
    let (ready, wait_ready) = std::sync::mpsc::channel();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let worker = worker_token.attach_worker();
        worker_token.probe().unwrap();
        ready.send(()).unwrap();
        // The worker keeps its session (as if stuck) until released, then goes idle.
        held.recv().unwrap();
        worker.idle();
    });
    wait_ready.recv().unwrap();
    let before = token.stats();
    let tokens = f.hsm.token_dir();
    let away = f.dir.path().join("pulled");
    std::fs::rename(&tokens, &away).unwrap();
    wait_for("the token marked down", || !token.is_up());
    std::fs::rename(&away, &tokens).unwrap();
    // Long enough for many reconnection attempts, were the supervisor not waiting.
    std::thread::sleep(Duration::from_millis(500));
    let waiting = token.stats();
    assert!(
        !waiting.up,
        "not reconnected while a session of the old generation is open: {waiting:?}"
    );
    assert_eq!(waiting.generation, before.generation, "{waiting:?}");
    release.send(()).unwrap();
    holder.join().unwrap();
    wait_for("the token up again", || token.is_up());
    token.probe().unwrap();
    assert!(token.stats().generation > before.generation);
}
