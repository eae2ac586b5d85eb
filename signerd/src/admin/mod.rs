//! signerd's admin API, `signerd.admin.v1.TokenAdmin`: keys and certificates in the token for
//! the admin CLI and the PKCS#11 shim, served on a Unix socket and, for listed client
//! certificates, on the mTLS port.
//!
//! The edge is a stack, outermost first: [`identity`] (who is calling: peer uid or certificate)
//! -> [`policy`] (allowed? else PERMISSION_DENIED saying what to configure) -> [`service`]
//! (one audit line per operation through the Notary services' `OpLog`, then the token layer).
//! Errors become status codes in `grpc::status`, as the Notary services' do.

pub mod error;
pub mod identity;
pub mod login;
pub mod policy;
pub mod service;
pub mod serving;
pub mod socket;

mod convert;

use signerd_proto::admin::token_admin_server::TokenAdminServer;
use tower_layer::Layer as _;

use self::identity::{Identify, IdentityLayer};
use self::policy::{AdminPolicy, Enforce, PolicyLayer};
use self::service::TokenAdminService;

/// The admin service with its identity and policy layers, ready for `add_service`.
pub type AdminStack = Identify<Enforce<TokenAdminServer<TokenAdminService>>>;

/// Wraps `service` in the identity and policy layers.
pub fn stack(service: TokenAdminService, policy: AdminPolicy) -> AdminStack {
    IdentityLayer.layer(PolicyLayer::new(policy).layer(TokenAdminServer::new(service)))
}
