//! signerd's integration tests, in one binary so the harness (`signerd-tests`) links once.
//!
//! One module per area; a new area is a file beside this one and one `mod` line below. Each
//! test starts its own token, signerd and notary-server in a temporary directory of its own,
//! and reads the workspace's binaries from the paths `scripts/test.sh` passes in (see
//! [`signerd_tests::artifacts`]): no test builds anything.

mod admin_api;
mod admin_cli;
mod audit_trail;
mod cli;
mod go_signer_reference;
mod hostile_input;
mod key_index;
mod keygen_atomic;
mod login_limit;
mod metrics;
mod migrate_notary_signer;
mod notary_lifecycle;
mod remote_token;
mod replicas;
mod scheduling;
mod security_domains;
mod security_policy;
mod shim_e2e;
mod status;
mod systemd_unit;
mod thread_bound;
mod tls_reload;
mod token_faults;
mod trust_pinning;
mod trust_pinning_doc;
mod tuf_python;
mod wire;
