//! Wire contracts of signerd, generated from `proto/` at build time.
//!
//! - [`notary`]: the Notary signer protocol (protobuf package `proto`), which notary-server speaks
//!   to its remote signer. Names and numbers are frozen by notary-server 0.7.0.
//! - [`health`]: the standard `grpc.health.v1` protocol.
//! - [`admin`]: signerd's own admin API, `signerd.admin.v1` (keys, certificates, signing by
//!   mechanism; used by the admin CLI and by pkcs11-shim).
#![forbid(unsafe_code)]

/// The Notary signer protocol: `proto.KeyManagement` and `proto.Signer`.
pub mod notary {
    #![allow(missing_docs, clippy::doc_lazy_continuation)]
    tonic::include_proto!("proto");
}

/// The gRPC health checking protocol, `grpc.health.v1.Health`.
pub mod health {
    #![allow(missing_docs, clippy::doc_lazy_continuation)]
    tonic::include_proto!("grpc.health.v1");
}

/// signerd's admin API, `signerd.admin.v1`.
pub mod admin {
    #![allow(missing_docs, clippy::doc_lazy_continuation)]
    tonic::include_proto!("signerd.admin.v1");
}
