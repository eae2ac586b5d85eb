//! The harness's self-check: the notary lifecycle against the Go reference notary-signer, through
//! the real notary-server and notary CLI. When this passes, a failure with signerd in its place
//! is signerd's.

use std::io;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use signerd_tests::{GoSigner, Lifecycle, NotaryClient, NotaryServer, TestCa, TestDir, TestPki};

/// Starts PKI, Go signer and notary-server with `key_algorithm`, then runs the whole lifecycle.
fn lifecycle_against_go_signer(key_algorithm: &str) -> io::Result<()> {
    let started = Instant::now();
    let dir = TestDir::new(&format!("go-signer-{key_algorithm}"))?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let signer = GoSigner::start(&dir.subdir("signer")?, &pki)?;
    let server = NotaryServer::start(&dir.subdir("server")?, signer.endpoint(), key_algorithm)?;
    let gun = format!("example.com/signerd/{key_algorithm}");
    let lifecycle = Lifecycle::new(&dir.subdir("clients")?, &server, &gun)?;
    lifecycle.part1(&server);
    lifecycle.part2(&server);
    eprintln!(
        "lifecycle against the Go signer ({key_algorithm}) took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn lifecycle_ecdsa() -> io::Result<()> {
    lifecycle_against_go_signer("ecdsa")
}

#[test]
fn lifecycle_ed25519() -> io::Result<()> {
    lifecycle_against_go_signer("ed25519")
}

/// The Go signer makes only ecdsa and ed25519 keys: with `key_algorithm: rsa`, notary-server's
/// CreateKey fails and `init` gets an HTTP 500.
#[test]
fn rsa_is_refused_by_the_go_signer() -> io::Result<()> {
    let dir = TestDir::new("go-signer-rsa")?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let signer = GoSigner::start(&dir.subdir("signer")?, &pki)?;
    let server = NotaryServer::start(&dir.subdir("server")?, signer.endpoint(), "rsa")?;
    let admin = NotaryClient::new(&dir.subdir("admin")?, &server.url(), server.ca_file())?;

    let out = admin.run_err(&["init", "example.com/signerd/rsa", "--publish"]);
    assert!(out.contains("500"), "init should get a 500:\n{out}");
    let logs = server.logs();
    assert!(
        logs.contains("algorithm rsa not supported for create key"),
        "notary-server should log the signer's refusal:\n{}",
        server.log_tail(20)
    );
    Ok(())
}

/// The Go signer requires notary-server's client certificate to chain to its client CA: one from
/// an unrelated CA is refused, so nothing can be signed.
#[test]
fn client_cert_from_another_ca_is_refused() -> io::Result<()> {
    let dir = TestDir::new("go-signer-other-ca")?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let signer = GoSigner::start(&dir.subdir("signer")?, &pki)?;
    let other_ca = TestCa::new(&dir.subdir("other-pki")?, "other-ca")?;
    let stranger = other_ca.issue_client("stranger")?;
    let mut endpoint = signer.endpoint().clone();
    endpoint.client_cert = stranger.cert;
    endpoint.client_key = stranger.key;
    let server = NotaryServer::start(&dir.subdir("server")?, &endpoint, "ecdsa")?;
    let admin = NotaryClient::new(&dir.subdir("admin")?, &server.url(), server.ca_file())?;

    let out = admin.run_err(&["init", "example.com/signerd/other-ca", "--publish"]);
    assert!(out.contains("500"), "init should get a 500:\n{out}");
    Ok(())
}

/// The restart-mid-lifecycle shape signerd's tests use, proven to have teeth: the Go memory
/// store forgets its keys on restart, so part 2 must fail at its first publish with the
/// signer's "not found".
#[test]
fn restart_of_the_go_memory_signer_breaks_part2() -> io::Result<()> {
    let dir = TestDir::new("go-signer-restart")?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let mut signer = GoSigner::start(&dir.subdir("signer")?, &pki)?;
    let server = NotaryServer::start(&dir.subdir("server")?, signer.endpoint(), "ecdsa")?;
    let lifecycle = Lifecycle::new(
        &dir.subdir("clients")?,
        &server,
        "example.com/signerd/restart",
    )?;
    lifecycle.part1(&server);

    let old_pid = signer.process().id();
    signer.restart()?;
    assert_ne!(
        signer.process().id(),
        old_pid,
        "restart must start a new process"
    );

    let part2 = std::panic::catch_unwind(AssertUnwindSafe(|| lifecycle.part2(&server)));
    let message = match part2 {
        Ok(()) => panic!("part 2 passed although the signer lost its keys"),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default(),
    };
    assert!(
        message.contains("addhash") && message.contains("not found"),
        "part 2 should fail at its first publish, on the lost key: {message}"
    );
    Ok(())
}
