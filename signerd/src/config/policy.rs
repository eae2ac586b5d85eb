//! `[[policy]]`: the rules as written in the config file. `crate::edge::policy::config`
//! checks and compiles them; config only carries them.

use serde::{Deserialize, Serialize};

/// One `[[policy]]` rule as written: who (certificate or socket peer), on which port, may do
/// which operations on which keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyRule {
    /// The rule's name, written in audit records and refusals [default: `policy[N]`].
    pub name: Option<String>,
    /// `notary` (the Notary signer services) or `admin` (the admin API). Required.
    pub port: Option<String>,
    /// Any client certificate the client CA verified (alone, or narrowed by `issuers`).
    pub any_certificate: bool,
    /// Client certificate subjects, RFC 4514 form as signerd logs them (`CN=notary-server`).
    pub subjects: Vec<String>,
    /// Client certificate subjectAltNames (DNS names, URIs, email addresses).
    pub sans: Vec<String>,
    /// Client certificate SHA-256 fingerprints, `sha256:` and 64 hex digits.
    pub fingerprints: Vec<String>,
    /// Issuer names the certificate must have (ties the rule to one issuing CA).
    pub issuers: Vec<String>,
    /// Admin-socket peer uids.
    pub uids: Vec<u32>,
    /// Admin-socket peer primary gids.
    pub gids: Vec<u32>,
    /// Admin-socket peer groups, primary or supplementary.
    pub groups: Vec<u32>,
    /// What the rule grants. Notary port: create, info, sign, delete. Admin port: list,
    /// generate, sign, import, delete, ca, certificates.
    pub operations: Vec<String>,
    /// GUN globs (`*` matches anything, `/` included) [default: every GUN].
    pub guns: Vec<String>,
    /// Role globs [default: every role].
    pub roles: Vec<String>,
    /// Key algorithms: ecdsa, ed25519, rsa [default: every algorithm].
    pub algorithms: Vec<String>,
    /// Key domains: notary, admin, legacy [default: notary and legacy on the Notary port,
    /// all on the admin port].
    pub domains: Vec<String>,
}
