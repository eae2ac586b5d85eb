//! The key index (issue 10): signerd reads every key's handle and public key once when it
//! connects to the token, and keeps the index current with what happens behind its back on the
//! same token (another replica, or an operator with a PKCS#11 tool): a key made there is found
//! on its first use, and a key deleted there answers NOT_FOUND, for Sign and GetKeyInfo alike.
//!
//! The keys behind signerd's back are made and deleted with cryptoki in the test process, as
//! any other PKCS#11 application on the token would.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use der::Decode as _;
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::EncodePublicKey as _;
use signerd_proto::notary::{CreateKeyRequest, KeyId as KeyIdMsg, SignatureRequest};
use signerd_tests::signerd::{Clients, Signerd, TestToken, TEST_PIN};
use signerd_tests::{TestDir, TestPki};
use signerd_token::softhsm::SOFTHSM_MODULE;
use signerd_token::{KeyAlgorithm, KeyId};
use tonic::Code;

/// DER of the P-256 curve OID, as `CKA_EC_PARAMS` takes it.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The token through cryptoki in this process, logged in; finalized before returning.
fn with_token<T>(token: &TestToken, f: impl FnOnce(&Session) -> T) -> T {
    // One process per test (nextest): this variable is the test's own.
    std::env::set_var("SOFTHSM2_CONF", token.softhsm.conf());
    let module = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    module
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = module.get_slots_with_token().unwrap()[0];
    let session = module.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::from(TEST_PIN.to_owned())))
        .unwrap();
    let out = f(&session);
    drop(session);
    module.finalize().unwrap();
    out
}

/// Makes a P-256 key pair named as signerd names its keys (`CKA_ID` = TUF key ID, label
/// `notary:timestamp@gun`), as another replica would; returns its ID and public key.
fn make_key_behind_signerds_back(session: &Session, gun: &str) -> (KeyId, p256::PublicKey) {
    let temporary = Attribute::Id(b"made-by-the-test".to_vec());
    let label = Attribute::Label(format!("notary:timestamp@example.com/{gun}").into_bytes());
    let public_template = [
        Attribute::Token(true),
        Attribute::Verify(true),
        Attribute::EcParams(P256_PARAMS.to_vec()),
        temporary.clone(),
        label.clone(),
    ];
    let private_template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        temporary,
        label,
    ];
    let (public, private) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &public_template,
            &private_template,
        )
        .unwrap();
    let point = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .unwrap()
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .unwrap();
    let point = der::asn1::OctetString::from_der(&point).unwrap();
    let key = p256::PublicKey::from_sec1_bytes(point.as_bytes()).unwrap();
    let spki = key.to_public_key_der().unwrap();
    let id = KeyId::of_public_key(KeyAlgorithm::Ecdsa, spki.as_bytes());
    for handle in [public, private] {
        session
            .update_attributes(handle, &[Attribute::Id(id.as_bytes().to_vec())])
            .unwrap();
    }
    (id, key)
}

/// Destroys both halves of key `id`, as another replica's DeleteKey would.
fn delete_key_behind_signerds_back(session: &Session, id: &KeyId) {
    let objects = session
        .find_objects(&[Attribute::Id(id.as_bytes().to_vec())])
        .unwrap();
    assert_eq!(objects.len(), 2, "both halves of {id}");
    for object in objects {
        session.destroy_object(object).unwrap();
    }
}

/// Signs `content` with key `id`: the signature, or the status code.
async fn sign(clients: &Clients, id: &KeyId, content: &[u8]) -> Result<Vec<u8>, Code> {
    clients
        .signer
        .clone()
        .sign(SignatureRequest {
            key_id: Some(KeyIdMsg { id: id.to_string() }),
            content: content.to_vec(),
        })
        .await
        .map(|r| r.into_inner().content)
        .map_err(|s| s.code())
}

/// GetKeyInfo for key `id`: the public key, or the status code.
async fn key_info(clients: &Clients, id: &KeyId) -> Result<Vec<u8>, Code> {
    clients
        .keys
        .clone()
        .get_key_info(KeyIdMsg { id: id.to_string() })
        .await
        .map(|r| r.into_inner().public_key)
        .map_err(|s| s.code())
}

fn verifies(key: &p256::PublicKey, content: &[u8], signature: &[u8]) -> bool {
    let signature = p256::ecdsa::Signature::from_slice(signature).unwrap();
    p256::ecdsa::VerifyingKey::from(key)
        .verify(content, &signature)
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_made_and_deleted_behind_signerds_back_are_seen_at_once() {
    let dir = TestDir::new("key-index").unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    // Two keys in the token before signerd starts: both go into the index at connect.
    let (early, early_key) = with_token(&token, |s| make_key_behind_signerds_back(s, "early"));
    let (gone, _) = with_token(&token, |s| make_key_behind_signerds_back(s, "gone"));
    let mut signerd = Signerd::start(dir.path(), "signerd", &token, &pki).unwrap();
    let clients = signerd.clients().await;
    assert_eq!(
        key_info(&clients, &early).await.as_deref(),
        Ok(early_key.to_public_key_der().unwrap().as_bytes())
    );
    let logs = signerd.logs();
    assert!(
        logs.contains("key index read") && logs.contains("keys=2"),
        "{logs}"
    );

    // A key made on the token while signerd runs: found on its first Sign.
    let (late, late_key) = with_token(&token, |s| make_key_behind_signerds_back(s, "late"));
    let signature = sign(&clients, &late, b"first use").await.unwrap();
    assert!(verifies(&late_key, b"first use", &signature));
    let signature = sign(&clients, &early, b"indexed").await.unwrap();
    assert!(verifies(&early_key, b"indexed", &signature));

    // Keys deleted on the token: NOT_FOUND at once, whether signerd signed with them already
    // (`early`) or only indexed them (`gone`), for Sign and GetKeyInfo.
    with_token(&token, |s| {
        delete_key_behind_signerds_back(s, &early);
        delete_key_behind_signerds_back(s, &gone);
    });
    assert_eq!(sign(&clients, &early, b"x").await, Err(Code::NotFound));
    assert_eq!(key_info(&clients, &early).await, Err(Code::NotFound));
    assert_eq!(key_info(&clients, &gone).await, Err(Code::NotFound));
    assert_eq!(sign(&clients, &gone, b"x").await, Err(Code::NotFound));

    // The rest of the index is untouched by those misses; signerd's own keys come and go too.
    let signature = sign(&clients, &late, b"still here").await.unwrap();
    assert!(verifies(&late_key, b"still here", &signature));
    let created = clients
        .keys
        .clone()
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "example.com/index".into(),
            role: "snapshot".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let own_id = created.key_info.unwrap().key_id.unwrap().id;
    let own = KeyId::from_cka_id(&hex::decode(own_id).unwrap()).unwrap();
    let own_key: p256::PublicKey =
        p256::pkcs8::DecodePublicKey::from_public_key_der(&created.public_key).unwrap();
    let signature = sign(&clients, &own, b"own").await.unwrap();
    assert!(verifies(&own_key, b"own", &signature));
    let deleted = clients
        .keys
        .clone()
        .delete_key(KeyIdMsg {
            id: own.to_string(),
        })
        .await;
    assert!(deleted.is_ok(), "{deleted:?}");
    assert_eq!(sign(&clients, &own, b"x").await, Err(Code::NotFound));

    // A restart indexes what is there now: `late` only.
    signerd.restart().unwrap();
    let clients = signerd.clients().await;
    let signature = sign(&clients, &late, b"after restart").await.unwrap();
    assert!(verifies(&late_key, b"after restart", &signature));
    assert!(signerd.logs().contains("keys=1"), "{}", signerd.logs());
}
