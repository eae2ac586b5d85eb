//! The repository CA in the token: `signerd ca init|issue|show`, finding the CA, and issuing
//! root certificates with it (for `ca issue` and `root new`).

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::SystemTime;

use clap::Subcommand;
use der::{Decode as _, DecodePem as _, Encode as _};
use serde_json::json;
use signerd_proto::admin as pb;
use signerd_token::{public_key_from_spki, KeyId};
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
use x509_cert::name::Name;
use x509_cert::request::CertReq;
use x509_cert::Certificate;

use super::x509::{
    absolute, cert_pem, common_name_of, default_certificate_file, random_serial, validity,
};
use crate::admin_cli::client::{AdminClient, ConnectArgs};
use crate::admin_cli::output::{print_json, write_atomically};
use crate::admin_cli::signer::{verify_csr, TokenSigner, X509Signature};
use crate::admin_cli::{CliError, Exit};

/// Role of the CA key and certificate in their `role@gun` label (gun empty).
const CA_ROLE: &str = "ca";

/// What to do with the CA.
#[derive(Debug, Subcommand)]
pub enum CaVerb {
    /// Make the CA: a key in the token and a self-signed CA certificate signed by it.
    Init {
        /// The CA's subject, e.g. "CN=Notary CA,O=Example".
        #[arg(long)]
        subject: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// ecdsa (P-256) or rsa.
        #[arg(long, default_value = "ecdsa", value_parser = ["ecdsa", "rsa"])]
        algorithm: String,
        /// Where to write the CA certificate (PEM).
        #[arg(long, default_value = "ca.pem")]
        out: PathBuf,
        /// Replace an existing CA certificate (its key stays in the token).
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Issue a root certificate (leaf, CN = GUN) for a CSR whose key is in the token, as a file.
    Issue {
        /// The CSR (PEM), e.g. from `signerd csr`.
        csr: PathBuf,
        /// Validity in days (never past the CA's own expiry).
        #[arg(long, default_value_t = 1095)]
        days: u32,
        /// Where to write the certificate [default: <gun>.crt].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the CA certificate (PEM), or write it with --out.
    Show {
        /// Write it here instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs a `ca` verb.
pub fn run_ca(connect: &ConnectArgs, verb: CaVerb) -> Result<(), CliError> {
    let client = AdminClient::connect(connect)?;
    match verb {
        CaVerb::Init {
            subject,
            days,
            algorithm,
            out,
            force,
            json,
        } => ca_init(&client, &subject, days, &algorithm, &out, force, json),
        CaVerb::Issue {
            csr,
            days,
            out,
            json,
        } => {
            let pem = std::fs::read_to_string(&csr).map_err(|e| {
                CliError::new(
                    Exit::BadInput,
                    format!("cannot read {}: {e}", csr.display()),
                )
            })?;
            let request = CertReq::from_pem(pem.as_bytes()).map_err(|e| {
                CliError::new(
                    Exit::BadInput,
                    format!("{} is not a PEM CSR: {e}", csr.display()),
                )
                .hint("make one with `signerd csr <gun> --new`")
            })?;
            let issued = issue(&client, &request, days)?;
            finish_issue(&issued, out, json)
        }
        CaVerb::Show { out } => {
            let (cert, _) = find_ca(&client)?;
            let pem = cert_pem(&cert)?;
            match out {
                Some(path) => {
                    write_atomically(&path, pem.as_bytes(), 0o644)?;
                    println!("{}", path.display());
                }
                None => print!("{pem}"),
            }
            Ok(())
        }
    }
}

/// A certificate just issued and stored in the token.
pub(super) struct Issued {
    gun: String,
    certificate: Certificate,
    key_id: String,
}

/// Writes an issued root certificate and says where it is and what to run next.
pub(super) fn finish_issue(
    issued: &Issued,
    out: Option<PathBuf>,
    json: bool,
) -> Result<(), CliError> {
    let out = out.unwrap_or_else(|| default_certificate_file(&issued.gun));
    let pem = cert_pem(&issued.certificate)?;
    write_atomically(&out, pem.as_bytes(), 0o644)?;
    let cert_key_id = KeyId::of_tuf_public("ecdsa-x509", pem.as_bytes());
    if json {
        print_json(&json!({
            "gun": issued.gun,
            "certificate": absolute(&out),
            "key_id": issued.key_id,
            "root_key_id": cert_key_id.to_string(),
        }));
    } else {
        println!("certificate {}", out.display());
        println!("key ID      {}", issued.key_id);
        println!(
            "next        notary init {} --rootcert {} --publish",
            issued.gun,
            out.display()
        );
    }
    Ok(())
}

fn ca_init(
    client: &AdminClient,
    subject: &str,
    days: u32,
    algorithm: &str,
    out: &Path,
    force: bool,
    json: bool,
) -> Result<(), CliError> {
    let name = Name::from_str(subject).map_err(|e| {
        CliError::new(
            Exit::BadInput,
            format!("--subject {subject:?} is not a distinguished name: {e}"),
        )
        .hint("write it as RFC 4514, e.g. --subject \"CN=Notary CA,O=Example\"")
    })?;
    let existing = ca_certificates(client)?;
    if let Some(old) = existing.first() {
        if !force {
            let old_subject = Certificate::from_der(&old.certificate_der)
                .map(|c| c.tbs_certificate.subject.to_string())
                .unwrap_or_default();
            return Err(CliError::new(
                Exit::BadInput,
                format!("the token already has a CA ({old_subject}, key {})", old.tuf_key_id),
            )
            .hint("`signerd ca show` prints it; `signerd ca init --force ...` replaces it (clients pinned to the old CA must be re-pinned)"));
        }
        for old in &existing {
            if let Some(r) = &old.r#ref {
                client.destroy(r.clone())?;
            }
        }
    }
    let key = client.generate(pb::GenerateKeyPairRequest {
        key_type: crate::admin_cli::keys::key_type(algorithm)? as i32,
        role: CA_ROLE.to_owned(),
        ..Default::default()
    })?;
    let signer = TokenSigner::new(client, &key)?;
    let builder = CertificateBuilder::new(
        Profile::Root,
        random_serial()?,
        validity(days, None)?,
        name,
        signer.spki().clone(),
        &signer,
    )
    .map_err(|e| {
        CliError::new(
            Exit::Failed,
            format!("cannot build the CA certificate: {e}"),
        )
    })?;
    let cert = builder
        .build::<X509Signature>()
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot sign the CA certificate: {e}")))?;
    let der = cert
        .to_der()
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    let id = key.r#ref.as_ref().map(|r| r.id.clone()).unwrap_or_default();
    client.store_certificate(id, &format!("{CA_ROLE}@"), der)?;
    let pem = cert_pem(&cert)?;
    write_atomically(out, pem.as_bytes(), 0o644)?;
    if json {
        print_json(&json!({ "certificate": absolute(out), "key_id": key.tuf_key_id }));
    } else {
        println!("certificate {}", out.display());
        println!("key ID      {}", key.tuf_key_id);
    }
    Ok(())
}

fn ca_certificates(client: &AdminClient) -> Result<Vec<pb::Object>, CliError> {
    Ok(client
        .find(pb::FindObjectsRequest {
            class: pb::ObjectClass::Certificate as i32,
            role: CA_ROLE.to_owned(),
            ..Default::default()
        })?
        .into_iter()
        .filter(|o| o.gun.is_empty())
        .collect())
}

/// The CA certificate and its private key, checked to be valid now.
pub(super) fn find_ca(client: &AdminClient) -> Result<(Certificate, pb::Object), CliError> {
    let cert_object = ca_certificates(client)?.into_iter().next().ok_or_else(|| {
        CliError::new(Exit::NotFound, "the token has no CA")
            .hint("make one with `signerd ca init --subject \"CN=Notary CA\"`")
    })?;
    let cert = Certificate::from_der(&cert_object.certificate_der).map_err(|e| {
        CliError::new(
            Exit::Failed,
            format!("the CA certificate in the token does not parse: {e}"),
        )
    })?;
    let validity = &cert.tbs_certificate.validity;
    let now = SystemTime::now();
    if validity.not_after.to_system_time() < now {
        return Err(CliError::new(
            Exit::BadInput,
            format!("the CA certificate expired on {}", validity.not_after),
        )
        .hint("make a new CA with `signerd ca init --force --subject ...`, then re-pin clients with `signerd trust-pinning <gun> --ca --write ...`"));
    }
    if validity.not_before.to_system_time() > now {
        return Err(CliError::new(
            Exit::BadInput,
            format!(
                "the CA certificate is not valid before {}",
                validity.not_before
            ),
        )
        .hint("check this machine's clock"));
    }
    let id = cert_object
        .r#ref
        .as_ref()
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let key = client
        .find(pb::FindObjectsRequest {
            class: pb::ObjectClass::PrivateKey as i32,
            id,
            ..Default::default()
        })?
        .into_iter()
        .next()
        .ok_or_else(|| {
            CliError::new(
                Exit::NotFound,
                format!(
                    "the CA's key {} is not in the token",
                    cert_object.tuf_key_id
                ),
            )
            .hint("make a new CA with `signerd ca init --force --subject ...`")
        })?;
    Ok((cert, key))
}

pub(super) fn issue(client: &AdminClient, csr: &CertReq, days: u32) -> Result<Issued, CliError> {
    verify_csr(csr).map_err(|e| {
        CliError::new(Exit::BadInput, format!("refusing the CSR: {e}"))
            .hint("make a fresh CSR with `signerd csr <gun> --key <ID>`")
    })?;
    let gun = common_name_of(&csr.info.subject).ok_or_else(|| {
        CliError::new(
            Exit::BadInput,
            "the CSR's subject has no CN; notary needs CN = the GUN",
        )
        .hint("make the CSR with `signerd csr <gun> ...`")
    })?;
    let spki_der = csr
        .info
        .public_key
        .to_der()
        .map_err(|e| CliError::new(Exit::BadInput, e.to_string()))?;
    let (algorithm, public) = public_key_from_spki(&spki_der)
        .map_err(|e| CliError::new(Exit::BadInput, format!("the CSR's key: {e}")))?;
    let key_id = KeyId::of_public_key(algorithm, &public);
    let in_token = client.find(pb::FindObjectsRequest {
        class: pb::ObjectClass::PrivateKey as i32,
        tuf_key_id: key_id.to_string(),
        ..Default::default()
    })?;
    let Some(key) = in_token.into_iter().next() else {
        return Err(CliError::new(
            Exit::BadInput,
            format!("the CSR's key {key_id} is not in the token; signerd issues root certificates only for keys that never leave it"),
        )
        .hint(format!("make the key and CSR in the token: `signerd csr {gun} --new` (or `signerd root new {gun}`)")));
    };
    if !key.gun.is_empty() && key.gun != gun {
        return Err(CliError::new(
            Exit::BadInput,
            format!(
                "the CSR is for {gun} but its key {key_id} belongs to {}",
                key.gun
            ),
        )
        .hint(format!(
            "make a CSR for {gun} with its own key: `signerd csr {gun} --new`"
        )));
    }
    let (ca_cert, ca_key) = find_ca(client)?;
    let signer = TokenSigner::new(client, &ca_key)?;
    let builder = CertificateBuilder::new(
        Profile::Leaf {
            issuer: ca_cert.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        random_serial()?,
        validity(
            days,
            Some(ca_cert.tbs_certificate.validity.not_after.to_system_time()),
        )?,
        csr.info.subject.clone(),
        csr.info.public_key.clone(),
        &signer,
    )
    .map_err(|e| CliError::new(Exit::Failed, format!("cannot build the certificate: {e}")))?;
    let certificate = builder
        .build::<X509Signature>()
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot sign the certificate: {e}")))?;
    Ok(Issued {
        gun,
        certificate,
        key_id: key_id.to_string(),
    })
}

/// The CA certificate's PEM, for `trust-pinning --ca`.
pub fn ca_pem(client: &AdminClient) -> Result<String, CliError> {
    let (cert, _) = find_ca(client)?;
    cert_pem(&cert)
}
