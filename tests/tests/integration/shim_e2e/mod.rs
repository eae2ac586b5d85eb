//! signerd's PKCS#11 shim end to end, with real tools only: OpenSC `pkcs11-tool`, OpenSSL 3
//! through libp11's engine, the notary CLI through `libykcs11.so`, and a client that holds
//! logged-in sessions across a signerd restart. Keys are made and used through the shim; that
//! they live in signerd's token is checked with `signerd key list` and with SoftHSM directly.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256};
use signerd_tests::notary::{parse_key_list, parse_target_list};
use signerd_tests::shim::{
    run_tool, run_tool_ok, shim_module, AdminSignerd, YkcsLink, NOTARY_SO_PIN, NOTARY_USER_PIN,
    YKCS11_LINK,
};
use signerd_tests::signerd::{signerd_bin, TestToken, TEST_PIN, TEST_TOKEN_LABEL};
use signerd_tests::{NotaryClient, NotaryServer, TestDir, TestPki};

/// The libp11 OpenSSL engine of Debian's `libengine-pkcs11-openssl`.
const LIBP11_ENGINE: &str = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so";
/// SoftHSM's module, to look into the token behind signerd's back.
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A signerd with its admin socket on a fresh token, and the shim pointed at it. Fields drop in
/// order: signerd first, the folder last.
struct Setup {
    admin: AdminSignerd,
    token: TestToken,
    module: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    work: PathBuf,
    pki: TestPki,
    dir: TestDir,
}

impl Setup {
    /// The shim loaded into this test process with its environment, initialized, and its one
    /// slot.
    fn load_shim(&self) -> (Pkcs11, cryptoki::slot::Slot) {
        for (k, v) in &self.env {
            std::env::set_var(k, v);
        }
        let pkcs11 = Pkcs11::new(&self.module).expect("load the shim");
        pkcs11
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("C_Initialize");
        let slot = pkcs11.get_slots_with_token().expect("slots")[0];
        (pkcs11, slot)
    }
}

fn setup(name: &str) -> io::Result<Setup> {
    let dir = TestDir::new(name)?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let token = TestToken::create(&dir.subdir("token")?)?;
    let admin = AdminSignerd::start(&dir.subdir("signerd")?, &token, &pki)?;
    let log = dir.path().join("shim.log");
    let env = admin.shim_env(&log);
    Ok(Setup {
        admin,
        token,
        module: shim_module(),
        env,
        log,
        work: dir.subdir("work")?,
        pki,
        dir,
    })
}

impl Setup {
    /// `pkcs11-tool --module <shim> <args>` with the shim's environment.
    fn tool(&self, args: &[&str]) -> String {
        let mut all = vec!["--module", self.module.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        run_tool_ok("pkcs11-tool", &all, &self.env)
    }

    /// The same, logged in as the user.
    fn tool_login(&self, args: &[&str]) -> String {
        let mut all = vec!["--login", "--pin", NOTARY_USER_PIN];
        all.extend_from_slice(args);
        self.tool(&all)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    fn path(&self, name: &str) -> String {
        self.file(name).display().to_string()
    }

    /// The public key with `CKA_ID` `id`, as a PEM file, read through the shim.
    fn public_pem(&self, id: &str) -> String {
        let raw = self.path(&format!("pub-{id}.raw"));
        self.tool(&["--read-object", "--type", "pubkey", "--id", id, "-o", &raw]);
        let pem = self.path(&format!("pub-{id}.pem"));
        // pkcs11-tool writes DER for EC and RSA keys, PEM for Ed25519 ones.
        let text = std::fs::read(&raw).unwrap_or_default();
        if text.starts_with(b"-----BEGIN") {
            std::fs::copy(&raw, &pem).expect("copy PEM");
        } else {
            run_tool_ok(
                "openssl",
                &[
                    "pkey", "-pubin", "-inform", "DER", "-in", &raw, "-out", &pem,
                ],
                &[],
            );
        }
        pem
    }

    /// `signerd key list --json` over the admin socket.
    fn signerd_keys(&self) -> Vec<serde_json::Value> {
        let socket = self.admin.socket.display().to_string();
        let out = run_tool_ok(
            signerd_bin().to_str().expect("UTF-8 path"),
            &["key", "list", "--json", "--socket", &socket],
            &[],
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("signerd key list --json: {e}\n{out}"))
    }

    /// The token's objects as SoftHSM itself lists them (signerd is not asked).
    fn softhsm_objects(&self) -> String {
        let conf = self.token.softhsm.conf().display().to_string();
        run_tool_ok(
            "pkcs11-tool",
            &[
                "--module",
                SOFTHSM_MODULE,
                "--token-label",
                TEST_TOKEN_LABEL,
                "--login",
                "--pin",
                TEST_PIN,
                "-O",
            ],
            &[("SOFTHSM2_CONF".into(), conf)],
        )
    }

    fn shim_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn openssl_verifies(args: &[&str]) {
    let out = run_tool_ok("openssl", args, &[]);
    assert!(
        out.contains("Verified OK") || out.contains("Signature Verified Successfully"),
        "openssl {args:?}: {out}"
    );
}

mod notary_cli;
mod openssl;
mod pkcs11_tool;
mod public_keys;
mod python_suite;
mod restart;
mod session_keys;
mod trusted_socket;
