//! The operations a policy rule grants, by port: the vocabulary policy, errors and audit
//! records share.

use std::fmt;

use super::record::Port;

/// An operation a rule grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Notary `CreateKey`.
    Create,
    /// Notary `GetKeyInfo`.
    Info,
    /// Notary or admin `Sign`.
    Sign,
    /// Notary `DeleteKey`, admin `DestroyObject`.
    Delete,
    /// Admin: list tokens, mechanisms and objects; log in; the daemon's status.
    List,
    /// Admin: generate a key pair.
    Generate,
    /// Admin: import a private key.
    Import,
    /// Admin: anything on a key or certificate of role `ca` (the trust-pinning CA).
    Ca,
    /// Admin: store a certificate.
    Certificates,
}

impl Operation {
    pub(super) const NOTARY: [Operation; 4] = [
        Operation::Create,
        Operation::Info,
        Operation::Sign,
        Operation::Delete,
    ];
    pub(super) const ADMIN: [Operation; 7] = [
        Operation::List,
        Operation::Generate,
        Operation::Sign,
        Operation::Import,
        Operation::Delete,
        Operation::Ca,
        Operation::Certificates,
    ];

    /// The name used in rules and refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Info => "info",
            Operation::Sign => "sign",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::Generate => "generate",
            Operation::Import => "import",
            Operation::Ca => "ca",
            Operation::Certificates => "certificates",
        }
    }

    /// The operation named `text`.
    pub fn parse(text: &str) -> Option<Operation> {
        Operation::NOTARY
            .iter()
            .chain(Operation::ADMIN.iter())
            .copied()
            .find(|o| o.as_str() == text)
    }

    /// Whether `port` has this operation.
    pub fn port_allows(self, port: Port) -> bool {
        Operation::all(port).contains(&self)
    }

    fn all(port: Port) -> &'static [Operation] {
        match port {
            Port::Notary => &Operation::NOTARY,
            Port::Admin => &Operation::ADMIN,
        }
    }

    /// The operations of `port`, comma separated, for messages.
    pub fn names(port: Port) -> String {
        Operation::all(port)
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The methods of both ports (the last segment of their paths), for naming calls without
    /// copying text.
    pub const METHODS: [&'static str; 14] = [
        "CreateKey",
        "GetKeyInfo",
        "Sign",
        "DeleteKey",
        "ListTokens",
        "ListMechanisms",
        "FindObjects",
        "Login",
        "GenerateKeyPair",
        "ImportPrivateKey",
        "DestroyObject",
        "StoreCertificate",
        "Check",
        "Watch",
    ];

    /// The operation of an RPC, by the last segment of its path; `None` for calls no policy
    /// governs (health).
    pub fn of_method(port: Port, method: &str) -> Option<Operation> {
        Some(match (port, method) {
            (Port::Notary, "CreateKey") => Operation::Create,
            (Port::Notary, "GetKeyInfo") => Operation::Info,
            (Port::Notary, "Sign") => Operation::Sign,
            (Port::Notary, "DeleteKey") => Operation::Delete,
            (Port::Admin, "ListTokens" | "ListMechanisms" | "FindObjects" | "Login" | "Status") => {
                Operation::List
            }
            (Port::Admin, "GenerateKeyPair") => Operation::Generate,
            (Port::Admin, "Sign") => Operation::Sign,
            (Port::Admin, "ImportPrivateKey") => Operation::Import,
            (Port::Admin, "DestroyObject") => Operation::Delete,
            (Port::Admin, "StoreCertificate") => Operation::Certificates,
            _ => return None,
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
