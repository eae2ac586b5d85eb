//! Session key pairs (`CKA_TOKEN` false) through the shim: made in signerd's token, usable by
//! the session's process only, and gone with the session, with a shim process killed without
//! a goodbye, and across a signerd restart. Where they are is checked with SoftHSM itself.

use std::process::Command;
use std::time::{Duration, Instant};

use signerd_tests::process::ChildGuard;
use signerd_tests::python::{Venv, PYTHON_PKCS11};

use super::*;

/// How long signerd may take to destroy the keys of a closed connection or a dead signerd:
/// a bound for waiting, not a measured time.
const GONE_WITHIN: Duration = Duration::from_secs(30);

/// How every session key's label starts in the token.
const SESSION_MARK: &str = "signerd-session:";

impl Setup {
    /// Labels of the session key objects in the token, as SoftHSM lists them.
    fn session_objects_in_token(&self) -> Vec<String> {
        self.softhsm_objects()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("label:"))
            .map(|l| l.trim().to_owned())
            .filter(|l| l.starts_with(SESSION_MARK))
            .collect()
    }

    /// Waits until the token holds no session key object; fails with what is left.
    fn wait_no_session_objects(&self, after: &str) {
        let deadline = Instant::now() + GONE_WITHIN;
        loop {
            let left = self.session_objects_in_token();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "session keys still in the token after {after}: {left:?}\n{}",
                self.admin.signerd.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What other clients see: `signerd key list` and another process through the shim.
    fn assert_hidden_from_others(&self, label: &str) {
        let keys = self.signerd_keys();
        assert!(
            !serde_json::to_string(&keys).unwrap().contains(label),
            "signerd key list shows the session key: {keys:?}"
        );
        let listed = self.tool_login(&["-O"]);
        assert!(
            !listed.contains(label) && !listed.contains(SESSION_MARK),
            "another client sees the session key:\n{listed}"
        );
    }
}

fn p256_template(id: u8, label: &str) -> (Vec<Attribute>, Vec<Attribute>) {
    let p256_oid = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let common = vec![
        Attribute::Token(false),
        Attribute::Id(vec![id]),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let mut public = common.clone();
    public.push(Attribute::EcParams(p256_oid));
    let mut private = common;
    private.push(Attribute::Sign(true));
    (public, private)
}

/// A session key pair made in a read-only session signs and verifies, shows as a session
/// object with the client's CKA_ID and label, is hidden from every other client, and goes with
/// C_CloseSession; another goes with C_Finalize (the connection closing); one made before a
/// signerd restart is gone after it and signs no more.
#[test]
fn session_key_pairs_live_and_die_with_their_session() -> io::Result<()> {
    let mut s = setup("shim-session-keys")?;
    let (pkcs11, slot) = s.load_shim();
    let session = pkcs11.open_ro_session(slot).expect("RO session");
    session
        .login(UserType::User, Some(&AuthPin::new(NOTARY_USER_PIN.into())))
        .expect("C_Login");
    let (public_t, private_t) = p256_template(0x51, "session-key");
    let (public, private) = session
        .generate_key_pair(&Mechanism::EccKeyPairGen, &public_t, &private_t)
        .expect("a session key pair in a read-only session");

    let digest = Sha256::digest(b"signed with a session key");
    let signature = session
        .sign(&Mechanism::Ecdsa, private, &digest)
        .expect("C_Sign");
    session
        .verify(&Mechanism::Ecdsa, public, &digest, &signature)
        .expect("C_Verify with its public half");
    let attrs = session
        .get_attributes(
            private,
            &[
                AttributeType::Token,
                AttributeType::Id,
                AttributeType::Label,
            ],
        )
        .expect("attributes");
    assert_eq!(
        attrs,
        vec![
            Attribute::Token(false),
            Attribute::Id(vec![0x51]),
            Attribute::Label(b"session-key".to_vec())
        ]
    );
    let found = session
        .find_objects(&[Attribute::Token(false), Attribute::Id(vec![0x51])])
        .expect("find");
    assert_eq!(found.len(), 2, "both halves are found as session objects");

    let in_token = s.session_objects_in_token();
    assert_eq!(
        in_token.len(),
        2,
        "both halves are in signerd's token: {in_token:?}"
    );
    assert!(in_token.iter().all(|l| l.ends_with(":session-key")));
    s.assert_hidden_from_others("session-key");

    session.close().expect("C_CloseSession");
    s.wait_no_session_objects("C_CloseSession");

    // Across a signerd restart: the pair goes, and its handle signs no more.
    let survivor = pkcs11.open_rw_session(slot).expect("RW session");
    survivor
        .login(UserType::User, Some(&AuthPin::new(NOTARY_USER_PIN.into())))
        .expect("C_Login");
    let (public_t, private_t) = p256_template(0x52, "before-restart");
    let (_, private) = survivor
        .generate_key_pair(&Mechanism::EccKeyPairGen, &public_t, &private_t)
        .expect("C_GenerateKeyPair");
    assert_eq!(s.session_objects_in_token().len(), 2);
    s.admin.signerd.process().kill_hard()?;
    assert_eq!(
        s.session_objects_in_token().len(),
        2,
        "a killed signerd leaves them behind"
    );
    s.admin.signerd.restart()?;
    s.admin.wait_socket()?;
    s.wait_no_session_objects("a signerd restart");
    assert!(
        survivor.sign(&Mechanism::Ecdsa, private, &digest).is_err(),
        "a session key of signerd's previous run signs no more"
    );

    // C_Finalize closes the shim's connection: signerd destroys what it owned.
    let (public_t, private_t) = p256_template(0x53, "until-finalize");
    survivor
        .generate_key_pair(&Mechanism::EccKeyPairGen, &public_t, &private_t)
        .expect("C_GenerateKeyPair");
    assert_eq!(s.session_objects_in_token().len(), 2);
    std::mem::forget(survivor);
    pkcs11.finalize().expect("C_Finalize");
    s.wait_no_session_objects("C_Finalize");
    let _ = (&s.pki, &s.dir);
    Ok(())
}

/// The python-pkcs11 client a test kills: makes a session key pair (its default), says so,
/// and waits to be killed.
const HOLDER: &str = r#"
import os, sys, time
import pkcs11
from pkcs11 import KeyType
from pkcs11.util.ec import encode_named_curve_parameters
lib = pkcs11.lib(os.environ["PKCS11_MODULE"])
token = lib.get_token()
session = token.open(user_pin=os.environ["PIN"])
params = session.create_domain_parameters(
    KeyType.EC, {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
public, private = params.generate_keypair(label="held")
print("ready", flush=True)
time.sleep(600)
"#;

/// A shim process killed with SIGKILL never closes its session: signerd destroys its session
/// key pair when the process's connection drops.
#[test]
fn a_killed_shim_process_leaves_no_session_keys() -> io::Result<()> {
    let s = setup("shim-session-killed")?;
    let venv = Venv::cached(&[PYTHON_PKCS11], "pkcs11")?;
    let mut command = Command::new(venv.python());
    command.args(["-c", HOLDER]);
    for (k, v) in &s.env {
        command.env(k, v);
    }
    command
        .env("PKCS11_MODULE", &s.module)
        .env("PIN", NOTARY_USER_PIN);
    let mut holder = ChildGuard::spawn("holder", command, s.dir.path())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(holder.stdout_log())
        .unwrap_or_default()
        .contains("ready")
    {
        if let Some(status) = holder.try_exit_status()? {
            panic!(
                "the python client ended ({status}) before making its key:\n{}",
                std::fs::read_to_string(holder.stderr_log()).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the python client never got ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let in_token = s.session_objects_in_token();
    assert_eq!(in_token.len(), 2, "the held pair: {in_token:?}");
    s.assert_hidden_from_others("held");
    holder.kill_hard()?;
    s.wait_no_session_objects("the client's SIGKILL");
    let _ = (&s.pki, &s.work);
    Ok(())
}
