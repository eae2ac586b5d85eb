//! TUF beyond Notary: python-tuf makes a repository whose root, targets, snapshot and timestamp
//! metadata securesystemslib's `HSMSigner` signs through the shim with keys in signerd's token,
//! and python-tuf's own verifier (`verify_delegate`, then a client `Updater`) accepts it. The
//! keys are made and the script run exactly as docs/tuf.md gives them.

use std::io;
use std::path::Path;
use std::process::Command;

use signerd_tests::process::output_with_timeout;
use signerd_tests::python::Venv;
use signerd_tests::shim::{run_tool_ok, shim_module, AdminSignerd, NOTARY_USER_PIN};
use signerd_tests::signerd::TestToken;
use signerd_tests::{TestDir, TestPki};

/// The guide the commands and the script come from.
const GUIDE: &str = include_str!("../../../docs/tuf.md");
/// What docs/tuf.md installs, pinned.
const REQUIREMENTS: &[&str] = &[
    "tuf==7.0.1",
    "securesystemslib[hsm]==1.6.0",
    "python-pkcs11==0.10.1",
];

/// The body of the guide's only ```` ```python ```` block.
fn guide_script() -> String {
    let start = GUIDE
        .find("```python\n")
        .expect("docs/tuf.md has a python block")
        + "```python\n".len();
    let len = GUIDE[start..]
        .find("\n```\n")
        .expect("the python block is closed");
    GUIDE[start..start + len + 1].to_owned()
}

#[test]
fn hsmsigner_signs_a_tuf_repository_through_the_shim_and_python_tuf_accepts_it() -> io::Result<()> {
    // The guide installs what this test installs.
    for r in REQUIREMENTS {
        assert!(
            GUIDE.contains(&format!("'{r}'")),
            "docs/tuf.md does not install {r}"
        );
    }
    let venv = Venv::cached(
        REQUIREMENTS,
        "tuf.ngclient, securesystemslib.signer, pkcs11",
    )?;

    let dir = TestDir::new("tuf-python")?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let token = TestToken::create(&dir.subdir("token")?)?;
    let admin = AdminSignerd::start(&dir.subdir("signerd")?, &token, &pki)?;
    let work = dir.subdir("work")?;
    let module = shim_module().display().to_string();
    let mut env = admin.shim_env(&dir.path().join("shim.log"));
    env.push(("PYKCS11LIB".into(), module.clone()));
    env.push(("TUF_PIN".into(), NOTARY_USER_PIN.into()));

    // docs/tuf.md "Keys": three P-256 key pairs made through the shim, CKA_ID 01..03.
    assert!(
        GUIDE.contains("--keypairgen --key-type EC:prime256v1 --id \"$id\" --label \"tuf-$id\"")
    );
    for id in ["01", "02", "03"] {
        let label = format!("tuf-{id}");
        run_tool_ok(
            "pkcs11-tool",
            &[
                "--module",
                &module,
                "--login",
                "--pin",
                NOTARY_USER_PIN,
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--id",
                id,
                "--label",
                &label,
            ],
            &env,
        );
    }

    // docs/tuf.md "The repository": the script, as the guide has it.
    let script = work.join("make_repo.py");
    std::fs::write(&script, guide_script())?;
    let repo = work.join("repo");
    let mut command = Command::new(venv.python());
    command
        .arg(&script)
        .arg(&repo)
        .current_dir(&work)
        .envs(env.iter().map(|(k, v)| (k, v)));
    let out = output_with_timeout(
        command,
        None,
        &work.join("make_repo"),
        std::time::Duration::from_secs(300),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let shown = format!(
        "{}\nstdout:\n{stdout}\nstderr:\n{}\nsignerd:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        admin.signerd.logs()
    );
    assert!(out.status.success(), "{shown}");
    for role in ["root", "targets", "snapshot", "timestamp"] {
        assert!(
            stdout.contains(&format!("{role}.json signed and verified")),
            "{shown}"
        );
    }
    assert!(stdout.contains("changed targets.json refused"), "{shown}");
    assert!(
        stdout.contains("Updater verified hello.txt: signed with a key in signerd's token"),
        "{shown}"
    );

    // What the client trusts is what is in signerd's token: the keys in root.json are the
    // token's public keys, and signerd made each signature.
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("metadata").join("root.json"))?)?;
    let keys = root["signed"]["keys"].as_object().expect("root keys");
    assert_eq!(keys.len(), 3, "{root}");
    for id in ["01", "02", "03"] {
        let pem = public_pem(&module, &env, id, &work)?;
        assert!(
            keys.values()
                .any(|k| k["keyval"]["public"].as_str().map(str::trim) == Some(pem.trim())),
            "the token's key {id} is not in root.json:\n{pem}\n{root}"
        );
    }
    let logs = admin.signerd.logs();
    for (id, label) in [("01", "tuf-01"), ("02", "tuf-02"), ("03", "tuf-03")] {
        assert!(
            logs.lines().any(|l| l.contains("method=\"Sign\"")
                && l.contains(&format!("key_id=\"{id}\""))
                && l.contains(label)
                && l.contains("CKM_ECDSA")
                && l.contains("outcome=\"ok\"")),
            "signerd did not sign with {label}:\n{logs}"
        );
    }
    Ok(())
}

/// The public key with `CKA_ID` `id`, read through the shim, as the PEM securesystemslib
/// writes into TUF metadata.
fn public_pem(module: &str, env: &[(String, String)], id: &str, work: &Path) -> io::Result<String> {
    let der = work.join(format!("pub-{id}.der"));
    let der_path = der.display().to_string();
    run_tool_ok(
        "pkcs11-tool",
        &[
            "--module",
            module,
            "--read-object",
            "--type",
            "pubkey",
            "--id",
            id,
            "-o",
            &der_path,
        ],
        env,
    );
    Ok(run_tool_ok(
        "openssl",
        &["pkey", "-pubin", "-inform", "DER", "-in", &der_path],
        &[],
    ))
}
