//! The `signerd` command line as a user meets it: the embedded default (README command one),
//! `check-config`, and configuration errors that say what to fix.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use signerd_proto::health::health_check_response::ServingStatus;
use signerd_proto::health::health_client::HealthClient;
use signerd_proto::health::HealthCheckRequest;
use signerd_tests::signerd::{signerd_bin, TestToken};
use signerd_tests::{free_port, ChildGuard, TestDir, TestPki};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn signerd(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(signerd_bin());
    cmd.current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("signerd runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn dev_health(port: u16, tls_dir: &Path) -> i32 {
    let read = |name: &str| std::fs::read(tls_dir.join(name)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(
            read("client.pem"),
            read("client-key.pem"),
        ))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("the dev client certificate is accepted");
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test]
async fn serve_with_nothing_configured_makes_and_reuses_a_dev_setup() {
    let dir = TestDir::new("cli-dev").unwrap();
    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let start = || {
        let mut cmd = Command::new(signerd_bin());
        cmd.current_dir(dir.path())
            .args(["serve", "--listen", &listen])
            .env_remove("SOFTHSM2_CONF");
        let mut child = ChildGuard::spawn("signerd-dev", cmd, dir.path()).unwrap();
        child
            .wait_for_port(listen.parse().unwrap(), Duration::from_secs(30))
            .unwrap();
        child
    };
    let mut child = start();
    let dev = dir.path().join(".signerd");
    assert_eq!(
        dev_health(port, &dev.join("tls")).await,
        ServingStatus::Serving as i32
    );

    // The banner says where everything is and gives notary-server's trust_service block.
    let banner = std::fs::read_to_string(child.stdout_log()).unwrap();
    let ca = std::fs::canonicalize(dev.join("tls/ca.pem")).unwrap();
    assert!(
        banner.contains(&format!("CA file    {}", ca.display())),
        "{banner}"
    );
    let json_start = banner.find('{').expect("a JSON snippet");
    let snippet: serde_json::Value =
        serde_json::from_str(&banner[json_start..]).expect("valid JSON");
    let ts = &snippet["trust_service"];
    assert_eq!(ts["type"], "remote");
    assert_eq!(ts["port"], port.to_string());
    assert_eq!(ts["tls_ca_file"], ca.display().to_string());

    use std::os::unix::fs::PermissionsExt as _;
    for secret in ["pin", "so-pin", "tls/server-key.pem", "tls/client-key.pem"] {
        let mode = std::fs::metadata(dev.join(secret))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    let pin = std::fs::read_to_string(dev.join("pin")).unwrap();
    assert!(
        !child.logs().contains(&pin),
        "the PIN never reaches the logs"
    );

    // A second start reuses the same token and certificates.
    let first_cert = std::fs::read(dev.join("tls/server.pem")).unwrap();
    assert!(child.stop().unwrap().success());
    let _again = start();
    assert_eq!(
        std::fs::read(dev.join("tls/server.pem")).unwrap(),
        first_cert
    );
    assert_eq!(
        dev_health(port, &dev.join("tls")).await,
        ServingStatus::Serving as i32
    );
}

/// A config file for a test token and PKI.
fn write_config(
    dir: &Path,
    name: &str,
    token: &TestToken,
    pki: &TestPki,
    module: &str,
) -> std::path::PathBuf {
    let uri = token.uri.replace("/usr/lib/softhsm/libsofthsm2.so", module);
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n[token]\nuri = \"{uri}\"\n",
        pki.server.cert.display(),
        pki.server.key.display(),
        pki.ca.cert_path().display()
    );
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn check_config_passes_a_good_setup_and_names_each_problem() {
    let dir = TestDir::new("cli-check").unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let conf = token.softhsm.conf();
    let env = [("SOFTHSM2_CONF", conf.as_path())];

    let good = write_config(
        dir.path(),
        "good.toml",
        &token,
        &pki,
        "/usr/lib/softhsm/libsofthsm2.so",
    );
    let out = signerd(
        dir.path(),
        &["check-config", "--config", good.to_str().unwrap()],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("token 'signerd-test'") && text(&out).contains("configuration is good"),
        "{}",
        text(&out)
    );

    // A module that is not there.
    let bad = write_config(
        dir.path(),
        "bad.toml",
        &token,
        &pki,
        "/nonexistent/libpkcs11.so",
    );
    let out = signerd(
        dir.path(),
        &["check-config", "--config", bad.to_str().unwrap()],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("cannot load PKCS#11 module /nonexistent/libpkcs11.so"),
        "{}",
        text(&out)
    );

    // A wrong PIN: named by its source, never shown.
    std::fs::write(&token.pin_file, "999999").unwrap();
    let out = signerd(
        dir.path(),
        &["check-config", "--config", good.to_str().unwrap()],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("rejected the user PIN") && t.contains(&token.pin_file.display().to_string()),
        "{t}"
    );
    assert!(!t.contains("999999"), "{t}");

    // A flag overrides the file: a missing TLS key is named with the field that sets it.
    let out = signerd(
        dir.path(),
        &[
            "check-config",
            "--config",
            good.to_str().unwrap(),
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        &env,
    );
    assert!(
        text(&out).contains("cannot read server.tls_key /nonexistent/key.pem"),
        "{}",
        text(&out)
    );
}

#[test]
fn serve_refuses_a_broken_config_with_exit_code_2() {
    let dir = TestDir::new("cli-bad-config").unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:7899\"\n[token]\nuri = \"token=x\"\n",
    )
    .unwrap();
    let out = signerd(
        dir.path(),
        &["serve", "--config", path.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("token.uri: a PKCS#11 URI starts with 'pkcs11:'"),
        "{t}"
    );
    assert!(
        t.contains("mutual TLS needs a certificate, its key and a client CA"),
        "{t}"
    );

    std::fs::write(&path, "[sever]\n").unwrap();
    let out = signerd(
        dir.path(),
        &["serve", "--config", path.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("unknown field `sever`"),
        "{}",
        text(&out)
    );
}
