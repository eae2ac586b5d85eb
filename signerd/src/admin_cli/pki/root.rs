//! Root keys for Notary repositories: `signerd csr`, `signerd root new`, the `CN=root` marker
//! certificate the notary CLI lists them by, and the key ID notary gives a root certificate.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use der::{DecodePem as _, Encode as _, EncodePem as _};
use signerd_proto::admin as pb;
use signerd_token::{public_key_from_spki, KeyId};
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile, RequestBuilder};
use x509_cert::request::CertReq;
use x509_cert::Certificate;

use super::ca::{find_ca, finish_issue, issue};
use super::x509::{cert_pem, common_name, common_name_of, random_serial, validity};
use crate::admin_cli::client::{AdminClient, ConnectArgs};
use crate::admin_cli::keys::{parse_key_id, private_key};
use crate::admin_cli::output::{file_stem, write_atomically};
use crate::admin_cli::signer::{TokenSigner, X509Signature};
use crate::admin_cli::{CliError, Exit};

/// Role of root keys and their certificates.
const ROOT_ROLE: &str = "root";
/// Role in the label of the `CN=root` marker certificate the notary CLI lists root keys by
/// (not a trust-pinning certificate, so not labelled `root@gun`).
const MARKER_ROLE: &str = "notary-root-marker";

/// `signerd csr`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["key", "new"])))]
pub struct CsrArgs {
    /// The repository (GUN); it becomes the CSR's CN.
    gun: String,
    /// Sign with this key (TUF key ID).
    #[arg(long, value_name = "ID")]
    key: Option<String>,
    /// Generate a new ECDSA root key for the GUN in the token.
    #[arg(long)]
    new: bool,
    /// Where to write the CSR [default: <gun>.csr].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What to do with root keys.
#[derive(Debug, Subcommand)]
pub enum RootVerb {
    /// A root key in the token, a CSR for it and a root certificate from the CA, at once.
    New {
        /// The repository (GUN).
        gun: String,
        /// Validity in days.
        #[arg(long, default_value_t = 1095)]
        days: u32,
        /// Where to write the certificate [default: <gun>.crt].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `signerd csr`.
pub fn run_csr(connect: &ConnectArgs, args: CsrArgs) -> Result<(), CliError> {
    let client = AdminClient::connect(connect)?;
    let key = match &args.key {
        Some(id) => {
            let id = parse_key_id(id)?;
            let key = private_key(&client, &id)?;
            if !key.gun.is_empty() && key.gun != args.gun {
                return Err(CliError::new(
                    Exit::BadInput,
                    format!(
                        "key {id} belongs to {} ({} key), not to {}",
                        key.gun, key.role, args.gun
                    ),
                )
                .hint(format!(
                    "use the key of {} (`signerd key list --gun {}`) or `signerd csr {} --new`",
                    args.gun, args.gun, args.gun
                )));
            }
            key
        }
        None => {
            let key = new_root_key(&client, &args.gun)?;
            store_root_marker(&client, &key, &args.gun)?;
            key
        }
    };
    let csr = make_csr(&client, &key, &args.gun)?;
    let pem = csr
        .to_pem(der::pem::LineEnding::LF)
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot encode the CSR: {e}")))?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.csr", file_stem(&args.gun))));
    write_atomically(&out, pem.as_bytes(), 0o644)?;
    println!("{}", out.display());
    println!("key ID {}", key.tuf_key_id);
    Ok(())
}

/// Runs a `root` verb.
pub fn run_root(connect: &ConnectArgs, verb: RootVerb) -> Result<(), CliError> {
    let client = AdminClient::connect(connect)?;
    match verb {
        RootVerb::New {
            gun,
            days,
            out,
            json,
        } => {
            // Fail before making a key when there is no usable CA.
            find_ca(&client)?;
            let key = new_root_key(&client, &gun)?;
            store_root_marker(&client, &key, &gun)?;
            let csr = make_csr(&client, &key, &gun)?;
            let issued = issue(&client, &csr, days)?;
            finish_issue(&issued, out, json)
        }
    }
}

fn new_root_key(client: &AdminClient, gun: &str) -> Result<pb::Object, CliError> {
    client.generate(pb::GenerateKeyPairRequest {
        key_type: pb::KeyType::EcP256 as i32,
        gun: gun.to_owned(),
        role: ROOT_ROLE.to_owned(),
        ..Default::default()
    })
}

/// Stores, beside a new root key, the self-signed `CN=root` certificate the notary CLI lists
/// PKCS#11 root keys by (as a YubiKey holds one per key; NOTARY-INTEROP.md).
fn store_root_marker(client: &AdminClient, key: &pb::Object, gun: &str) -> Result<(), CliError> {
    let signer = TokenSigner::new(client, key)?;
    let name = common_name(ROOT_ROLE)?;
    let builder = CertificateBuilder::new(
        Profile::Leaf {
            issuer: name.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        random_serial()?,
        validity(3650, None)?,
        name,
        signer.spki().clone(),
        &signer,
    )
    .map_err(|e| {
        CliError::new(
            Exit::Failed,
            format!("cannot build the root marker certificate: {e}"),
        )
    })?;
    let cert = builder.build::<X509Signature>().map_err(|e| {
        CliError::new(
            Exit::Failed,
            format!("cannot sign the root marker certificate: {e}"),
        )
    })?;
    let der = cert
        .to_der()
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    let id = key.r#ref.as_ref().map(|r| r.id.clone()).unwrap_or_default();
    client.store_certificate(id, &format!("{MARKER_ROLE}@{gun}"), der)?;
    Ok(())
}

fn make_csr(client: &AdminClient, key: &pb::Object, gun: &str) -> Result<CertReq, CliError> {
    let signer = TokenSigner::new(client, key)?;
    RequestBuilder::new(common_name(gun)?, &signer)
        .and_then(|b| b.build::<X509Signature>())
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot make the CSR: {e}")))
}

/// The TUF key ID notary gives a root certificate in root.json (`ecdsa-x509` / `rsa-x509`
/// over its PEM, as Go re-encodes it), for `trust-pinning --certs`; the certificate's CN must
/// be `gun`.
pub fn root_certificate_id(file: &Path, gun: &str) -> Result<String, CliError> {
    let pem = std::fs::read_to_string(file).map_err(|e| {
        CliError::new(
            Exit::NotFound,
            format!("cannot read root certificate {}: {e}", file.display()),
        )
        .hint(format!(
            "make it with `signerd root new {gun}`, or name it with --root-cert FILE"
        ))
    })?;
    let cert = Certificate::from_pem(pem.as_bytes()).map_err(|e| {
        CliError::new(
            Exit::BadInput,
            format!("{} is not a PEM certificate: {e}", file.display()),
        )
    })?;
    let cn = common_name_of(&cert.tbs_certificate.subject).unwrap_or_default();
    if cn != gun {
        return Err(CliError::new(
            Exit::BadInput,
            format!(
                "{} is the root certificate of {cn:?}, not of {gun}",
                file.display()
            ),
        )
        .hint(format!(
            "pin {gun} to its own certificate (`signerd root new {gun}` writes one)"
        )));
    }
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| CliError::new(Exit::BadInput, e.to_string()))?;
    let keytype = match public_key_from_spki(&spki) {
        Ok((signerd_token::KeyAlgorithm::Rsa, _)) => "rsa-x509",
        Ok((signerd_token::KeyAlgorithm::Ecdsa, _)) => "ecdsa-x509",
        _ => {
            return Err(CliError::new(
                Exit::BadInput,
                format!(
                    "{}: notary root certificates hold ECDSA or RSA keys",
                    file.display()
                ),
            ))
        }
    };
    Ok(KeyId::of_tuf_public(keytype, cert_pem(&cert)?.as_bytes()).to_string())
}
