//! Wire contracts of signerd, generated from `proto/` at build time.
//!
//! - [`notary`]: the Notary signer protocol (protobuf package `proto`), which notary-server speaks
//!   to its remote signer. Names and numbers are frozen by notary-server 0.7.0.
//! - [`health`]: the standard `grpc.health.v1` protocol.
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
