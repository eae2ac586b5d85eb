//! A minimal HTTPS GET over rustls, enough to read a status code from notary-server.
//!
//! Chosen over curl (an outside binary) and over an HTTP client crate (more to build): rustls is
//! already in the dependency tree through tonic.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Longest accepted status line plus headers before the status is parsed.
const MAX_HEAD: usize = 16 * 1024;

/// GETs `https://<addr><path>` trusting only the CA certificates in `ca_file`, checks the
/// server certificate against the IP of `addr`, and returns the HTTP status code.
pub fn get_status(
    addr: SocketAddr,
    path: &str,
    ca_file: &Path,
    timeout: Duration,
) -> io::Result<u16> {
    let config = client_config(ca_file)?;
    let server_name = ServerName::IpAddress(addr.ip().into());
    let connection = ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| io::Error::other(format!("TLS client setup: {e}")))?;
    let socket = TcpStream::connect_timeout(&addr, timeout)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    let mut tls = StreamOwned::new(connection, socket);

    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())?;
    tls.flush()?;

    // Only the status line is needed: read until its end, then drop the connection.
    let mut head = Vec::new();
    let mut chunk = [0_u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        if head.len() > MAX_HEAD {
            return Err(io::Error::other("no HTTP status line in the first 16 KiB"));
        }
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before an HTTP status line",
            ));
        }
        head.extend_from_slice(&chunk[..n]);
    }
    parse_status_line(&head)
}

/// A rustls client configuration trusting only the certificates in `ca_file`.
fn client_config(ca_file: &Path) -> io::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| io::Error::other(format!("reading {}: {e}", ca_file.display())))?;
    for cert in certs {
        let cert =
            cert.map_err(|e| io::Error::other(format!("parsing {}: {e}", ca_file.display())))?;
        roots
            .add(cert)
            .map_err(|e| io::Error::other(format!("CA in {}: {e}", ca_file.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Parses `HTTP/1.1 200 OK\r\n...` into 200.
fn parse_status_line(head: &[u8]) -> io::Result<u16> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(status))) if version.starts_with("HTTP/") => Ok(status),
        _ => Err(io::Error::other(format!(
            "not an HTTP status line: {line:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_status_line;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n").ok(), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.1 503 Service Unavailable\r\nX: y\r\n").ok(),
            Some(503)
        );
        assert!(parse_status_line(b"SSH-2.0-x\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1 abc\r\n").is_err());
    }
}
