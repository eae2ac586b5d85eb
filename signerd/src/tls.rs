//! Mutual TLS for the gRPC endpoint: files checked up front with rustls so a mistake is
//! reported by name at startup (and by `check-config`), not as a failed handshake later.
//!
//! Clients must present a certificate that chains to the client CA (and, when it has an
//! extended key usage, one that includes clientAuth, as the Go signer requires); TLS 1.2 and
//! 1.3 only; ALPN `h2`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsFiles;

/// Loaded and checked TLS material.
pub struct TlsMaterial {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial { .. }")
    }
}

/// Reads the TLS files and checks that they make a working mutual-TLS server.
pub fn load(files: &TlsFiles) -> Result<TlsMaterial, String> {
    let read = |what: &str, path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
    };
    let cert_pem = read("server.tls_cert", &files.cert)?;
    let key_pem = read("server.tls_key", &files.key)?;
    let ca_pem = read("server.client_ca", &files.client_ca)?;

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "server.tls_cert {}: not PEM certificates: {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls_cert {} holds no certificate",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "server.tls_key {}: no PEM private key found ({e})",
            files.key.display()
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    let mut any = false;
    for ca in CertificateDer::pem_slice_iter(&ca_pem) {
        let ca = ca.map_err(|e| {
            format!(
                "server.client_ca {}: not PEM ({e})",
                files.client_ca.display()
            )
        })?;
        roots.add(ca).map_err(|e| {
            format!(
                "server.client_ca {}: not a usable CA certificate ({e})",
                files.client_ca.display()
            )
        })?;
        any = true;
    }
    if !any {
        return Err(format!(
            "server.client_ca {} holds no certificate",
            files.client_ca.display()
        ));
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("server.client_ca {}: {e}", files.client_ca.display()))?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "server.tls_key {} does not fit server.tls_cert {}: {e}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    Ok(TlsMaterial {
        cert_pem,
        key_pem,
        ca_pem,
    })
}

impl TlsMaterial {
    /// The tonic server configuration: client certificates required.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(false)
            .timeout(std::time::Duration::from_secs(10))
    }
}

/// The subject of a client's leaf certificate (RFC 4514 form), for logs and policy.
pub fn subject_of(cert: &CertificateDer<'_>) -> String {
    use der::Decode as _;
    match x509_cert::Certificate::from_der(cert.as_ref()) {
        Ok(c) => c.tbs_certificate.subject.to_string(),
        Err(_) => "<unparsable certificate>".to_owned(),
    }
}
