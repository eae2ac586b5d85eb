//! The client against a real tonic server on a Unix socket of the test's own: every RPC
//! reaches its method, answers come back typed, and the retry policy holds on the wire. The
//! server is a stand-in that answers from a script (signerd itself is tested in
//! `tests/tests/admin_*.rs`).

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use signerd_client::secret::{ImportPrivateKeyRequest, LoginRequest};
use signerd_client::{Client, Endpoint, Error, Options, Refusal, Rpc};
use signerd_proto::admin as pb;
use signerd_proto::admin::token_admin_server::{TokenAdmin, TokenAdminServer};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

/// What the stand-in saw, and the failures it answers with before it answers well.
#[derive(Clone, Default)]
struct Script {
    seen: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<VecDeque<Status>>>,
}

impl Script {
    fn answer<T>(&self, rpc: &str, response: T) -> Result<Response<T>, Status> {
        self.seen.lock().unwrap().push(rpc.to_owned());
        match self.failures.lock().unwrap().pop_front() {
            Some(status) => Err(status),
            None => Ok(Response::new(response)),
        }
    }

    fn fail_with(&self, statuses: impl IntoIterator<Item = Status>) {
        self.failures.lock().unwrap().extend(statuses);
    }

    fn seen(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

#[tonic::async_trait]
impl TokenAdmin for Script {
    async fn list_tokens(
        &self,
        _: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let token = pb::TokenInfo {
            label: "stand-in".into(),
            ..Default::default()
        };
        self.answer(
            "ListTokens",
            pb::ListTokensResponse {
                tokens: vec![token],
            },
        )
    }
    async fn list_mechanisms(
        &self,
        _: Request<pb::ListMechanismsRequest>,
    ) -> Result<Response<pb::ListMechanismsResponse>, Status> {
        self.answer("ListMechanisms", Default::default())
    }
    async fn login(
        &self,
        r: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let pin = String::from_utf8_lossy(&r.get_ref().pin).into_owned();
        self.answer(&format!("Login {pin}"), Default::default())
    }
    async fn find_objects(
        &self,
        _: Request<pb::FindObjectsRequest>,
    ) -> Result<Response<pb::FindObjectsResponse>, Status> {
        self.answer("FindObjects", Default::default())
    }
    async fn generate_key_pair(
        &self,
        _: Request<pb::GenerateKeyPairRequest>,
    ) -> Result<Response<pb::GenerateKeyPairResponse>, Status> {
        self.answer("GenerateKeyPair", Default::default())
    }
    async fn sign(
        &self,
        r: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let signature = r.into_inner().data.iter().rev().copied().collect();
        self.answer("Sign", pb::SignResponse { signature })
    }
    async fn store_certificate(
        &self,
        _: Request<pb::StoreCertificateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        self.answer("StoreCertificate", Default::default())
    }
    async fn import_private_key(
        &self,
        r: Request<pb::ImportPrivateKeyRequest>,
    ) -> Result<Response<pb::ImportPrivateKeyResponse>, Status> {
        let size = r.get_ref().pkcs8_der.len();
        self.answer(&format!("ImportPrivateKey {size}"), Default::default())
    }
    async fn destroy_object(
        &self,
        _: Request<pb::DestroyObjectRequest>,
    ) -> Result<Response<pb::DestroyObjectResponse>, Status> {
        self.answer("DestroyObject", Default::default())
    }
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.answer("Status", Default::default())
    }
}

/// The stand-in serving on `socket` from a runtime of its own; dropping it drops every
/// connection at once, as a signerd that stops would.
struct StandIn {
    runtime: Option<tokio::runtime::Runtime>,
}

impl StandIn {
    fn start(socket: &Path, script: &Script) -> io::Result<StandIn> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = {
            let _inside = runtime.enter();
            tokio::net::UnixListener::bind(socket)?
        };
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(TokenAdminServer::new(script.clone()))
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        Ok(StandIn {
            runtime: Some(runtime),
        })
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn client(socket: &Path) -> Client {
    Client::new(Endpoint::Unix(socket.to_path_buf()), Options::default())
}

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("admin.sock")
}

#[tokio::test]
async fn every_request_goes_to_its_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script::default();
    let _server = StandIn::start(&socket_in(&dir), &script).unwrap();
    let c = client(&socket_in(&dir));

    let tokens = c.call(pb::ListTokensRequest {}).await.unwrap();
    assert_eq!(tokens.tokens[0].label, "stand-in");
    c.call(pb::ListMechanismsRequest {}).await.unwrap();
    c.call(LoginRequest {
        user_type: pb::UserType::User as i32,
        pin: Zeroizing::new(b"1234".to_vec()),
    })
    .await
    .unwrap();
    c.call(pb::FindObjectsRequest::default()).await.unwrap();
    c.call(pb::GenerateKeyPairRequest::default()).await.unwrap();
    let signed = c
        .call(pb::SignRequest {
            data: vec![1, 2, 3],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(signed.signature, [3, 2, 1]);
    c.call(pb::StoreCertificateRequest::default())
        .await
        .unwrap();
    c.call(ImportPrivateKeyRequest {
        pkcs8_der: Zeroizing::new(vec![0x30; 7]),
        ..Default::default()
    })
    .await
    .unwrap();
    c.call(pb::DestroyObjectRequest::default()).await.unwrap();

    assert_eq!(
        script.seen(),
        [
            "ListTokens",
            "ListMechanisms",
            "Login 1234",
            "FindObjects",
            "GenerateKeyPair",
            "Sign",
            "StoreCertificate",
            "ImportPrivateKey 7",
            "DestroyObject",
        ]
    );
}

#[tokio::test]
async fn answers_come_back_typed_and_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script::default();
    let _server = StandIn::start(&socket_in(&dir), &script).unwrap();
    let c = client(&socket_in(&dir));

    script.fail_with([Status::not_found("no key 0a; run signerd key list")]);
    match c.call(pb::SignRequest::default()).await {
        Err(Error::Refused {
            rpc: Rpc::Sign,
            refusal: Refusal::NotFound,
            message,
            ..
        }) => assert_eq!(message, "no key 0a; run signerd key list"),
        other => panic!("expected a NotFound answer, got {other:?}"),
    }
    script.fail_with([Status::permission_denied("wrong PIN")]);
    let e = c
        .call(LoginRequest::default())
        .await
        .expect_err("the stand-in refuses");
    assert!(matches!(
        e,
        Error::Refused {
            refusal: Refusal::PermissionDenied,
            ..
        }
    ));
    assert_eq!(script.seen(), ["Sign", "Login "]);
}

#[tokio::test]
async fn unavailable_is_tried_again_only_when_twice_does_no_harm() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script::default();
    let _server = StandIn::start(&socket_in(&dir), &script).unwrap();
    let c = client(&socket_in(&dir));

    script.fail_with([
        Status::unavailable("token away"),
        Status::unavailable("token away"),
    ]);
    c.call(pb::SignRequest::default())
        .await
        .expect("the third attempt is answered");
    assert_eq!(script.seen(), ["Sign", "Sign", "Sign"]);

    script.fail_with([Status::unavailable("token away")]);
    let e = c
        .call(pb::GenerateKeyPairRequest::default())
        .await
        .expect_err("a key pair is not asked for twice");
    assert!(matches!(
        e,
        Error::Refused {
            refusal: Refusal::Unavailable,
            ..
        }
    ));
    assert_eq!(script.seen(), ["GenerateKeyPair"]);

    // Four attempts at most.
    script.fail_with((0..5).map(|_| Status::unavailable("token away")));
    c.call(pb::ListTokensRequest {})
        .await
        .expect_err("every attempt is refused");
    assert_eq!(script.seen().len(), 4);
}

#[tokio::test]
async fn no_socket_means_never_reached() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(&socket_in(&dir));
    for e in [
        c.connect().await.expect_err("nothing listens"),
        c.call(pb::ListTokensRequest {})
            .await
            .expect_err("nothing listens"),
    ] {
        assert!(matches!(e, Error::NotReached { .. }), "{e:?}");
        assert_eq!(e.io_error_kind(), Some(io::ErrorKind::NotFound), "{e:?}");
        assert!(
            e.to_string().starts_with(&format!(
                "cannot reach signerd at unix:{}: ",
                socket_in(&dir).display()
            )),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_restarted_server_is_reached_again_with_the_same_client() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    let script = Script::default();
    let c = client(&socket);

    let server = StandIn::start(&socket, &script).unwrap();
    c.connect().await.unwrap();
    c.call(pb::SignRequest::default()).await.unwrap();
    drop(server);
    let e = c
        .call(pb::SignRequest::default())
        .await
        .expect_err("nothing listens now");
    assert!(e.is_connection_failure(), "{e:?}");

    std::fs::remove_file(&socket).unwrap();
    let _server = StandIn::start(&socket, &script).unwrap();
    c.call(pb::SignRequest::default())
        .await
        .expect("a new connection to the new server");
    assert_eq!(script.seen(), ["Sign", "Sign"]);
}
