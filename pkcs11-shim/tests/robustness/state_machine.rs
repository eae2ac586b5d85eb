//! The PKCS#11 state machine against a real signerd.

use super::*;

/// The PKCS#11 state machine against a real signerd: operations out of order, the size
/// conventions of `C_Sign` and `C_GetAttributeValue`, sensitive and unknown attributes, paging,
/// read-only sessions, logins, and a destroyed key.
#[test]
fn state_machine_and_size_conventions_with_signerd_up() {
    use signerd_tests::shim::{AdminSignerd, NOTARY_USER_PIN};
    use signerd_tests::signerd::TestToken;
    use signerd_tests::{TestDir, TestPki};

    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("shim-state-machine").unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let admin = AdminSignerd::start(&dir.subdir("signerd").unwrap(), &token, &pki).unwrap();
    for (k, v) in admin.shim_env(&dir.path().join("shim.log")) {
        std::env::set_var(k, v);
    }
    std::env::remove_var("SIGNERD_SHIM_TIMEOUT_SECS");
    let m = Module::load();
    let f = m.list;
    let pin = NOTARY_USER_PIN.as_bytes();
    let rw = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    // SAFETY: every pointer passed below is null or points to a live local of the right size.
    unsafe {
        assert_eq!(f.C_Initialize.unwrap()(null_mut()), CKR_OK);
        let mut slots = [0 as CK_SLOT_ID; 4];
        let mut n: CK_ULONG = 4;
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_TRUE, slots.as_mut_ptr(), &mut n),
            CKR_OK
        );
        assert_eq!(n, 1);
        let slot = slots[0];
        let mut rw_session: CK_SESSION_HANDLE = 0;
        let mut ro_session: CK_SESSION_HANDLE = 0;
        assert_eq!(
            f.C_OpenSession.unwrap()(slot, rw, null_mut(), None, &mut rw_session),
            CKR_OK
        );
        assert_eq!(
            f.C_OpenSession.unwrap()(slot, CKF_SERIAL_SESSION, null_mut(), None, &mut ro_session),
            CKR_OK
        );

        // Out of order and without login.
        let data = [5u8; 32];
        let mut sig = [0u8; 128];
        let mut sig_len: CK_ULONG = sig.len() as CK_ULONG;
        let sign = f.C_Sign.unwrap();
        assert_eq!(
            sign(
                rw_session,
                data.as_ptr() as *mut _,
                32,
                sig.as_mut_ptr(),
                &mut sig_len
            ),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(
            f.C_FindObjects.unwrap()(rw_session, null_mut(), 0, &mut n),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(
            f.C_FindObjectsFinal.unwrap()(rw_session),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(f.C_Logout.unwrap()(rw_session), CKR_USER_NOT_LOGGED_IN);
        let mut mech = CK_MECHANISM {
            mechanism: CKM_EC_KEY_PAIR_GEN,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let p256 = [0x06u8, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let id = [0x5au8];
        let yes: CK_BBOOL = CK_TRUE;
        let mut public_t = [
            attr_bytes(CKA_EC_PARAMS, &p256),
            attr_bytes(CKA_ID, &id),
            attr(CKA_TOKEN, &yes),
        ];
        let mut private_t = [
            attr_bytes(CKA_ID, &id),
            attr_bytes(CKA_LABEL, b"state"),
            attr(CKA_SIGN, &yes),
        ];
        let (mut public, mut private): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        let generate = f.C_GenerateKeyPair.unwrap();
        assert_eq!(
            generate(
                rw_session,
                &mut mech,
                public_t.as_mut_ptr(),
                3,
                private_t.as_mut_ptr(),
                3,
                &mut public,
                &mut private
            ),
            CKR_USER_NOT_LOGGED_IN
        );

        // Logins: a wrong PIN, the SO while a read-only session is open, then the user.
        let login = f.C_Login.unwrap();
        assert_eq!(
            login(rw_session, CKU_USER, b"000000".as_ptr() as *mut _, 6),
            CKR_PIN_INCORRECT
        );
        assert_eq!(
            login(rw_session, CKU_SO, b"x".as_ptr() as *mut _, 1),
            CKR_SESSION_READ_ONLY_EXISTS
        );
        assert_eq!(
            login(rw_session, 7, pin.as_ptr() as *mut _, 6),
            CKR_USER_TYPE_INVALID
        );
        assert_eq!(
            login(rw_session, CKU_USER, pin.as_ptr() as *mut _, 6),
            CKR_OK
        );
        assert_eq!(
            login(ro_session, CKU_USER, pin.as_ptr() as *mut _, 6),
            CKR_USER_ALREADY_LOGGED_IN
        );
        let mut info = CK_SESSION_INFO::default();
        assert_eq!(f.C_GetSessionInfo.unwrap()(ro_session, &mut info), CKR_OK);
        assert_eq!(
            info.state, CKS_RO_USER_FUNCTIONS,
            "login is per token, shared by sessions"
        );

        // Keys are made in read-write sessions only.
        assert_eq!(
            generate(
                ro_session,
                &mut mech,
                public_t.as_mut_ptr(),
                3,
                private_t.as_mut_ptr(),
                3,
                &mut public,
                &mut private
            ),
            CKR_SESSION_READ_ONLY
        );
        assert_eq!(
            generate(
                rw_session,
                &mut mech,
                public_t.as_mut_ptr(),
                3,
                private_t.as_mut_ptr(),
                3,
                &mut public,
                &mut private
            ),
            CKR_OK
        );

        // C_GetAttributeValue: lengths, short buffers, sensitive and unknown attributes.
        let mut point = [0u8; 8];
        let mut class: CK_OBJECT_CLASS = 0;
        let mut template = [
            CK_ATTRIBUTE {
                type_: CKA_EC_POINT,
                pValue: null_mut(),
                ulValueLen: 0,
            },
            attr_out(CKA_CLASS, &mut class),
        ];
        let get = f.C_GetAttributeValue.unwrap();
        assert_eq!(get(rw_session, public, template.as_mut_ptr(), 2), CKR_OK);
        assert_eq!(
            template[0].ulValueLen, 67,
            "DER OCTET STRING of a P-256 point"
        );
        assert_eq!(class, CKO_PUBLIC_KEY);
        template[0].pValue = point.as_mut_ptr() as *mut _;
        template[0].ulValueLen = point.len() as CK_ULONG;
        assert_eq!(
            get(rw_session, public, template.as_mut_ptr(), 2),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(template[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        let mut secret = [0u8; 64];
        let mut template = [
            attr_out(CKA_VALUE, &mut secret),
            CK_ATTRIBUTE {
                type_: 0x7fff_0001,
                pValue: null_mut(),
                ulValueLen: 0,
            },
            attr_out(CKA_CLASS, &mut class),
        ];
        assert_eq!(
            get(rw_session, private, template.as_mut_ptr(), 3),
            CKR_ATTRIBUTE_SENSITIVE
        );
        assert_eq!(template[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(template[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(
            class, CKO_PRIVATE_KEY,
            "the readable attribute is still answered"
        );

        // Searches page through a snapshot; a second init is refused until Final.
        let class_private: CK_OBJECT_CLASS = CKO_PRIVATE_KEY;
        let mut find_t = [attr_bytes(CKA_ID, &id)];
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(ro_session, find_t.as_mut_ptr(), 1),
            CKR_OK
        );
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(ro_session, find_t.as_mut_ptr(), 1),
            CKR_OPERATION_ACTIVE
        );
        let mut page = [0 as CK_OBJECT_HANDLE; 1];
        let mut seen = Vec::new();
        loop {
            assert_eq!(
                f.C_FindObjects.unwrap()(ro_session, page.as_mut_ptr(), 1, &mut n),
                CKR_OK
            );
            if n == 0 {
                break;
            }
            seen.push(page[0]);
        }
        seen.sort();
        let mut expected = vec![public, private];
        expected.sort();
        assert_eq!(seen, expected, "both halves, one per call");
        assert_eq!(f.C_FindObjectsFinal.unwrap()(ro_session), CKR_OK);
        let mut find_t = [attr(CKA_CLASS, &class_private), attr_bytes(CKA_ID, &id)];
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(rw_session, find_t.as_mut_ptr(), 2),
            CKR_OK
        );
        let mut found = [0 as CK_OBJECT_HANDLE; 4];
        assert_eq!(
            f.C_FindObjects.unwrap()(rw_session, found.as_mut_ptr(), 4, &mut n),
            CKR_OK
        );
        assert_eq!(
            (n, found[0]),
            (1, private),
            "the handle is stable per object"
        );
        assert_eq!(f.C_FindObjectsFinal.unwrap()(rw_session), CKR_OK);

        // C_Sign: wrong key and mechanism, length query, short buffer, then the signature.
        let mut ecdsa = CK_MECHANISM {
            mechanism: CKM_ECDSA,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let mut eddsa = CK_MECHANISM {
            mechanism: CKM_EDDSA,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let sign_init = f.C_SignInit.unwrap();
        assert_eq!(
            sign_init(rw_session, &mut ecdsa, public),
            CKR_KEY_HANDLE_INVALID
        );
        assert_eq!(
            sign_init(rw_session, &mut eddsa, private),
            CKR_KEY_TYPE_INCONSISTENT
        );
        assert_eq!(
            sign_init(rw_session, &mut ecdsa, 999_999),
            CKR_KEY_HANDLE_INVALID
        );
        assert_eq!(sign_init(rw_session, &mut ecdsa, private), CKR_OK);
        assert_eq!(
            sign_init(rw_session, &mut ecdsa, private),
            CKR_OPERATION_ACTIVE
        );
        let mut len: CK_ULONG = 0;
        assert_eq!(
            sign(
                rw_session,
                data.as_ptr() as *mut _,
                32,
                null_mut(),
                &mut len
            ),
            CKR_OK
        );
        assert_eq!(len, 64);
        let mut short = [0u8; 10];
        let mut short_len: CK_ULONG = 10;
        assert_eq!(
            sign(
                rw_session,
                data.as_ptr() as *mut _,
                32,
                short.as_mut_ptr(),
                &mut short_len
            ),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(short_len, 64);
        sig_len = sig.len() as CK_ULONG;
        assert_eq!(
            sign(
                rw_session,
                data.as_ptr() as *mut _,
                32,
                sig.as_mut_ptr(),
                &mut sig_len
            ),
            CKR_OK
        );
        assert_eq!(sig_len, 64);
        assert_eq!(
            sign(
                rw_session,
                data.as_ptr() as *mut _,
                32,
                sig.as_mut_ptr(),
                &mut sig_len
            ),
            CKR_OPERATION_NOT_INITIALIZED,
            "the operation ended with the signature"
        );

        // Multi-part ECDSA-SHA256 (hashed in the shim), finished by C_SignFinal only.
        let mut ecdsa_sha256 = CK_MECHANISM {
            mechanism: CKM_ECDSA_SHA256,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(sign_init(ro_session, &mut ecdsa_sha256, private), CKR_OK);
        assert_eq!(
            f.C_SignUpdate.unwrap()(ro_session, b"hello ".as_ptr() as *mut _, 6),
            CKR_OK
        );
        assert_eq!(
            f.C_SignUpdate.unwrap()(ro_session, b"world".as_ptr() as *mut _, 5),
            CKR_OK
        );
        assert_eq!(
            sign(
                ro_session,
                data.as_ptr() as *mut _,
                32,
                sig.as_mut_ptr(),
                &mut sig_len
            ),
            CKR_OPERATION_ACTIVE
        );
        assert_eq!(
            f.C_SignFinal.unwrap()(ro_session, null_mut(), &mut len),
            CKR_OK
        );
        assert_eq!(len, 64);
        sig_len = sig.len() as CK_ULONG;
        assert_eq!(
            f.C_SignFinal.unwrap()(ro_session, sig.as_mut_ptr(), &mut sig_len),
            CKR_OK
        );
        assert_eq!(sig_len, 64);

        // After logout, private keys are out of reach.
        assert_eq!(f.C_Logout.unwrap()(ro_session), CKR_OK);
        assert_eq!(
            sign_init(rw_session, &mut ecdsa, private),
            CKR_USER_NOT_LOGGED_IN
        );
        assert_eq!(
            get(rw_session, private, template.as_mut_ptr(), 1),
            CKR_USER_NOT_LOGGED_IN
        );

        // Destroyed objects are gone for good.
        assert_eq!(
            login(rw_session, CKU_USER, pin.as_ptr() as *mut _, 6),
            CKR_OK
        );
        assert_eq!(
            f.C_DestroyObject.unwrap()(ro_session, private),
            CKR_SESSION_READ_ONLY
        );
        assert_eq!(f.C_DestroyObject.unwrap()(rw_session, private), CKR_OK);
        assert_eq!(
            get(rw_session, private, template.as_mut_ptr(), 1),
            CKR_OBJECT_HANDLE_INVALID
        );
        assert_eq!(
            f.C_DestroyObject.unwrap()(rw_session, private),
            CKR_OBJECT_HANDLE_INVALID
        );

        // Closing the last session logs out.
        assert_eq!(f.C_CloseSession.unwrap()(rw_session), CKR_OK);
        assert_eq!(
            f.C_CloseSession.unwrap()(rw_session),
            CKR_SESSION_HANDLE_INVALID
        );
        assert_eq!(f.C_CloseSession.unwrap()(ro_session), CKR_OK);
        assert_eq!(
            f.C_OpenSession.unwrap()(slot, rw, null_mut(), None, &mut rw_session),
            CKR_OK
        );
        assert_eq!(f.C_GetSessionInfo.unwrap()(rw_session, &mut info), CKR_OK);
        assert_eq!(info.state, CKS_RW_PUBLIC_SESSION);
        assert_eq!(f.C_Finalize.unwrap()(null_mut()), CKR_OK);
    }
    drop(admin);
}
