//! python-pkcs11's own test suite through the shim, as `scripts/pkcs11-suite.sh` runs it
//! (about 30 seconds once its venv is made): every in-scope test that passes against SoftHSM
//! directly passes through the shim.

use std::process::Command;

use super::*;

#[test]
fn python_pkcs11_suite_passes_through_the_shim_as_on_softhsm() -> io::Result<()> {
    let dir = TestDir::new("pkcs11-suite")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace");
    let out = Command::new(root.join("scripts/pkcs11-suite.sh"))
        .env("TMPDIR", dir.path())
        .env("SIGNERD", signerd_bin())
        .env("SHIM", shim_module())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/pkcs11-suite.sh failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("every in-scope test that passes on SoftHSM passes through the shim"),
        "{stdout}"
    );
    Ok(())
}
