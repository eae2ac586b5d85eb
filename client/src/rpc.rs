//! The admin RPCs of `signerd.admin.v1.TokenAdmin`, and which request goes to which.

use std::fmt;

use signerd_proto::admin as pb;

use crate::secret;

/// One RPC of signerd's admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// The tokens signerd serves.
    ListTokens,
    /// The mechanisms of the token.
    ListMechanisms,
    /// Checks a user or SO PIN.
    Login,
    /// Objects matching a filter.
    FindObjects,
    /// Makes a key pair in the token.
    GenerateKeyPair,
    /// Signs with a private key in the token.
    Sign,
    /// Stores a certificate in the token.
    StoreCertificate,
    /// Imports a private key into the token.
    ImportPrivateKey,
    /// Destroys the objects a reference names.
    DestroyObject,
    /// The running daemon's state.
    Status,
}

impl Rpc {
    /// Every admin RPC.
    pub const ALL: [Rpc; 10] = [
        Rpc::ListTokens,
        Rpc::ListMechanisms,
        Rpc::Login,
        Rpc::FindObjects,
        Rpc::GenerateKeyPair,
        Rpc::Sign,
        Rpc::StoreCertificate,
        Rpc::ImportPrivateKey,
        Rpc::DestroyObject,
        Rpc::Status,
    ];

    /// The method name in the proto.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::ListTokens => "ListTokens",
            Rpc::ListMechanisms => "ListMechanisms",
            Rpc::Login => "Login",
            Rpc::FindObjects => "FindObjects",
            Rpc::GenerateKeyPair => "GenerateKeyPair",
            Rpc::Sign => "Sign",
            Rpc::StoreCertificate => "StoreCertificate",
            Rpc::ImportPrivateKey => "ImportPrivateKey",
            Rpc::DestroyObject => "DestroyObject",
            Rpc::Status => "Status",
        }
    }

    /// The HTTP/2 path of the method.
    pub fn path(self) -> &'static str {
        match self {
            Rpc::ListTokens => "/signerd.admin.v1.TokenAdmin/ListTokens",
            Rpc::ListMechanisms => "/signerd.admin.v1.TokenAdmin/ListMechanisms",
            Rpc::Login => "/signerd.admin.v1.TokenAdmin/Login",
            Rpc::FindObjects => "/signerd.admin.v1.TokenAdmin/FindObjects",
            Rpc::GenerateKeyPair => "/signerd.admin.v1.TokenAdmin/GenerateKeyPair",
            Rpc::Sign => "/signerd.admin.v1.TokenAdmin/Sign",
            Rpc::StoreCertificate => "/signerd.admin.v1.TokenAdmin/StoreCertificate",
            Rpc::ImportPrivateKey => "/signerd.admin.v1.TokenAdmin/ImportPrivateKey",
            Rpc::DestroyObject => "/signerd.admin.v1.TokenAdmin/DestroyObject",
            Rpc::Status => "/signerd.admin.v1.TokenAdmin/Status",
        }
    }

    /// Whether sending the request twice does no harm: reads, signatures, and destroying what
    /// a reference names (the second time finds nothing). Calls that make or change something
    /// are not, and are sent again only when the first cannot have reached signerd.
    pub fn is_idempotent(self) -> bool {
        match self {
            Rpc::ListTokens
            | Rpc::ListMechanisms
            | Rpc::FindObjects
            | Rpc::Sign
            | Rpc::DestroyObject
            | Rpc::Status => true,
            Rpc::Login | Rpc::GenerateKeyPair | Rpc::StoreCertificate | Rpc::ImportPrivateKey => {
                false
            }
        }
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request of the admin API: the RPC it goes to and the message that answers it.
pub trait Call: prost::Message + Clone + Send + Sync + 'static {
    /// The RPC.
    const RPC: Rpc;
    /// Its answer.
    type Response: prost::Message + Default + Send + 'static;
}

macro_rules! calls {
    ($($request:ty => $rpc:ident -> $response:ty;)*) => {
        $(
            impl Call for $request {
                const RPC: Rpc = Rpc::$rpc;
                type Response = $response;
            }
        )*
    };
}

// Login and ImportPrivateKey take only the wiped request types: a PIN or a private key never
// sits in a plain `Vec` on its way to signerd.
calls! {
    pb::ListTokensRequest => ListTokens -> pb::ListTokensResponse;
    pb::ListMechanismsRequest => ListMechanisms -> pb::ListMechanismsResponse;
    secret::LoginRequest => Login -> pb::LoginResponse;
    pb::FindObjectsRequest => FindObjects -> pb::FindObjectsResponse;
    pb::GenerateKeyPairRequest => GenerateKeyPair -> pb::GenerateKeyPairResponse;
    pb::SignRequest => Sign -> pb::SignResponse;
    pb::StoreCertificateRequest => StoreCertificate -> pb::Object;
    secret::ImportPrivateKeyRequest => ImportPrivateKey -> pb::ImportPrivateKeyResponse;
    pb::DestroyObjectRequest => DestroyObject -> pb::DestroyObjectResponse;
    pb::StatusRequest => Status -> pb::StatusResponse;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_service_and_the_name() {
        for rpc in Rpc::ALL {
            assert_eq!(
                rpc.path(),
                format!("/signerd.admin.v1.TokenAdmin/{}", rpc.name())
            );
        }
    }
}
