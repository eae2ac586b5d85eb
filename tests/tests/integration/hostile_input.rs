//! Hostile input and load at the edge, each beside a normal client (issue 9, acceptance 4):
//! oversized and malformed messages, a 10 kB GUN, control characters, unknown algorithms,
//! unset sub-messages, 10,000 streams on one connection, 1,100 silent TCP connections and 500
//! idle mutual-TLS connections. Each gets its code and message or is closed by the timeouts;
//! the normal client (8 calls in flight on its own connections) never sees NOT_FOUND for its
//! key and completes at least half as many Signs in a window beside each load as in the
//! windows just before and after (counts in equal windows, no time thresholds);
//! signerd's threads and resident memory, read from /proc, stay bounded. Descriptor
//! exhaustion (signerd's open files limit lowered under it) makes Signs of a key that exists
//! UNAVAILABLE or RESOURCE_EXHAUSTED, never NOT_FOUND. A connection whose requests signerd must
//! reset (malformed headers), 1,100 of them, is ended with GOAWAY within 1,024.

use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signerd_proto::notary::signer_client::SignerClient;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use signerd_tests::signerd::{Clients, Signerd, TestToken};
use signerd_tests::{TestDir, TestPki};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
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

/// Calls the normal client keeps in flight, as in the measurement.
const NORMAL_IN_FLIGHT: usize = 8;
/// The window both counts are taken in.
const WINDOW: Duration = Duration::from_secs(2);
/// Most threads signerd may have under any of the loads (bounded token workers, a runtime
/// worker per core, the audit writer); the issue measured 515 under 2,000 streams before.
const MAX_THREADS: u64 = 64;
/// Most resident memory signerd may have under any of the loads, in KiB.
const MAX_RSS_KIB: u64 = 256 * 1024;

/// The normal client: its own connections (from `source` when given), 8 calls in flight.
struct Normal {
    signers: Vec<SignerClient<Channel>>,
    id: String,
}

impl Normal {
    async fn connect(s: &Setup, source: Option<IpAddr>, id: &str) -> Normal {
        let mut signers = Vec::new();
        // Two connections: with a small stream cap one connection alone could not keep 8 calls
        // in flight.
        for _ in 0..2 {
            let channel = match source {
                Some(ip) => channel_from(s, ip).await,
                None => s.signerd.channel().await.unwrap(),
            };
            signers.push(SignerClient::new(channel));
        }
        Normal {
            signers,
            id: id.to_owned(),
        }
    }

    /// Signs completed in one [`WINDOW`] with [`NORMAL_IN_FLIGHT`] calls in flight. Any answer
    /// but OK fails the test: the normal client is never shed, refused, or told NOT_FOUND.
    async fn signs_in_window(&self) -> u64 {
        let done = Arc::new(AtomicU64::new(0));
        let end = Instant::now() + WINDOW;
        let mut workers = tokio::task::JoinSet::new();
        for i in 0..NORMAL_IN_FLIGHT {
            let mut signer = self.signers[i % self.signers.len()].clone();
            let id = self.id.clone();
            let done = Arc::clone(&done);
            workers.spawn(async move {
                while Instant::now() < end {
                    let answer = signer
                        .sign(SignatureRequest {
                            key_id: Some(KeyId { id: id.clone() }),
                            content: b"normal client".to_vec(),
                        })
                        .await;
                    match answer {
                        Ok(_) => {
                            if Instant::now() <= end {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(status) => {
                            assert_ne!(
                                status.code(),
                                Code::NotFound,
                                "a key that exists: {status:?}"
                            );
                            panic!("normal client: {status:?}");
                        }
                    }
                }
            });
        }
        while let Some(worker) = workers.join_next().await {
            worker.expect("a normal-client worker");
        }
        done.load(Ordering::Relaxed)
    }
}

/// signerd's threads and resident memory (KiB), from /proc.
fn threads_and_rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("Threads:"), field("VmRSS:"))
}

/// Asserts signerd's threads and memory are within the bounds, under `load`.
fn assert_bounded(pid: u32, load: &str) {
    let (threads, rss) = threads_and_rss(pid);
    assert!(
        threads <= MAX_THREADS,
        "{threads} threads under {load} (bound {MAX_THREADS})"
    );
    assert!(
        rss <= MAX_RSS_KIB,
        "{rss} KiB resident under {load} (bound {MAX_RSS_KIB} KiB)"
    );
    eprintln!("under {load}: {threads} threads, {rss} KiB resident");
}

/// Prints the normal client's counts before, beside and after a load (shown when a test fails,
/// or with `--nocapture`).
fn report_rate(before: u64, loaded: u64, after: u64, load: &str) {
    eprintln!(
        "normal client per {WINDOW:?}: {before} Signs before, {loaded} beside {load}, {after} after"
    );
}

/// Asserts the normal client kept at least half its unloaded count. The unloaded count is the
/// smaller of the windows just before and just after the load: other work on the machine
/// moves both, and bracketing the load keeps that out of the comparison.
fn assert_half_rate(before: u64, loaded: u64, after: u64, load: &str) {
    report_rate(before, loaded, after, load);
    let unloaded = before.min(after);
    assert!(unloaded > 0, "the normal client signs at all");
    assert!(
        loaded * 2 >= unloaded,
        "beside {load} the normal client completed {loaded} Signs in {WINDOW:?}, without it {before} before and {after} after: less than half"
    );
}

/// The flood's answers until it was stopped: served, shed (RESOURCE_EXHAUSTED or UNAVAILABLE,
/// with a message), and calls still open when it was stopped (then cancelled).
#[derive(Debug, Default)]
struct FloodAnswers {
    ok: u64,
    shed: u64,
    open_at_stop: usize,
}

/// 10,000 Signs at once on one connection until `stop` (each answered call replaced by a new
/// one, so the load does not end when signerd has answered the first 10,000), from a thread
/// and runtime of their own so the flood's client work does not starve the normal client's
/// (in the test process, not signerd). The connection is made on that runtime too: a channel's connection task (tonic's
/// buffer and h2's queue of streams waiting to open) runs on the runtime that connected it.
/// At `stop` the calls still open are cancelled (RST_STREAM), as a client that gives up does.
fn flood_thread(
    endpoint: Endpoint,
    id: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> std::thread::JoinHandle<FloodAnswers> {
    std::thread::spawn(move || {
        lowest_priority_for_this_thread();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let flood = SignerClient::new(endpoint.connect().await.expect("the flood connects"));
            let call = |mut client: SignerClient<Channel>, id: String| async move {
                client
                    .sign(SignatureRequest {
                        key_id: Some(KeyId { id }),
                        content: b"flood".to_vec(),
                    })
                    .await
                    .map(|_| ())
                    .map_err(|s| (s.code(), s.message().to_owned()))
            };
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..10_000 {
                calls.spawn(call(flood.clone(), id.clone()));
            }
            let mut answers = FloodAnswers::default();
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    answer = calls.join_next() => match answer {
                        None => break,
                        Some(answer) => {
                            match answer.unwrap() {
                                Ok(()) => answers.ok += 1,
                                Err((code, message)) => {
                                    // Shed load is allowed, with a message; a key that exists
                                    // is never NOT_FOUND.
                                    assert!(
                                        matches!(code, Code::ResourceExhausted | Code::Unavailable),
                                        "{code:?}: {message}"
                                    );
                                    assert!(!message.is_empty());
                                    answers.shed += 1;
                                }
                            }
                            // Each answer is replaced: 10,000 calls stay open until `stop`.
                            calls.spawn(call(flood.clone(), id.clone()));
                        }
                    },
                }
            }
            answers.open_at_stop = calls.len();
            answers
        })
    })
}

/// Puts the calling thread at the lowest CPU priority (`renice 19` on its thread ID). The flood's
/// client keeps 10,000 calls open in this test process, beside the normal client, on a
/// machine of two cores: its own client-side work (tonic's buffer and h2's queue of streams
/// waiting to open) must not take the normal client's CPU, or the test would measure the test
/// process rather than signerd. An attacker's client runs on a machine of its own; signerd
/// sees the same 10,000 streams either way.
fn lowest_priority_for_this_thread() {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = link
        .file_name()
        .and_then(|t| t.to_str())
        .expect("PID/task/TID")
        .to_owned();
    let status = std::process::Command::new("renice")
        .args(["-n", "19", "-p", &tid])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("renice (util-linux) runs");
    assert!(status.success(), "renice -n 19 -p {tid}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_streams_on_one_connection_are_served_or_shed_and_signerd_stays_bounded() {
    let mut s = setup("hostile-streams", &[]);
    let pid = s.signerd.process().id();
    let mut c = s.signerd.clients().await;
    let id = make_key(&mut c).await;
    let normal = Normal::connect(&s, None, &id).await;
    let before = normal.signs_in_window().await;

    let (stop, stopped) = tokio::sync::oneshot::channel();
    let flood = flood_thread(s.signerd.grpc_endpoint().unwrap(), id.clone(), stopped);
    let loaded = normal.signs_in_window().await;
    assert_bounded(pid, "10,000 streams on one connection");
    let _ = stop.send(());
    let answers = tokio::task::spawn_blocking(move || flood.join())
        .await
        .unwrap()
        .expect("the flood's answers are all OK or shed");
    eprintln!("flood: {answers:?}");
    assert!(answers.ok > 0, "the flood's calls are served, in turn");
    assert!(
        answers.open_at_stop > 0,
        "no flood call was open at the stop: the window did not measure under load"
    );
    let after = normal.signs_in_window().await;
    // signerd admits the Notary port's key operations a few at a time, connections in turn and
    // none beyond its share while another is active, counting a connection between its calls
    // as active (edge::admission); its token workers take connections in turn too, and it runs
    // one token worker per CPU plus one (the default `token.sessions`), so signing does not
    // take the CPU the runtime needs to read and answer the normal client. With a lighter
    // connection active beside another (the normal client's, within their share of the
    // places, beside the flood's), the runtime threads stay under SCHED_OTHER, so the normal
    // client's calls preempt a busy worker (under SCHED_BATCH, which signerd uses while one
    // connection is active, or several evenly over their share, it kept 52-65 %;
    // `scheduling`). Measured on 2 cores
    // in debug builds the normal client keeps 64-75 % with 2 workers, 60-68 % with 3 (4-15 %
    // when issue 9 was filed; 45-58 % without the between-calls rule, side by side), and
    // 58-74 % since the runtime's policy follows the connections (9 runs; 59-73 % in the 4
    // interleaved with them without it). Since the flood replaces each answered call (signerd
    // had come to answer all 10,000 within the window): 59-82 % (9 runs), and 63-74 % with a
    // lone connection's answers coalesced (10 runs; `coalesce`: only while the active clients
    // batch). Since connections evenly over their share batch too (the normal client's are
    // lighter than the flood's, so its calls still preempt): 64-77 % (9 runs; 64-84 % in the 9
    // interleaved with them without).
    assert_half_rate(before, loaded, after, "10,000 streams on one connection");
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

/// `count` loopback addresses the loads come from, none of them the normal client's.
fn flood_sources(count: u8) -> Vec<IpAddr> {
    (0..count)
        .map(|i| IpAddr::from([127, 0, 1, 10 + i]))
        .collect()
}

/// Connects from `source`; the stream is handed back blocking, for the std readers below.
async fn tcp_from(s: &Setup, source: IpAddr) -> TcpStream {
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .unwrap();
    socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
    let stream = socket
        .connect(s.signerd.addr())
        .await
        .expect("the kernel accepts");
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// `count` connections, spread over `sources`.
async fn connections(s: &Setup, sources: &[IpAddr], count: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        out.push(tcp_from(s, sources[i % sources.len()]).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_silent_tcp_connections_are_capped_and_closed() {
    // The defaults: 1,024 connections in all, 128 per peer; the handshake timeout closes the
    // silent ones that got in.
    let mut s = setup("hostile-silent-tcp", &[]);
    let pid = s.signerd.process().id();
    let normal_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let mut c = s.signerd.clients().await;
    let id = make_key(&mut c).await;
    drop(c);
    let normal = Normal::connect(&s, Some(normal_ip), &id).await;
    let before = normal.signs_in_window().await;

    let silent = connections(&s, &flood_sources(9), 1_100).await;
    let loaded = normal.signs_in_window().await;
    assert_bounded(pid, "1,100 silent TCP connections");
    let silent = Arc::new(silent);
    let closed = tokio::task::spawn_blocking(move || {
        silent
            .iter()
            .filter(|tcp| closed_by_server(*tcp, Duration::from_secs(60), tcp))
            .count()
    })
    .await
    .unwrap();
    // Over the caps: closed at once; under them: closed by the handshake timeout.
    assert_eq!(closed, 1_100, "every silent connection is closed");
    let after = normal.signs_in_window().await;
    assert_half_rate(before, loaded, after, "1,100 silent TCP connections");
}

/// The mutual-TLS client configuration of notary-server's certificate, for raw rustls.
fn client_tls(s: &Setup) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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
    Arc::new(config)
}

/// A mutual-TLS client on `tcp` that handshakes and then says nothing.
fn idle_tls(
    config: &Arc<rustls::ClientConfig>,
    mut tcp: TcpStream,
) -> (
    rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    TcpStream,
) {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).expect("TLS handshake");
    }
    let probe = tcp.try_clone().unwrap();
    (rustls::StreamOwned::new(conn, tcp), probe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_idle_tls_connections_are_closed_by_the_idle_timeout() {
    let mut s = setup("hostile-idle-tls", &[("IDLE_TIMEOUT_SECS", "5")]);
    let pid = s.signerd.process().id();
    let mut c = s.signerd.clients().await;
    let id = make_key(&mut c).await;
    let normal = Normal::connect(&s, Some("127.0.0.2".parse().unwrap()), &id).await;
    let before = normal.signs_in_window().await;
    // From five addresses: 100 each, under the per-peer cap of 128. Each handshakes as soon as
    // it is connected (a connection that waited would meet the handshake timeout instead).
    let config = client_tls(&s);
    let sources = flood_sources(5);
    let mut idle = Vec::with_capacity(500);
    for i in 0..500 {
        let tcp = tcp_from(&s, sources[i % sources.len()]).await;
        let config = Arc::clone(&config);
        idle.push(
            tokio::task::spawn_blocking(move || idle_tls(&config, tcp))
                .await
                .unwrap(),
        );
    }
    let loaded = normal.signs_in_window().await;
    assert_bounded(pid, "500 idle TLS connections");
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .filter(|(_tls, tcp)| closed_by_server(tcp, Duration::from_secs(60), tcp))
            .count()
    })
    .await
    .unwrap();
    assert_eq!(closed, 500, "every idle TLS connection is closed");
    let after = normal.signs_in_window().await;
    assert_half_rate(before, loaded, after, "500 idle TLS connections");
    // The normal client's connections answer keepalive pings: they stay and keep working.
    sign_ok(&mut c, &id).await;
}

/// Open descriptors of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Sets the soft open files limit of process `pid` with util-linux's prlimit (the hard limit
/// stays: raising it back would need CAP_SYS_RESOURCE).
fn set_nofile(pid: u32, limit: usize) {
    let out = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:"))
        .output()
        .expect("prlimit (util-linux) runs");
    assert!(out.status.success(), "{}", signerd_tests::admin::text(&out));
}

#[tokio::test]
async fn descriptor_exhaustion_never_reads_as_not_found() {
    let mut s = setup("hostile-nofile", &[]);
    let pid = s.signerd.process().id();
    let mut normal = s.signerd.clients().await;
    // A key this signerd has signed with (its handle cached), and one a replica on the same
    // token makes later: to sign with it, signerd has to find it in the token, which reads
    // the token's files.
    let known = make_key(&mut normal).await;
    sign_ok(&mut normal, &known).await;
    let mut replica = Signerd::start(s._dir.path(), "replica", &s._token, &s.pki).unwrap();
    let mut other = replica.clients().await;
    let fresh = make_key(&mut other).await;
    replica.stop().unwrap();

    // Leave signerd a few descriptors, then let silent connections take them.
    let limit = open_files(pid) + 8;
    set_nofile(pid, limit);
    let silent = connections(&s, &flood_sources(2), 64).await;
    // signerd accepts them in its own time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_files(pid) < limit - 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "signerd holds {} of {limit} descriptors: not exhausted",
            open_files(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut answers = Vec::new();
    for id in [&known, &fresh, &known, &fresh] {
        let answer = normal
            .signer
            .sign(SignatureRequest {
                key_id: Some(KeyId { id: id.clone() }),
                content: b"out of descriptors".to_vec(),
            })
            .await;
        answers.push(
            answer
                .map(|_| ())
                .map_err(|e| (e.code(), e.message().to_owned())),
        );
    }
    eprintln!("Signs while out of descriptors: {answers:?}");
    for answer in &answers {
        if let Err((code, message)) = answer {
            assert!(
                matches!(code, Code::Unavailable | Code::ResourceExhausted),
                "a key that exists, while signerd is out of descriptors: {code:?} {message}"
            );
        }
    }

    // Descriptors back: the same keys sign.
    drop(silent);
    set_nofile(pid, 4096);
    for id in [&known, &fresh] {
        let mut answer = None;
        for _ in 0..50 {
            match normal
                .signer
                .sign(SignatureRequest {
                    key_id: Some(KeyId { id: id.clone() }),
                    content: b"descriptors back".to_vec(),
                })
                .await
            {
                Ok(_) => {
                    answer = Some(Ok(()));
                    break;
                }
                Err(e) => {
                    assert_ne!(e.code(), Code::NotFound, "{e:?}");
                    answer = Some(Err(e));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        assert!(matches!(answer, Some(Ok(()))), "{id}: {answer:?}");
    }
}

/// An HTTP/2 frame (RFC 9113, 4.1): its 9-byte header, then `payload`.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// A request header block that HTTP/2 calls malformed: a `connection` header (RFC 9113,
/// 8.2.2). Each field an HPACK literal without indexing, new name, no Huffman (RFC 7541,
/// 6.2.2), every length under 127.
fn malformed_request_headers() -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/notary.Signer/Sign"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("connection", "keep-alive"),
    ] {
        block.push(0);
        block.push(u8::try_from(name.len()).unwrap());
        block.extend(name.as_bytes());
        block.push(u8::try_from(value.len()).unwrap());
        block.extend(value.as_bytes());
    }
    block
}

/// Reads frames from `stream` until the server closes it or `bound` passes without a byte:
/// how many RST_STREAM frames came, and the error code of a GOAWAY if one did.
fn resets_and_goaway(mut stream: impl std::io::Read, tcp: &TcpStream) -> (usize, Option<u32>) {
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    let (mut resets, mut goaway, mut at) = (0, None, 0);
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let payload = bytes.get(at + 9..at + 9 + len).unwrap_or_default();
        match bytes[at + 3] {
            0x3 => resets += 1,
            0x7 if payload.len() >= 8 => {
                goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
            _ => {}
        }
        at += 9 + len;
    }
    (resets, goaway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_makes_signerd_reset_stream_after_stream_is_closed() {
    // 1,100 requests, each with a header HTTP/2 forbids: signerd resets each stream, and after
    // 1,024 of them ends the connection (GOAWAY, ENHANCE_YOUR_CALM), as hyper does by default
    // (RUSTSEC-2024-0003) and tonic's builder left unset does not.
    let s = setup("hostile-local-resets", &[]);
    let mut c = s.signerd.clients().await;
    let id = make_key(&mut c).await;
    let config = client_tls(&s);
    let tcp = tcp_from(&s, flood_sources(1)[0]).await;
    let (resets, goaway) = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let (mut tls, probe) = idle_tls(&config, tcp);
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(h2_frame(0x4, 0, 0, &[]));
        let block = malformed_request_headers();
        for i in 0..1_100u32 {
            // HEADERS, END_STREAM | END_HEADERS, on the client's next stream.
            out.extend(h2_frame(0x1, 0x5, 2 * i + 1, &block));
        }
        // The server may close before it has read everything: a failed write is expected.
        let _ = tls.write_all(&out).and_then(|()| tls.flush());
        resets_and_goaway(&mut tls, &probe)
    })
    .await
    .unwrap();
    assert_eq!(
        goaway,
        Some(0xb),
        "GOAWAY with ENHANCE_YOUR_CALM after {resets} resets"
    );
    assert!(
        // `signerd::server::LOCAL_ERROR_RESETS`.
        resets <= 1_024,
        "{resets} streams reset before the GOAWAY"
    );
    eprintln!("local resets: {resets} streams reset, then GOAWAY {goaway:?}");
    // The connection was the client's own: signerd serves everyone else as before.
    sign_ok(&mut c, &id).await;
}
