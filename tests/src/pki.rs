//! A test PKI made at run time with rcgen: CAs, server and client certificates, delegation keys.
//!
//! Everything is generated per test into the test's directory; no private key is checked in.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key (unencrypted PKCS#8, P-256), mode 0600.
    pub key: PathBuf,
}

/// A certificate authority whose certificate is written to `<dir>/<name>.crt`.
pub struct TestCa {
    name: String,
    dir: PathBuf,
    cert: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("name", &self.name)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// Makes a new CA (P-256, CN = `name`) and writes its certificate into `dir`.
    pub fn new(dir: &Path, name: &str) -> io::Result<Self> {
        let key = KeyPair::generate().map_err(rcgen_err("generate CA key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err("CA parameters"))?;
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(rcgen_err("self-sign CA"))?;
        let cert_path = dir.join(format!("{name}.crt"));
        write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
        Ok(Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            cert: cert_path,
            issuer: Issuer::new(params, key),
        })
    }

    /// Path of the CA certificate (PEM), what peers put in their trust store.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// Issues a TLS server certificate for `localhost` and `127.0.0.1` (EKU serverAuth), written
    /// as `<name>.crt` / `<name>.key`.
    pub fn issue_server(&self, name: &str) -> io::Result<IssuedCert> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(rcgen_err("server parameters"))?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(name, params)
    }

    /// Issues a TLS client certificate (EKU clientAuth, CN = `name`), written as `<name>.crt` /
    /// `<name>.key`.
    pub fn issue_client(&self, name: &str) -> io::Result<IssuedCert> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err("client parameters"))?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(name, params)
    }

    /// Signs a leaf certificate from `params` (CN set to `name`) with a fresh P-256 key.
    fn issue(&self, name: &str, mut params: CertificateParams) -> io::Result<IssuedCert> {
        params.distinguished_name = common_name(name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().map_err(rcgen_err("generate leaf key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(rcgen_err("sign leaf certificate"))?;
        write_pair(&self.dir, name, &cert.pem(), &key.serialize_pem())
    }
}

/// The PKI one signer needs: a CA, the signer's server certificate, and the client certificate
/// notary-server presents to it.
#[derive(Debug)]
pub struct TestPki {
    /// Issues both certificates; the signer trusts it for clients, notary-server for the signer.
    pub ca: TestCa,
    /// The signer's TLS certificate (SAN `localhost`, `127.0.0.1`; EKU serverAuth).
    pub server: IssuedCert,
    /// notary-server's client certificate towards the signer (EKU clientAuth).
    pub client: IssuedCert,
}

impl TestPki {
    /// Generates the CA `signer-ca`, the server certificate `signer` and the client certificate
    /// `notary-server-client` into `dir`.
    pub fn generate(dir: &Path) -> io::Result<Self> {
        let ca = TestCa::new(dir, "signer-ca")?;
        let server = ca.issue_server("signer")?;
        let client = ca.issue_client("notary-server-client")?;
        Ok(Self { ca, server, client })
    }
}

/// A delegation key for the notary CLI: a self-signed X.509 certificate (for
/// `notary delegation add`) and its unencrypted PKCS#8 key (for `notary key import`), written as
/// `<name>.crt` / `<name>.key`.
///
/// notary 0.7.0 cannot import the encrypted key `notary key generate -o` writes (it has no `path`
/// header, so the importer cannot tell its ID); an unencrypted key is imported and encrypted
/// with the client's passphrase.
pub fn delegation_key(dir: &Path, name: &str) -> io::Result<IssuedCert> {
    let key = KeyPair::generate().map_err(rcgen_err("generate delegation key"))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err("delegation parameters"))?;
    params.distinguished_name = common_name(name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_err("self-sign delegation certificate"))?;
    write_pair(dir, name, &cert.pem(), &key.serialize_pem())
}

/// A distinguished name holding only a common name.
fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Writes `<name>.crt` and `<name>.key` (0600) into `dir`.
fn write_pair(dir: &Path, name: &str, cert_pem: &str, key_pem: &str) -> io::Result<IssuedCert> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    write_file(&cert, cert_pem.as_bytes(), 0o644)?;
    write_file(&key, key_pem.as_bytes(), 0o600)?;
    Ok(IssuedCert { cert, key })
}

/// Creates (or truncates) `path` with `mode` and writes `bytes`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))
}

/// Maps an rcgen error to `io::Error`, naming the step that failed.
fn rcgen_err(step: &'static str) -> impl Fn(rcgen::Error) -> io::Error {
    move |e| io::Error::other(format!("{step}: {e}"))
}
