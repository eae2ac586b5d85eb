//! signerd replicas on one token behind HAProxy (the shipped `config/haproxy.cfg`, TCP mode, TLS
//! passed through), with the real notary-server in front: the whole lifecycle, the lifecycle
//! with the replica holding notary-server's connection killed mid-run, and any replica serving
//! any key. The token is the network-HSM stand-in (`p11-kit server`) or one SoftHSM folder.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::DecodePublicKey as _;
use signerd_proto::health::health_client::HealthClient;
use signerd_proto::notary::key_management_client::KeyManagementClient;
use signerd_proto::notary::signer_client::SignerClient;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use signerd_tests::haproxy::Haproxy;
use signerd_tests::p11kit::P11KitServer;
use signerd_tests::signerd::{Clients, Signerd, TestToken};
use signerd_tests::{Lifecycle, NotaryServer, TestDir, TestPki};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// How long HAProxy's checks (every second, two failures) get to mark a killed replica down.
const MARK_DOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// Replicas behind HAProxy behind notary-server. Fields drop in order: notary-server, HAProxy,
/// the replicas, the remote HSM, then the folder.
struct Fleet {
    server: Option<NotaryServer>,
    haproxy: Haproxy,
    replicas: Vec<Signerd>,
    hsm: Option<P11KitServer>,
    token: TestToken,
    pki: TestPki,
    dir: TestDir,
}

/// How the replicas reach the token.
#[derive(Clone, Copy)]
enum Shared {
    /// Through `p11-kit server` + `p11-kit-client.so`, one connection per replica.
    RemoteHsm,
    /// Each replica loads SoftHSM on the same token folder.
    SoftHsmFolder,
}

fn fleet(name: &str, replicas: usize, shared: Shared, notary: bool) -> io::Result<Fleet> {
    let dir = TestDir::new(name)?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let local = TestToken::create(&dir.subdir("token")?)?;
    let (hsm, token) = match shared {
        Shared::RemoteHsm => {
            let hsm = P11KitServer::start(&dir.subdir("hsm")?, &local)?;
            let remote = hsm.remote_token(&local)?;
            (Some(hsm), remote)
        }
        Shared::SoftHsmFolder => (None, local),
    };
    let replicas = (1..=replicas)
        .map(|i| {
            Signerd::start(
                &dir.subdir("replicas")?,
                &format!("signerd-{i}"),
                &token,
                &pki,
            )
        })
        .collect::<io::Result<Vec<_>>>()?;
    let addrs: Vec<SocketAddr> = replicas.iter().map(Signerd::addr).collect();
    let haproxy = Haproxy::start(&dir.subdir("haproxy")?, &addrs, &pki)?;
    for i in 1..=replicas.len() {
        haproxy.wait_status(&format!("signerd-{i}"), "UP", MARK_DOWN_TIMEOUT)?;
    }
    let server = if notary {
        Some(NotaryServer::start(
            &dir.subdir("server")?,
            &haproxy.endpoint(&pki),
            "ecdsa",
        )?)
    } else {
        None
    };
    Ok(Fleet {
        server,
        haproxy,
        replicas,
        hsm,
        token,
        pki,
        dir,
    })
}

impl Fleet {
    fn server(&self) -> &NotaryServer {
        self.server
            .as_ref()
            .expect("this fleet has a notary-server")
    }

    /// The replica holding notary-server's connection (its one HTTP/2 connection to the signer
    /// lands on one replica), by HAProxy's count of open sessions.
    fn active_replica(&self) -> usize {
        let servers = self.haproxy.servers().unwrap();
        let active: Vec<usize> = servers
            .iter()
            .filter(|s| s.current_sessions > 0)
            .map(|s| replica_index(&s.name))
            .collect();
        assert_eq!(
            active.len(),
            1,
            "notary-server's connection is on exactly one replica: {servers:?}"
        );
        active[0]
    }
}

/// `signerd-3` -> 2.
fn replica_index(name: &str) -> usize {
    name.strip_prefix("signerd-")
        .and_then(|n| n.parse::<usize>().ok())
        .map(|n| n - 1)
        .unwrap_or_else(|| panic!("unexpected server name {name}"))
}

/// The lines of a replica's log recording a successful Sign.
fn signs(logs: &str) -> usize {
    logs.lines()
        .filter(|l| l.contains("method=\"Sign\"") && l.contains("outcome=\"ok\""))
        .count()
}

#[test]
fn two_replicas_behind_haproxy_carry_the_whole_notary_lifecycle() -> io::Result<()> {
    let f = fleet("replicas-lifecycle", 2, Shared::RemoteHsm, true)?;
    let lifecycle = Lifecycle::new(
        &f.dir.subdir("clients")?,
        f.server(),
        "example.com/replicas/lifecycle",
    )?;
    lifecycle.run(f.server());
    assert_eq!(f.server().health_status(), 200);
    let signed: usize = f.replicas.iter().map(|r| signs(&r.logs())).sum();
    assert!(signed > 0, "the replicas signed for notary-server");
    assert!(f.hsm.is_some());
    Ok(())
}

#[test]
fn the_lifecycle_completes_when_the_replica_serving_notary_server_is_killed_mid_run(
) -> io::Result<()> {
    let mut f = fleet("replicas-kill", 2, Shared::RemoteHsm, true)?;
    let lifecycle = Lifecycle::new(
        &f.dir.subdir("clients")?,
        f.server(),
        "example.com/replicas/kill",
    )?;
    lifecycle.part1(f.server());

    let victim = f.active_replica();
    let survivor = 1 - victim;
    let victim_signs = signs(&f.replicas[victim].logs());
    assert!(victim_signs > 0, "the active replica signed in part 1");
    let survivor_signs_before = signs(&f.replicas[survivor].logs());
    f.replicas[victim].process().kill_hard()?;
    f.haproxy.wait_status(
        &format!("signerd-{}", victim + 1),
        "DOWN",
        MARK_DOWN_TIMEOUT,
    )?;

    // Every publish of part 2 (addhash, delegation, a delegate's add, timestamp rotation,
    // remove) goes through the survivor, with the keys part 1 made through the victim.
    lifecycle.part2(f.server());
    assert_eq!(f.server().health_status(), 200);
    assert!(
        signs(&f.replicas[survivor].logs()) > survivor_signs_before,
        "the surviving replica signed part 2"
    );
    assert_eq!(
        f.active_replica(),
        survivor,
        "notary-server reconnected through the survivor"
    );
    Ok(())
}

async fn create_ecdsa(c: &mut Clients, gun: &str) -> (String, Vec<u8>) {
    let created = c
        .keys
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: gun.into(),
            role: "snapshot".into(),
        })
        .await
        .expect("CreateKey")
        .into_inner();
    (
        created.key_info.unwrap().key_id.unwrap().id,
        created.public_key,
    )
}

/// Any replica serves any key: keys made through HAProxy, on whichever replica it picked, are
/// found and used by every replica, including keys made on the other replicas later.
///
/// SoftHSM shares a token folder between processes through a generation counter that a writer
/// bumps without re-reading the folder: a replica that creates a key when it has not looked
/// anything up since another replica's CreateKey stops seeing that replica's keys until someone
/// else writes again. A network HSM keeps one store; on SoftHSM (and on the p11-kit stand-in,
/// whose `p11-kit-remote` per connection is a SoftHSM of its own) the lookups between rounds
/// here are what keeps the replicas in step. README "Running replicas" says so.
#[tokio::test]
async fn any_replica_serves_any_key() {
    let f = fleet("replicas-any-key", 3, Shared::SoftHsmFolder, false).unwrap();
    let mut keys = Vec::new();
    // One connection through HAProxy, as one notary-server holds: one replica makes the keys.
    let mut first = clients_through(&f.haproxy, &f.pki).await;
    for i in 0..3 {
        keys.push(create_ecdsa(&mut first, &format!("example.com/first-{i}")).await);
    }
    every_replica_serves(&f, &keys).await;

    // Two more connections open at once: leastconn puts them on the two other replicas.
    let mut second = clients_through(&f.haproxy, &f.pki).await;
    let mut third = clients_through(&f.haproxy, &f.pki).await;
    let servers = f.haproxy.servers().unwrap();
    assert!(
        servers.iter().all(|s| s.current_sessions == 1),
        "one connection per replica: {servers:?}"
    );
    keys.push(create_ecdsa(&mut second, "example.com/second").await);
    every_replica_serves(&f, &keys).await;
    keys.push(create_ecdsa(&mut third, "example.com/third").await);
    every_replica_serves(&f, &keys).await;
    drop(f.token);
}

/// Every replica, called directly, knows every key in `keys` and signs with it.
async fn every_replica_serves(f: &Fleet, keys: &[(String, Vec<u8>)]) {
    for replica in &f.replicas {
        let mut c = replica.clients().await;
        for (id, public) in keys {
            let info = c
                .keys
                .get_key_info(KeyId { id: id.clone() })
                .await
                .unwrap_or_else(|e| panic!("{} does not know {id}: {e}", replica.addr()))
                .into_inner();
            assert_eq!(&info.public_key, public);
            let content = format!("{id} on {}", replica.addr()).into_bytes();
            let sig = c
                .signer
                .sign(SignatureRequest {
                    key_id: Some(KeyId { id: id.clone() }),
                    content: content.clone(),
                })
                .await
                .unwrap_or_else(|e| panic!("{} cannot sign with {id}: {e}", replica.addr()))
                .into_inner();
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(public).unwrap();
            vk.verify(
                &content,
                &p256::ecdsa::Signature::from_slice(&sig.content).unwrap(),
            )
            .expect("signature verifies");
        }
    }
}

/// Clients of the replicas through HAProxy, with notary-server's client certificate.
async fn clients_through(haproxy: &Haproxy, pki: &TestPki) -> Clients {
    let read = |p: &std::path::Path| std::fs::read(p).expect("PKI file readable");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(pki.ca.cert_path())))
        .domain_name("localhost")
        .identity(Identity::from_pem(
            read(&pki.client.cert),
            read(&pki.client.key),
        ));
    let channel = Channel::from_shared(format!("https://{}", haproxy.addr()))
        .expect("valid URI")
        .tls_config(tls)
        .expect("TLS config")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("mTLS to a replica through HAProxy");
    Clients {
        keys: KeyManagementClient::new(channel.clone()),
        signer: SignerClient::new(channel.clone()),
        health: HealthClient::new(channel),
    }
}

/// A replica SIGKILLed under load (32 signatures in flight over one connection through
/// HAProxy, as notary-server sends them): the calls it held fail with UNAVAILABLE, never with a
/// code that says something about the key, and the client's reconnect lands on the survivor,
/// which signs with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_through_haproxy_rides_over_a_replica_killed_under_load() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    const IN_FLIGHT: usize = 32;
    const RESUMED: u64 = 500;
    let mut f = fleet("replicas-under-load", 2, Shared::RemoteHsm, false).unwrap();
    let (id, public) = {
        let mut setup = clients_through(&f.haproxy, &f.pki).await;
        create_ecdsa(&mut setup, "example.com/under-load").await
    };
    every_replica_serves(&f, &[(id.clone(), public.clone())]).await;

    let client = clients_through(&f.haproxy, &f.pki).await;
    // HAProxy counts the set-up connection until it has seen it close.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let victim = loop {
        let servers = f.haproxy.servers().unwrap();
        let active: Vec<usize> = servers
            .iter()
            .filter(|s| s.current_sessions > 0)
            .map(|s| replica_index(&s.name))
            .collect();
        if active.len() == 1 {
            break active[0];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "one connection, one replica: {servers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let ok_after_kill = Arc::new(AtomicU64::new(0));
    let ok_before_kill = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<Vec<tonic::Status>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..IN_FLIGHT {
        let mut signer = client.signer.clone();
        let (stop, killed) = (Arc::clone(&stop), Arc::clone(&killed));
        let (before, after) = (Arc::clone(&ok_before_kill), Arc::clone(&ok_after_kill));
        let errors = Arc::clone(&errors);
        let (id, public) = (id.clone(), public.clone());
        workers.push(tokio::spawn(async move {
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&public).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let content = format!("worker {w} call {n}").into_bytes();
                let was_killed = killed.load(Ordering::SeqCst);
                match signer
                    .sign(SignatureRequest {
                        key_id: Some(KeyId { id: id.clone() }),
                        content: content.clone(),
                    })
                    .await
                {
                    Ok(sig) => {
                        let sig = p256::ecdsa::Signature::from_slice(&sig.into_inner().content)
                            .expect("raw r||s");
                        vk.verify(&content, &sig).expect("signature verifies");
                        if was_killed {
                            after.fetch_add(1, Ordering::SeqCst);
                        } else {
                            before.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(status) => {
                        errors.lock().unwrap().push(status);
                        // What a caller does: try again shortly.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ok_before_kill.load(Ordering::SeqCst) < RESUMED {
        assert!(
            std::time::Instant::now() < deadline,
            "no load before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    killed.store(true, Ordering::SeqCst);
    f.replicas[victim].process().kill_hard().unwrap();
    f.haproxy
        .wait_status(
            &format!("signerd-{}", victim + 1),
            "DOWN",
            MARK_DOWN_TIMEOUT,
        )
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ok_after_kill.load(Ordering::SeqCst) < RESUMED {
        assert!(
            std::time::Instant::now() < deadline,
            "signing did not resume through the survivor: {} ok since the kill, errors {:?}",
            ok_after_kill.load(Ordering::SeqCst),
            errors.lock().unwrap().iter().take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }

    // The client's own view of the dropped connection (tonic: "transport error", "operation was
    // canceled") carries the transport error as its source; anything a server answered has none
    // and must be UNAVAILABLE: never NOT_FOUND or INTERNAL for a key that is there.
    let errors = errors.lock().unwrap();
    let answered: Vec<&tonic::Status> = errors
        .iter()
        .filter(|s| std::error::Error::source(*s).is_none())
        .collect();
    assert!(
        answered
            .iter()
            .all(|s| s.code() == tonic::Code::Unavailable),
        "a server answered with another code than UNAVAILABLE: {answered:?}"
    );
    assert!(
        errors
            .iter()
            .all(|s| !matches!(s.code(), tonic::Code::NotFound | tonic::Code::Internal)),
        "{errors:?}"
    );
    let survivor = 1 - victim;
    assert!(
        signs(&f.replicas[survivor].logs()) >= RESUMED as usize,
        "the survivor signed after the kill"
    );
}
