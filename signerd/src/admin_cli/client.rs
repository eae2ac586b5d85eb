//! The admin CLI's connection to signerd: the Unix socket by default, or the mTLS port with an
//! admin client certificate. Calls block (a current-thread runtime inside), so the certificate
//! builders' synchronous signing traits can call the token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use signerd_proto::admin as pb;
use signerd_proto::admin::token_admin_client::TokenAdminClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

use super::{CliError, Exit};

/// Where signerd's admin API is.
#[derive(Clone, Debug, Args)]
pub struct ConnectArgs {
    /// The admin socket [default: .signerd/admin.sock, where `signerd serve` with no config serves it].
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

/// Default admin socket: where the embedded dev default serves it.
pub const DEFAULT_SOCKET: &str = ".signerd/admin.sock";

/// A blocking admin API client.
pub struct AdminClient {
    runtime: tokio::runtime::Runtime,
    inner: TokenAdminClient<Channel>,
    target: String,
}

impl AdminClient {
    /// Connects as `args` say.
    pub fn connect(args: &ConnectArgs) -> Result<AdminClient, CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::new(Exit::Failed, format!("cannot start a runtime: {e}")))?;
        let (endpoint, target) = match &args.addr {
            Some(addr) => (
                tls_endpoint(args, addr)?,
                format!("signerd's mTLS port {addr}"),
            ),
            None => {
                let path = args
                    .socket
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
                (
                    socket_endpoint(&path)?,
                    format!("signerd's admin socket {}", path.display()),
                )
            }
        };
        let channel = runtime
            .block_on(endpoint.connect())
            .map_err(|e| unreachable(&target, &e))?;
        Ok(AdminClient {
            runtime,
            inner: TokenAdminClient::new(channel),
            target,
        })
    }

    fn call<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CliError> {
        self.runtime
            .block_on(f)
            .map(tonic::Response::into_inner)
            .map_err(|s| status_error(what, &self.target, &s))
    }

    /// The token signerd serves.
    pub fn token(&self) -> Result<pb::TokenInfo, CliError> {
        let mut c = self.inner.clone();
        let list = self.call("listing tokens", c.list_tokens(pb::ListTokensRequest {}))?;
        list.tokens
            .into_iter()
            .next()
            .ok_or_else(|| CliError::new(Exit::Failed, "signerd reports no token"))
    }

    /// Objects matching `filter`.
    pub fn find(&self, filter: pb::FindObjectsRequest) -> Result<Vec<pb::Object>, CliError> {
        let mut c = self.inner.clone();
        Ok(self
            .call("finding objects", c.find_objects(filter))?
            .objects)
    }

    /// Generates a key pair; returns the private key object.
    pub fn generate(&self, request: pb::GenerateKeyPairRequest) -> Result<pb::Object, CliError> {
        let mut c = self.inner.clone();
        self.call("generating a key", c.generate_key_pair(request))?
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
        let mut c = self.inner.clone();
        let request = pb::SignRequest {
            key: Some(key.clone()),
            mechanism,
            data: data.to_vec(),
            pss,
        };
        Ok(self.call("signing", c.sign(request))?.signature)
    }

    /// Stores a certificate.
    pub fn store_certificate(
        &self,
        id: Vec<u8>,
        label: &str,
        der: Vec<u8>,
    ) -> Result<pb::Object, CliError> {
        let mut c = self.inner.clone();
        let request = pb::StoreCertificateRequest {
            id,
            label: label.to_owned(),
            certificate_der: der,
        };
        self.call("storing a certificate", c.store_certificate(request))
    }

    /// Destroys the objects `reference` names; returns how many.
    pub fn destroy(&self, reference: pb::ObjectRef) -> Result<u32, CliError> {
        let mut c = self.inner.clone();
        let request = pb::DestroyObjectRequest {
            r#ref: Some(reference),
        };
        Ok(self.call("deleting", c.destroy_object(request))?.destroyed)
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
            "start signerd (`signerd serve`; with no config it serves .signerd/admin.sock), or point --socket / SIGNERD_SOCKET at its admin.socket",
        ));
    }
    Endpoint::from_shared(format!("unix:{}", absolute.display()))
        .map(|e| {
            e.connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
        })
        .map_err(|e| {
            CliError::new(
                Exit::BadInput,
                format!("socket path {}: {e}", absolute.display()),
            )
        })
}

fn tls_endpoint(args: &ConnectArgs, addr: &str) -> Result<Endpoint, CliError> {
    let read = |what: &str, path: &Option<PathBuf>| -> Result<Vec<u8>, CliError> {
        let path = path.as_ref().ok_or_else(|| {
            CliError::new(Exit::BadInput, format!("--addr needs --{what}"))
                .hint("give --cert, --key-file and --server-ca of an admin client, or use the admin socket (--socket)")
        })?;
        std::fs::read(path).map_err(|e| {
            CliError::new(
                Exit::BadInput,
                format!("cannot read --{what} {}: {e}", path.display()),
            )
        })
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("server-ca", &args.server_ca)?))
        .identity(Identity::from_pem(
            read("cert", &args.cert)?,
            read("key-file", &args.key_file)?,
        ))
        .domain_name(args.server_name.clone());
    Endpoint::from_shared(format!("https://{addr}"))
        .and_then(|e| e.tls_config(tls))
        .map(|e| {
            e.connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
        })
        .map_err(|e| CliError::new(Exit::BadInput, format!("--addr {addr}: {e}")))
}

fn unreachable(target: &str, e: &tonic::transport::Error) -> CliError {
    use std::error::Error as _;
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.contains("Permission denied") {
        return CliError::new(Exit::Denied, format!("cannot open {target}: {cause}")).hint(
            "the socket is mode 0660: run as signerd's user or group, or ask for your uid in admin.allow_uids (and socket access)",
        );
    }
    CliError::new(Exit::Unreachable, format!("cannot reach {target}: {cause}"))
        .hint("is `signerd serve` running? check --socket / SIGNERD_SOCKET (or --addr) and signerd's admin config")
}

/// An error status from signerd as a CLI error.
pub fn status_error(what: &str, target: &str, status: &tonic::Status) -> CliError {
    let message = format!("{what}: {}", status.message());
    match status.code() {
        Code::PermissionDenied => CliError::new(Exit::Denied, message),
        Code::NotFound => CliError::new(Exit::NotFound, message),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            CliError::new(Exit::BadInput, message)
        }
        Code::Unavailable => CliError::new(Exit::Unreachable, message)
            .hint(format!("check that {target} is up and its token present (signerd check-config)")),
        Code::Unimplemented => CliError::new(Exit::Failed, message)
            .hint("this signerd does not serve the admin API there; on the mTLS port it needs admin.admin_clients"),
        _ => CliError::new(Exit::Failed, message),
    }
}
