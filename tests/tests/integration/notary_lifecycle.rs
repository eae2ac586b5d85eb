//! The whole Notary lifecycle with signerd as notary-server's signer: the real notary-server
//! and the real notary CLI, over mutual TLS, for every key algorithm notary-server can ask for.

use std::io;

use signerd_tests::signerd::{Signerd, TestToken};
use signerd_tests::{Lifecycle, NotaryServer, TestDir, TestPki};

/// A notary-server whose signer is signerd on a fresh SoftHSM token. Fields drop in order: the
/// server first, then signerd, then the folder.
struct Deployment {
    server: NotaryServer,
    signerd: Signerd,
    token: TestToken,
    dir: TestDir,
}

fn deploy(name: &str, key_algorithm: &str) -> io::Result<Deployment> {
    let dir = TestDir::new(name)?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let token = TestToken::create(&dir.subdir("token")?)?;
    let signerd = Signerd::start(&dir.subdir("signerd")?, "signerd", &token, &pki)?;
    let server = NotaryServer::start(&dir.subdir("server")?, signerd.endpoint(), key_algorithm)?;
    Ok(Deployment {
        server,
        signerd,
        token,
        dir,
    })
}

/// The server-managed keys signerd holds: every line of `signerd` logs that created a key.
fn created_keys(logs: &str) -> Vec<String> {
    logs.lines()
        .filter(|l| l.contains("method=\"CreateKey\"") && l.contains("outcome=\"ok\""))
        .map(str::to_owned)
        .collect()
}

fn whole_lifecycle(key_algorithm: &str) -> io::Result<()> {
    let d = deploy(&format!("lifecycle-{key_algorithm}"), key_algorithm)?;
    let gun = format!("example.com/signerd/{key_algorithm}");
    let lifecycle = Lifecycle::new(&d.dir.subdir("clients")?, &d.server, &gun)?;
    lifecycle.run(&d.server);
    assert_eq!(d.server.health_status(), 200);

    let logs = d.signerd.logs();
    let created = created_keys(&logs);
    // init makes the timestamp key; `key rotate snapshot --server-managed` the snapshot key;
    // `key rotate timestamp --server-managed` a second timestamp key.
    assert!(
        created.len() >= 3,
        "CreateKey lines:\n{}",
        created.join("\n")
    );
    for role in ["timestamp", "snapshot"] {
        assert!(
            created
                .iter()
                .any(|l| l.contains(&format!("role=\"{role}\"")) && l.contains(&gun)),
            "a {role} key for {gun} was made in the token:\n{logs}"
        );
    }
    assert!(logs.contains("method=\"Sign\""), "{logs}");
    assert!(!logs.contains("outcome=\"Internal\""), "{logs}");
    drop(d.token);
    Ok(())
}

fn restart_mid_lifecycle(key_algorithm: &str) -> io::Result<()> {
    let mut d = deploy(&format!("restart-{key_algorithm}"), key_algorithm)?;
    let gun = format!("example.com/signerd/restart-{key_algorithm}");
    let lifecycle = Lifecycle::new(&d.dir.subdir("clients")?, &d.server, &gun)?;
    lifecycle.part1(&d.server);
    d.signerd.restart()?;
    // The next publish, list and verify need the timestamp and snapshot keys made before the
    // restart: they come back from the token (part2 fails at its first publish otherwise, as
    // the Go signer's memory store shows in go_signer_reference.rs).
    lifecycle.part2(&d.server);
    let logs = d.signerd.logs();
    let after_restart = logs.rsplit("signerd serving").next().unwrap_or_default();
    assert!(
        after_restart.contains("method=\"Sign\""),
        "signed after the restart:\n{logs}"
    );
    Ok(())
}

#[test]
fn lifecycle_ecdsa() -> io::Result<()> {
    whole_lifecycle("ecdsa")
}

#[test]
fn lifecycle_ed25519() -> io::Result<()> {
    whole_lifecycle("ed25519")
}

/// The Go signer cannot do this one (notary-server answers 500): signerd makes RSA keys.
#[test]
fn lifecycle_rsa() -> io::Result<()> {
    whole_lifecycle("rsa")
}

#[test]
fn restart_mid_lifecycle_ecdsa() -> io::Result<()> {
    restart_mid_lifecycle("ecdsa")
}

#[test]
fn restart_mid_lifecycle_ed25519() -> io::Result<()> {
    restart_mid_lifecycle("ed25519")
}

#[test]
fn restart_mid_lifecycle_rsa() -> io::Result<()> {
    restart_mid_lifecycle("rsa")
}
