//! The admin CLI's connection to signerd: the Unix socket by default, or the mTLS port with an
//! admin client certificate. A thin blocking facade over [`signerd_client`] (the client the
//! PKCS#11 shim uses too): calls block on a current-thread runtime inside, so the certificate
//! builders' synchronous signing traits can call the token; this file only turns the client's
//! typed errors into exit codes and hints.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use signerd_client::{
    Call, Client, Endpoint, Options, Refusal, SetupError, SocketPeer, TlsEndpoint, TlsFile,
};
use signerd_proto::admin as pb;

use super::{CliError, Exit};

/// Where signerd's admin API is.
#[derive(Clone, Debug, Args)]
pub struct ConnectArgs {
    /// The admin socket [default: /run/signerd/admin.sock; when that is absent, .signerd/admin.sock of `signerd serve` with no config in this folder, if served by your own uid].
    #[arg(long, global = true, value_name = "PATH", env = "SIGNERD_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Use the mTLS port instead (HOST:PORT), with --cert/--key-file of an admin client.
    #[arg(long, global = true, value_name = "HOST:PORT", env = "SIGNERD_ADDR")]
    pub addr: Option<String>,
    /// Admin client certificate (PEM), listed in signerd's admin.admin_clients.
    #[arg(long, global = true, value_name = "FILE", env = "SIGNERD_CLIENT_CERT")]
    pub cert: Option<PathBuf>,
    /// Key of --cert (PEM).
    #[arg(long, global = true, value_name = "FILE", env = "SIGNERD_CLIENT_KEY")]
    pub key_file: Option<PathBuf>,
    /// CA certificate that signerd's server certificate chains to (PEM).
    #[arg(long, global = true, value_name = "FILE", env = "SIGNERD_SERVER_CA")]
    pub server_ca: Option<PathBuf>,
    /// Name to check signerd's server certificate against.
    #[arg(long, global = true, value_name = "NAME", default_value = "localhost")]
    pub server_name: String,
}

/// Default admin socket: absolute, where a system signerd serves it.
pub const DEFAULT_SOCKET: &str = signerd_vocab::DEFAULT_ADMIN_SOCKET;

/// The socket and who must serve it when `--socket` is not given: [`DEFAULT_SOCKET`]; when that
/// does not exist, the dev default's socket in this folder, trusted only when the process
/// serving it runs as this user (or root), never one someone else planted here.
fn default_socket() -> (PathBuf, SocketPeer) {
    let system = PathBuf::from(DEFAULT_SOCKET);
    let dev = PathBuf::from(signerd_vocab::DEV_ADMIN_SOCKET);
    if !system.exists() && dev.exists() {
        (dev, SocketPeer::Uid(nix::unistd::getuid().as_raw()))
    } else {
        (system, SocketPeer::RootOrOwner)
    }
}

/// Longest one admin call may take: generating an RSA key in a slow token takes a while.
const CALL_DEADLINE: Duration = Duration::from_secs(120);

/// A blocking admin API client.
pub struct AdminClient {
    runtime: tokio::runtime::Runtime,
    client: Client,
    target: String,
}

impl AdminClient {
    /// Connects as `args` say.
    pub fn connect(args: &ConnectArgs) -> Result<AdminClient, CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::new(Exit::Failed, format!("cannot start a runtime: {e}")))?;
        let mut socket_peer = SocketPeer::Any;
        let (endpoint, target) = match &args.addr {
            Some(addr) => (
                tls_endpoint(args, addr)?,
                format!("signerd's mTLS port {addr}"),
            ),
            None => {
                let (path, peer) = match &args.socket {
                    Some(path) => (path.clone(), SocketPeer::RootOrOwner),
                    None => default_socket(),
                };
                socket_peer = peer;
                (
                    socket_endpoint(&path)?,
                    format!("signerd's admin socket {}", path.display()),
                )
            }
        };
        let client = Client::new(
            endpoint,
            Options {
                deadline: CALL_DEADLINE,
                socket_peer,
                ..Options::default()
            },
        );
        let admin = AdminClient {
            runtime,
            client,
            target,
        };
        admin
            .runtime
            .block_on(admin.client.connect())
            .map_err(|e| admin.error("connecting", e))?;
        Ok(admin)
    }

    fn call<C: Call>(&self, what: &str, request: C) -> Result<C::Response, CliError> {
        self.runtime
            .block_on(self.client.call(request))
            .map_err(|e| self.error(what, e))
    }

    fn error(&self, what: &str, e: signerd_client::Error) -> CliError {
        client_error(what, &self.target, e)
    }

    /// The token signerd serves.
    pub fn token(&self) -> Result<pb::TokenInfo, CliError> {
        let list = self.call("listing tokens", pb::ListTokensRequest {})?;
        list.tokens
            .into_iter()
            .next()
            .ok_or_else(|| CliError::new(Exit::Failed, "signerd reports no token"))
    }

    /// Objects matching `filter`.
    pub fn find(&self, filter: pb::FindObjectsRequest) -> Result<Vec<pb::Object>, CliError> {
        Ok(self.call("finding objects", filter)?.objects)
    }

    /// Generates a key pair; returns the private key object.
    pub fn generate(&self, request: pb::GenerateKeyPairRequest) -> Result<pb::Object, CliError> {
        self.call("generating a key", request)?
            .private_key
            .ok_or_else(|| CliError::new(Exit::Failed, "signerd returned no private key object"))
    }

    /// Signs `data` with the private key `key`.
    pub fn sign(
        &self,
        key: &pb::ObjectRef,
        mechanism: u64,
        pss: Option<pb::PssParams>,
        data: &[u8],
    ) -> Result<Vec<u8>, CliError> {
        let request = pb::SignRequest {
            key: Some(key.clone()),
            mechanism,
            data: data.to_vec(),
            pss,
        };
        Ok(self.call("signing", request)?.signature)
    }

    /// Stores a certificate.
    pub fn store_certificate(
        &self,
        id: Vec<u8>,
        label: &str,
        der: Vec<u8>,
    ) -> Result<pb::Object, CliError> {
        let request = pb::StoreCertificateRequest {
            id,
            label: label.to_owned(),
            certificate_der: der,
        };
        self.call("storing a certificate", request)
    }

    /// The running daemon's state.
    pub fn status(&self) -> Result<pb::StatusResponse, CliError> {
        self.call("asking for the status", pb::StatusRequest {})
    }

    /// Destroys the objects `reference` names; returns how many.
    pub fn destroy(&self, reference: pb::ObjectRef) -> Result<u32, CliError> {
        let request = pb::DestroyObjectRequest {
            r#ref: Some(reference),
        };
        Ok(self.call("deleting", request)?.destroyed)
    }
}

fn socket_endpoint(path: &Path) -> Result<Endpoint, CliError> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if !absolute.exists() {
        return Err(CliError::new(
            Exit::Unreachable,
            format!("signerd's admin socket {} does not exist", absolute.display()),
        )
        .hint(
            "start signerd (`signerd serve`; with no config it serves .signerd/admin.sock, found from the same folder), or point --socket / SIGNERD_SOCKET at its admin.socket",
        ));
    }
    Ok(Endpoint::Unix(absolute))
}

fn tls_endpoint(args: &ConnectArgs, addr: &str) -> Result<Endpoint, CliError> {
    let given = |what: &str, path: &Option<PathBuf>| -> Result<PathBuf, CliError> {
        path.clone().ok_or_else(|| {
            CliError::new(Exit::BadInput, format!("--addr needs --{what}"))
                .hint("give --cert, --key-file and --server-ca of an admin client, or use the admin socket (--socket)")
        })
    };
    Ok(Endpoint::Tls(TlsEndpoint {
        uri: format!("https://{addr}"),
        domain: args.server_name.clone(),
        ca: given("server-ca", &args.server_ca)?,
        client_cert: given("cert", &args.cert)?,
        client_key: given("key-file", &args.key_file)?,
    }))
}

/// A failed admin call (`what`: "signing", ...) to `target` as a CLI error.
fn client_error(what: &str, target: &str, e: signerd_client::Error) -> CliError {
    use signerd_client::Error as E;
    match e {
        E::Setup(SetupError::Read { file, path, source }) => {
            let flag = match file {
                TlsFile::Ca => "server-ca",
                TlsFile::ClientCert => "cert",
                TlsFile::ClientKey => "key-file",
            };
            CliError::new(
                Exit::BadInput,
                format!("cannot read --{flag} {}: {source}", path.display()),
            )
        }
        E::Setup(SetupError::Untrusted(why)) => CliError::new(Exit::Denied, why),
        E::Setup(setup) => CliError::new(Exit::BadInput, format!("{target}: {setup}")),
        E::NotReached { .. } if e.io_error_kind() == Some(io::ErrorKind::PermissionDenied) => {
            CliError::new(Exit::Denied, format!("{what}: {e}")).hint(
                "the socket is mode 0660: run as signerd's user or group, or ask for your uid in admin.allow_uids (and socket access)",
            )
        }
        E::NotReached { .. } | E::ConnectionLost { .. } | E::TimedOut { .. } => {
            CliError::new(Exit::Unreachable, format!("{what}: {e}"))
                .hint("is `signerd serve` running? check --socket / SIGNERD_SOCKET (or --addr) and signerd's admin config")
        }
        E::Refused {
            refusal, message, ..
        } => refused(what, target, refusal, &message),
    }
}

/// signerd's refusal of `what` as a CLI error.
fn refused(what: &str, target: &str, refusal: Refusal, message: &str) -> CliError {
    let message = format!("{what}: {message}");
    match refusal {
        Refusal::PermissionDenied => CliError::new(Exit::Denied, message),
        Refusal::NotFound => CliError::new(Exit::NotFound, message),
        Refusal::InvalidArgument | Refusal::FailedPrecondition => {
            CliError::new(Exit::BadInput, message)
        }
        Refusal::Unavailable => CliError::new(Exit::Unreachable, message)
            .hint(format!("check that {target} is up and its token present (signerd check-config)")),
        Refusal::Unimplemented => CliError::new(Exit::Failed, message)
            .hint("this signerd does not serve the admin API there; on the mTLS port it needs admin.admin_clients"),
        Refusal::AlreadyExists | Refusal::ResourceExhausted | Refusal::Failed => {
            CliError::new(Exit::Failed, message)
        }
    }
}
