//! Acceptance of trust pinning from the HSM (the seed flow), with the real notary-server and
//! the real notary CLI, and no private key outside the token: `signerd ca init`, `signerd root
//! new <gun>`, the repository initialized and published with `notary init --rootcert` while
//! its root key signs from signerd's token (through the PKCS#11 shim linked as `libykcs11.so`),
//! clients configured by `signerd trust-pinning`: pinned to the CA (or to the certificate's key
//! ID) they list and verify; pinned to another CA, or with `disable_tofu` and no pin, they
//! refuse.

use std::io;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use signerd_tests::admin::{openssl, AdminCli};
use signerd_tests::notary::{parse_key_list, parse_target_list};
use signerd_tests::shim::{shim_module, AdminSignerd, YkcsLink};
use signerd_tests::signerd::TestToken;
use signerd_tests::{NotaryClient, NotaryServer, TestCa, TestDir, TestPki};

const TARGET: &[u8] = b"signed under a root whose key never left the token\n";

/// Fields drop in order: the clients' tools are done, then notary-server, then signerd, then
/// the folder.
struct Deployment {
    server: NotaryServer,
    signerd: AdminSignerd,
    token: TestToken,
    dir: TestDir,
}

fn deploy(name: &str) -> io::Result<Deployment> {
    let dir = TestDir::new(name)?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let token = TestToken::create(&dir.subdir("token")?)?;
    let signerd = AdminSignerd::start(&dir.subdir("signerd")?, &token, &pki)?;
    let server = NotaryServer::start(&dir.subdir("server")?, signerd.signerd.endpoint(), "ecdsa")?;
    server
        .wait_healthy(Duration::from_secs(30))
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(Deployment {
        server,
        signerd,
        token,
        dir,
    })
}

fn path(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Replaces the `trust_pinning` of a client's config.json, keeping its other fields.
fn set_trust_pinning(client: &NotaryClient, pinning: serde_json::Value) {
    let text = std::fs::read_to_string(client.config_file()).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["trust_pinning"] = pinning;
    std::fs::write(client.config_file(), config.to_string()).unwrap();
}

#[test]
fn seed_flow_the_root_key_stays_in_the_token_and_pinned_clients_verify() -> io::Result<()> {
    let d = deploy("trust-pinning-seed")?;
    let gun = "example.com/acme/app";
    let cli = AdminCli::new(&d.signerd.socket, &d.dir.subdir("admin-cli")?)?;

    // 1. The CA and the repository's root key are made in the token; certificates come out.
    cli.run_ok(&["ca", "init", "--subject", "CN=Acme Notary CA,O=Acme"]);
    let ca = cli.dir().join("ca.pem");
    let issued = cli.json(&["root", "new", gun]);
    let root_cert = Path::new(issued["certificate"].as_str().unwrap()).to_owned();
    let root_key_id = issued["key_id"].as_str().unwrap().to_owned();
    let (ok, out) = openssl(&["verify", "-CAfile", path(&ca), path(&root_cert)]);
    assert!(ok, "{out}");

    // 2. The owner's notary CLI reaches the root key through the shim, and only there.
    let link = YkcsLink::install(d.dir.path(), &shim_module())?;
    let log = d.dir.path().join("shim.log");
    let owner = NotaryClient::new(&d.dir.subdir("owner")?, &d.server.url(), d.server.ca_file())?
        .with_env(&d.signerd.shim_env(&log))
        .in_namespace(link.namespace());
    let keys = parse_key_list(&owner.run_ok(&["key", "list"]));
    let root = keys
        .iter()
        .find(|k| k.key_id == root_key_id)
        .unwrap_or_else(|| {
            panic!("the notary CLI does not list the token's root key {root_key_id}: {keys:?}")
        });
    assert_eq!(root.location, "yubikey", "{keys:?}");

    let out = owner.run_ok(&["init", gun, "--rootcert", path(&root_cert), "--publish"]);
    assert!(out.contains("Successfully published"), "init:\n{out}");
    let v1 = d.dir.path().join("v1");
    std::fs::write(&v1, TARGET)?;
    owner.run_ok(&["add", gun, "v1", path(&v1)]);
    let out = owner.run_ok(&["publish", gun]);
    assert!(out.contains("Successfully published"), "publish:\n{out}");

    // No root private key anywhere in the owner's trust dir: it signed from the token.
    let root_files: Vec<String> = walk(&owner.trust_dir().join("private"))
        .into_iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .map(|t| t.contains("role: root"))
                .unwrap_or(false)
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(root_files.is_empty(), "root key files: {root_files:?}");
    let shim_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        d.signerd
            .signerd
            .logs()
            .lines()
            .any(|l| l.contains("method=\"Sign\"") && l.contains(&root_key_id)),
        "root.json was not signed by the token key {root_key_id}\nshim log:\n{shim_log}"
    );

    // root.json names the CA-issued certificate, under the key ID `trust-pinning --certs` pins.
    let pins = cli.run_ok(&["trust-pinning", gun, "--certs"]);
    let pins: serde_json::Value = serde_json::from_str(&pins).unwrap();
    let cert_key_id = pins["trust_pinning"]["certs"][gun][0]
        .as_str()
        .unwrap()
        .to_owned();
    let root_json = owner
        .trust_dir()
        .join("tuf")
        .join(gun)
        .join("metadata/root.json");
    let root_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&root_json)?).unwrap();
    assert_eq!(
        root_json["signed"]["roles"]["root"]["keyids"],
        json!([cert_key_id]),
        "{root_json}"
    );
    assert_eq!(
        root_json["signed"]["keys"][&cert_key_id]["keytype"],
        "ecdsa-x509"
    );

    // 3. A client pinned to the CA by `signerd trust-pinning --ca --disable-tofu --write`.
    let pinned = NotaryClient::new(
        &d.dir.subdir("pinned")?,
        &d.server.url(),
        d.server.ca_file(),
    )?;
    cli.run_ok(&[
        "trust-pinning",
        "example.com/acme",
        "--ca",
        "--disable-tofu",
        "--write",
        path(pinned.config_file()),
    ]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pinned.config_file())?).unwrap();
    assert!(
        config["remote_server"]["url"].is_string() && config["trust_dir"].is_string(),
        "--write kept the client's other fields: {config}"
    );
    let listed = parse_target_list(&pinned.run_ok(&["list", gun]));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, "v1");
    let out = pinned.run_ok_with_stdin(&["verify", gun, "v1"], &v1);
    assert_eq!(out.as_bytes(), TARGET);

    // ... and one pinned to the certificate's key ID.
    let by_id = NotaryClient::new(&d.dir.subdir("by-id")?, &d.server.url(), d.server.ca_file())?;
    cli.run_ok(&[
        "trust-pinning",
        gun,
        "--certs",
        "--disable-tofu",
        "--write",
        path(by_id.config_file()),
    ]);
    assert_eq!(parse_target_list(&by_id.run_ok(&["list", gun])).len(), 1);

    // 4. Pinned to another CA: refused.
    let other_ca = TestCa::new(&d.dir.subdir("other-ca")?, "other-ca")?;
    let wrong = NotaryClient::new(
        &d.dir.subdir("wrong-ca")?,
        &d.server.url(),
        d.server.ca_file(),
    )?;
    set_trust_pinning(
        &wrong,
        json!({ "ca": { gun: other_ca.cert_path() }, "disable_tofu": true }),
    );
    let out = wrong.run_err(&["list", gun]);
    assert!(
        out.contains("unable to match any certificates to trust_pinning config"),
        "{out}"
    );

    // 5. disable_tofu with no pin for this GUN: refused.
    let unpinned = NotaryClient::new(
        &d.dir.subdir("unpinned")?,
        &d.server.url(),
        d.server.ca_file(),
    )?;
    set_trust_pinning(&unpinned, json!({ "disable_tofu": true }));
    let out = unpinned.run_err(&["list", gun]);
    assert!(out.contains("invalid trust pinning specified"), "{out}");

    // The root key is still where it was made, and still the only root key.
    let roots = cli.json(&["key", "list", "--gun", gun, "--role", "root"]);
    assert_eq!(roots.as_array().unwrap().len(), 1, "{roots}");
    assert_eq!(roots[0]["key_id"], root_key_id.as_str());
    let _ = &d.token;
    Ok(())
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}
