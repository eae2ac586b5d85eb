//! Hostile input and load at the edge, each beside a normal client: oversized and malformed
//! messages, bad names, unknown algorithms, unset sub-messages, a flood of streams on one
//! connection, silent TCP and idle TLS connections. Each gets its code and message or is
//! closed; the normal client keeps working and never sees NOT_FOUND for its key. Counts and
//! codes only, no rates.

use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use signerd_proto::notary::key_management_client::KeyManagementClient;
use signerd_proto::notary::signer_client::SignerClient;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use signerd_tests::signerd::{Clients, Signerd, TestToken};
use signerd_tests::{TestDir, TestPki};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

/// Fields drop in order: signerd stops (and shows its logs on failure) before its folder goes.
struct Setup {
    signerd: Signerd,
    _token: TestToken,
    pki: TestPki,
    _dir: TestDir,
}

/// signerd with `[server]` limits from the environment (`("MAX_CONNECTIONS", "8")`, ...).
fn setup(name: &str, limits: &[(&str, &str)]) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let mut token = TestToken::create(dir.path()).unwrap();
    for (field, value) in limits {
        token
            .env
            .push((format!("SIGNERD_SERVER_{field}"), (*value).to_string()));
    }
    let signerd = Signerd::start(dir.path(), "signerd", &token, &pki).unwrap();
    Setup {
        signerd,
        _token: token,
        pki,
        _dir: dir,
    }
}

/// Makes an ECDSA key and returns its ID.
async fn make_key(c: &mut Clients) -> String {
    let key = c
        .keys
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "docker.io/library/alpine".into(),
            // What notary-server makes on the Notary port.
            role: "timestamp".into(),
        })
        .await
        .expect("CreateKey")
        .into_inner();
    key.key_info.unwrap().key_id.unwrap().id
}

/// Signs with `id`, as the normal client beside the flood does: it must succeed.
async fn sign_ok(c: &mut Clients, id: &str) {
    let answer = c
        .signer
        .sign(SignatureRequest {
            key_id: Some(KeyId { id: id.into() }),
            content: b"normal client".to_vec(),
        })
        .await;
    if let Err(status) = &answer {
        assert_ne!(
            status.code(),
            Code::NotFound,
            "a key that exists: {status:?}"
        );
    }
    assert!(answer.is_ok(), "normal client: {answer:?}");
}

#[tokio::test]
async fn oversized_message_is_resource_exhausted_as_go_answers_it() {
    let s = setup("hostile-oversized", &[]);
    let mut c = s.signerd.clients().await;
    let id = make_key(&mut c).await;
    let status = c
        .signer
        .sign(SignatureRequest {
            key_id: Some(KeyId { id: id.clone() }),
            content: vec![0u8; 5 * 1024 * 1024],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("grpc: received message larger than max ("),
        "{status:?}"
    );
    assert!(status.message().contains(" vs. 4194304)"), "{status:?}");
    sign_ok(&mut c, &id).await;
}

#[tokio::test]
async fn bad_names_algorithms_and_unset_messages_are_invalid_argument() {
    let s = setup("hostile-names", &[]);
    let mut c = s.signerd.clients().await;
    let id = make_key(&mut c).await;
    let create = |algorithm: &str, gun: String, role: &str| CreateKeyRequest {
        algorithm: algorithm.into(),
        gun,
        role: role.into(),
    };
    let forged = "x\nFORGED INFO signerd::keyop: outcome=\"ok\"";
    let cases = [
        (
            create("ecdsa", "a".repeat(10_000), "targets"),
            "send at most 255 bytes",
        ),
        (
            create("ecdsa", "lib\u{0}rary".into(), "targets"),
            "send printable ASCII",
        ),
        (
            create("ecdsa", "library".into(), "tar\ngets"),
            "send printable ASCII",
        ),
        (
            create("ecdsa", "library".into(), "a\u{1b}[2K"),
            "send printable ASCII",
        ),
        (
            create(forged, "library".into(), "targets"),
            "use ecdsa, ed25519 or rsa",
        ),
        (
            create("dsa", "library".into(), "targets"),
            "use ecdsa, ed25519 or rsa",
        ),
    ];
    for (request, says) in cases {
        let status = c.keys.create_key(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(says), "{status:?}");
    }
    let unset = c
        .signer
        .sign(SignatureRequest {
            key_id: None,
            content: b"x".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(unset.code(), Code::InvalidArgument, "{unset:?}");
    let empty = c
        .keys
        .get_key_info(KeyId { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
    sign_ok(&mut c, &id).await;
    let logs = s.signerd.logs();
    assert!(logs.contains("CreateKey"), "the calls are logged");
    assert!(
        !logs.lines().any(|l| l.starts_with("FORGED")),
        "caller text wrote a line of its own:\n{logs}"
    );
}

#[tokio::test]
async fn malformed_protobuf_is_refused_and_the_server_keeps_serving() {
    let s = setup("hostile-malformed", &[]);
    let mut c = s.signerd.clients().await;
    let id = make_key(&mut c).await;
    let channel = s.signerd.channel().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    // A SignatureRequest where a CreateKeyRequest belongs: its content (field 2) lands in the
    // gun, a string, and is not UTF-8.
    let garbage = SignatureRequest {
        key_id: None,
        content: vec![0xff, 0xfe, 0x00],
    };
    grpc.ready().await.unwrap();
    let codec =
        tonic_prost::ProstCodec::<SignatureRequest, signerd_proto::notary::PublicKey>::default();
    let status = grpc
        .unary(
            tonic::Request::new(garbage),
            "/proto.KeyManagement/CreateKey".parse().unwrap(),
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "as Go gRPC: {status:?}");
    sign_ok(&mut c, &id).await;
}

#[tokio::test]
async fn a_flood_of_streams_on_one_connection_is_served_in_turn() {
    let s = setup("hostile-streams", &[("MAX_CONCURRENT_STREAMS", "16")]);
    let mut normal = s.signerd.clients().await;
    let id = make_key(&mut normal).await;
    let flood = KeyManagementClient::new(s.signerd.channel().await.unwrap());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..2_000 {
        let mut client = flood.clone();
        let id = id.clone();
        calls.spawn(async move {
            client
                .get_key_info(KeyId { id })
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        });
    }
    // The normal client, on its own connection, beside the flood.
    for _ in 0..20 {
        sign_ok(&mut normal, &id).await;
    }
    let mut ok = 0;
    while let Some(answer) = calls.join_next().await {
        match answer.unwrap() {
            Ok(()) => ok += 1,
            // Shed load is allowed; a key that exists is never NOT_FOUND.
            Err(code) => assert!(
                matches!(code, Code::ResourceExhausted | Code::Unavailable),
                "{code:?}"
            ),
        }
    }
    assert!(ok > 0, "the flood's calls are served, in turn");
    sign_ok(&mut normal, &id).await;
}

/// A channel to signerd from `source` (another loopback address than the flood's).
async fn channel_from(s: &Setup, source: IpAddr) -> Channel {
    let ca = std::fs::read(s.pki.ca.cert_path()).unwrap();
    let cert = std::fs::read(&s.pki.client.cert).unwrap();
    let key = std::fs::read(&s.pki.client.key).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost")
        .identity(Identity::from_pem(cert, key));
    Channel::from_shared(format!("https://{}", s.signerd.addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .local_address(Some(source))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("the normal client connects from its own address")
}

/// Whether the server closed `stream` (read gives end of file or an error) within `bound`.
fn closed_by_server(mut stream: impl std::io::Read, bound: Duration, tcp: &TcpStream) -> bool {
    tcp.set_read_timeout(Some(bound)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn silent_tcp_connections_are_capped_per_peer_and_closed() {
    let s = setup("hostile-silent-tcp", &[("MAX_CONNECTIONS_PER_PEER", "20")]);
    let normal_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let mut normal = signerd_tests::signerd::Clients {
        keys: KeyManagementClient::new(channel_from(&s, normal_ip).await),
        signer: SignerClient::new(channel_from(&s, normal_ip).await),
        health: signerd_proto::health::health_client::HealthClient::new(
            channel_from(&s, normal_ip).await,
        ),
    };
    let id = make_key(&mut normal).await;
    let silent: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(s.signerd.addr()).expect("the kernel accepts"))
        .collect();
    // Beside 60 silent connections from 127.0.0.1 the normal client still signs.
    for _ in 0..5 {
        sign_ok(&mut normal, &id).await;
    }
    let silent = Arc::new(silent);
    let closed = tokio::task::spawn_blocking(move || {
        silent
            .iter()
            .filter(|tcp| closed_by_server(*tcp, Duration::from_secs(60), tcp))
            .count()
    })
    .await
    .unwrap();
    // Over the cap: closed at once; under it: closed by the handshake timeout.
    assert_eq!(closed, 60, "every silent connection is closed");
    sign_ok(&mut normal, &id).await;
}

/// A mutual-TLS client that handshakes and then says nothing.
fn idle_tls(
    s: &Setup,
) -> (
    rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    TcpStream,
) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(s.pki.ca.cert_path()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let certs: Vec<_> = CertificateDer::pem_file_iter(&s.pki.client.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&s.pki.client.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(s.signerd.addr()).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).expect("TLS handshake");
    }
    let probe = tcp.try_clone().unwrap();
    (rustls::StreamOwned::new(conn, tcp), probe)
}

#[tokio::test]
async fn idle_tls_connections_are_closed_by_the_idle_timeout() {
    let s = Arc::new(setup("hostile-idle-tls", &[("IDLE_TIMEOUT_SECS", "3")]));
    let mut normal = s.signerd.clients().await;
    let id = make_key(&mut normal).await;
    let setup = Arc::clone(&s);
    let idle =
        tokio::task::spawn_blocking(move || (0..20).map(|_| idle_tls(&setup)).collect::<Vec<_>>())
            .await
            .unwrap();
    sign_ok(&mut normal, &id).await;
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .filter(|(_tls, tcp)| closed_by_server(tcp, Duration::from_secs(60), tcp))
            .count()
    })
    .await
    .unwrap();
    assert_eq!(closed, 20, "every idle TLS connection is closed");
    // The normal client's connection answers keepalive pings: it stays and keeps working.
    sign_ok(&mut normal, &id).await;
}
