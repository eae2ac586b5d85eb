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
//!
//! One module per part: [`x509`] builds and reads certificates (no token), [`ca`] is the CA
//! (making it, finding it, issuing with it), [`root`] makes root keys, their CSRs and markers.

mod ca;
mod root;
mod x509;

pub use ca::{ca_pem, run_ca, CaVerb};
pub use root::{root_certificate_id, run_csr, run_root, CsrArgs, RootVerb};
pub use x509::default_certificate_file;
