//! A client's logged-in sessions across a signerd restart.

use super::*;

/// ECDSA over SHA-256 of `data` through `session`, checked against the key's public point.
fn sign_and_check(session: &Session, private: ObjectHandle, public: ObjectHandle, data: &[u8]) {
    let digest = Sha256::digest(data);
    let signature = session
        .sign(&Mechanism::Ecdsa, private, &digest)
        .expect("C_Sign");
    let point = match session
        .get_attributes(public, &[AttributeType::EcPoint])
        .expect("EC point")
        .pop()
    {
        Some(Attribute::EcPoint(p)) => p,
        other => panic!("no EC point: {other:?}"),
    };
    // DER OCTET STRING (04 41) around the uncompressed point.
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point[2..]).expect("P-256 point");
    let signature = p256::ecdsa::Signature::from_slice(&signature).expect("r||s");
    key.verify_prehash(&digest, &signature)
        .expect("the signature verifies");
}

/// A client holds logged-in sessions while signerd stops and comes back: signing fails with
/// CKR_DEVICE_ERROR while it is down, and the same sessions, login and key handles sign again
/// once it is back, with no new C_Login.
#[test]
fn sessions_and_login_survive_a_signerd_restart() -> io::Result<()> {
    let mut s = setup("shim-restart")?;
    let (pkcs11, slot) = s.load_shim();
    let session = pkcs11.open_rw_session(slot).expect("RW session");
    let reader = pkcs11.open_ro_session(slot).expect("RO session");
    session
        .login(UserType::User, Some(&AuthPin::new(NOTARY_USER_PIN.into())))
        .expect("C_Login");
    let p256_oid = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let (public, private) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(p256_oid),
                Attribute::Token(true),
                Attribute::Id(vec![0x42]),
                Attribute::Label(b"restart".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Id(vec![0x42]),
                Attribute::Label(b"restart".to_vec()),
                Attribute::Sign(true),
            ],
        )
        .expect("C_GenerateKeyPair");
    sign_and_check(&session, private, public, b"before the restart");

    s.admin.signerd.stop()?;
    match session.sign(&Mechanism::Ecdsa, private, &[7u8; 32]) {
        Err(CkError::Pkcs11(RvError::DeviceError, _)) => {}
        other => panic!("signing while signerd is down should give CKR_DEVICE_ERROR: {other:?}"),
    }
    session
        .get_session_info()
        .expect("the session is the shim's own");
    let log = s.shim_log();
    assert!(
        log.contains("cannot reach signerd"),
        "the log must say why:\n{log}"
    );

    s.admin.signerd.restart()?;
    s.admin.wait_socket()?;
    sign_and_check(&session, private, public, b"after the restart");
    sign_and_check(
        &reader,
        private,
        public,
        b"in the other session, same login",
    );

    // A crash (SIGKILL) leaves a stale socket file; signerd replaces it and the shim goes on.
    s.admin.signerd.process().kill_hard()?;
    s.admin.signerd.restart()?;
    s.admin.wait_socket()?;
    sign_and_check(&session, private, public, b"after a crash");
    pkcs11.finalize().expect("C_Finalize");
    let _ = (&s.pki, &s.dir);
    Ok(())
}
