//! The stack floor: signerd's own gRPC server (its runtime, its TLS acceptor, its HTTP/2
//! connections and settings: `signerd::server`, `signerd::h2`) with a `Sign` handler that
//! answers at once with fixed bytes: no edge, no key, no token. What it costs per request is
//! what TLS, HTTP/2 and gRPC cost before signerd does anything; `run` measures it beside
//! signerd, and the table shows how much of "µs signerd adds" it is.

use std::net::SocketAddr;
use std::path::PathBuf;

use signerd::config::{Limits, TlsFiles};
use signerd_proto::notary::signer_server::{Signer, SignerServer};
use signerd_proto::notary::{Algorithm, KeyInfo, Signature, SignatureRequest};
use tonic::{Request, Response, Status};

/// Arguments of the hidden `stack-floor` command (`run` starts it pinned, as it starts signerd).
#[derive(Clone, Debug, clap::Args)]
pub struct FloorArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long)]
    pub tls_key: PathBuf,
    /// Client CA bundle (PEM).
    #[arg(long)]
    pub client_ca: PathBuf,
}

/// Length of the fixed answer: an ECDSA P-256 signature in Notary's raw `r || s` form.
pub const ANSWER_LEN: usize = 64;

/// Answers every `Sign` with [`ANSWER_LEN`] zero bytes (the benchmark does not check them).
#[derive(Clone, Copy, Debug)]
struct FixedAnswer;

#[tonic::async_trait]
impl Signer for FixedAnswer {
    async fn sign(
        &self,
        request: Request<SignatureRequest>,
    ) -> Result<Response<Signature>, Status> {
        let request = request.into_inner();
        Ok(Response::new(Signature {
            key_info: Some(KeyInfo {
                key_id: request.key_id,
                algorithm: Some(Algorithm {
                    algorithm: "ecdsa".into(),
                }),
            }),
            algorithm: Some(Algorithm {
                algorithm: "ecdsa".into(),
            }),
            content: vec![0; ANSWER_LEN],
        }))
    }
}

/// Serves until killed (the benchmark stops it by PID).
pub fn serve(args: &FloorArgs) -> Result<(), String> {
    let tls = signerd::tls::load(&TlsFiles {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        client_ca: args.client_ca.clone(),
    })?;
    let runtime = signerd::server::runtime(None, &signerd::scheduling::Scheduling::new())
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let listener = signerd::server::bind(args.listen).await?;
        let limits = Limits::default();
        let (_acceptor, incoming) = signerd::server::accept(
            listener,
            &tls,
            &limits,
            signerd::scheduling::Scheduling::new(),
        );
        signerd::h2::serve(
            incoming,
            signerd::h2::Routes::new().service(SignerServer::new(FixedAnswer)),
            signerd::h2::Settings::of(&limits),
            std::future::pending(),
        )
        .await;
        Ok(())
    })
}
