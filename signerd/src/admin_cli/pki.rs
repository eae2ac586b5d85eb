//! `signerd ca init|issue|show`, `signerd csr` and `signerd root new`: the trust-pinning PKI,
//! built with `x509-cert` and signed by keys in the token.
//!
//! What notary accepts (NOTARY-INTEROP.md): the root certificate is a leaf (not a CA) whose
//! CN is the GUN, signed with SHA-256, without an extended key usage (so Go's `x509.Verify`
//! default serverAuth check passes), valid now, chaining to the pinned CA.
//!
//! The token holds the CA key and certificate, and each root key with a self-signed `CN=root`
//! marker certificate, as a YubiKey would: the notary CLI lists PKCS#11 root keys by their
//! certificate objects and takes the role from the CN, the last one listed for a key winning.
//! So the CA-issued root certificate (CN = the GUN) is written as a file and never stored in
//! the token beside the marker.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use der::{Decode as _, DecodePem as _, Encode as _, EncodePem as _};
use serde_json::json;
use signerd_proto::admin as pb;
use signerd_token::{public_key_from_spki, KeyId};
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile, RequestBuilder};
use x509_cert::name::Name;
use x509_cert::request::CertReq;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use super::client::{AdminClient, ConnectArgs};
use super::keys::{parse_key_id, private_key};
use super::output::{file_stem, print_json, write_atomically};
use super::signer::{verify_csr, TokenSigner, X509Signature};
use super::{CliError, Exit};

/// Role of the CA key and certificate in their `role@gun` label (gun empty).
const CA_ROLE: &str = "ca";
/// Role of root keys and their certificates.
const ROOT_ROLE: &str = "root";
/// Role in the label of the `CN=root` marker certificate the notary CLI lists root keys by
/// (not a trust-pinning certificate, so not labelled `root@gun`).
const MARKER_ROLE: &str = "notary-root-marker";
/// How far back a new certificate's notBefore goes, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(300);

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

/// A certificate just issued and stored in the token.
struct Issued {
    gun: String,
    certificate: Certificate,
    key_id: String,
}

fn finish_issue(issued: &Issued, out: Option<PathBuf>, json: bool) -> Result<(), CliError> {
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

fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
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

/// `CN=<value>` as a name, the value escaped as RFC 4514 wants.
fn common_name(value: &str) -> Result<Name, CliError> {
    let mut escaped = String::new();
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Name::from_str(&format!("CN={escaped}")).map_err(|e| {
        CliError::new(
            Exit::BadInput,
            format!("'{value}' cannot be a certificate CN: {e}"),
        )
    })
}

fn make_csr(client: &AdminClient, key: &pb::Object, gun: &str) -> Result<CertReq, CliError> {
    let signer = TokenSigner::new(client, key)?;
    RequestBuilder::new(common_name(gun)?, &signer)
        .and_then(|b| b.build::<X509Signature>())
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot make the CSR: {e}")))
}

fn random_serial() -> Result<SerialNumber, CliError> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot read /dev/urandom: {e}")))?;
    // Positive and 16 bytes long: clear the top bit, set the next one.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::new(&bytes).map_err(|e| CliError::new(Exit::Failed, e.to_string()))
}

fn validity(days: u32, not_after_cap: Option<SystemTime>) -> Result<Validity, CliError> {
    if days == 0 {
        return Err(CliError::new(Exit::BadInput, "--days must be at least 1"));
    }
    let now = SystemTime::now();
    let mut end = now + Duration::from_secs(u64::from(days) * 86_400);
    if let Some(cap) = not_after_cap {
        if end > cap {
            eprintln!(
                "signerd: the certificate ends when the CA does ({})",
                Time::try_from(cap)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            );
            end = cap;
        }
    }
    let time = |t: SystemTime| {
        Time::try_from(t).map_err(|e| CliError::new(Exit::BadInput, format!("validity: {e}")))
    };
    Ok(Validity {
        not_before: time(now - BACKDATE)?,
        not_after: time(end)?,
    })
}

fn cert_pem(cert: &Certificate) -> Result<String, CliError> {
    cert.to_pem(der::pem::LineEnding::LF)
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot encode the certificate: {e}")))
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
        key_type: super::keys::key_type(algorithm)? as i32,
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
fn find_ca(client: &AdminClient) -> Result<(Certificate, pb::Object), CliError> {
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

/// The CN of a name, if it has one.
fn common_name_of(name: &Name) -> Option<String> {
    const CN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == CN)
        .and_then(|atv| {
            der::asn1::Utf8StringRef::try_from(&atv.value)
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    der::asn1::PrintableStringRef::try_from(&atv.value)
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
}

fn issue(client: &AdminClient, csr: &CertReq, days: u32) -> Result<Issued, CliError> {
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

/// The file `root new` and `ca issue` write a GUN's root certificate to by default.
pub fn default_certificate_file(gun: &str) -> PathBuf {
    PathBuf::from(format!("{}.crt", file_stem(gun)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gun_common_names_escape_what_rfc4514_needs() {
        let name = common_name("example.com/acme/app").unwrap();
        assert_eq!(
            common_name_of(&name).as_deref(),
            Some("example.com/acme/app")
        );
        let odd = common_name("a,b+c").unwrap();
        assert_eq!(common_name_of(&odd).as_deref(), Some("a,b+c"));
    }

    #[test]
    fn validity_is_backdated_and_capped() {
        let cap = SystemTime::now() + Duration::from_secs(86_400);
        let v = validity(30, Some(cap)).unwrap();
        assert!(v.not_after.to_system_time() <= cap);
        assert!(v.not_before.to_system_time() < SystemTime::now());
        assert!(validity(0, None).is_err());
    }
}
