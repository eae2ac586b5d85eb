//! Who is calling: the subject of the client certificate the TLS handshake verified.
//!
//! The seam for per-identity policy: today it names the caller in logs.

use tonic::Request;

/// The verified client certificate's subject, or `-` when there is none.
pub fn client_subject<T>(request: &Request<T>) -> String {
    request
        .peer_certs()
        .and_then(|certs| certs.first().map(crate::tls::subject_of))
        .unwrap_or_else(|| "-".to_owned())
}
