//! The `[[policy]]` rules as written in the config file, and their checks: every mistake is
//! reported with the rule it is in and how to write it right.

use signerd_token::{KeyAlgorithm, KeyDomain};

use super::{Glob, Operation, Rule, Who};
use crate::edge::record::Port;

pub use crate::config::PolicyRule;

/// Checks every rule and compiles the good ones; the errors name the rule and say how to fix it.
pub fn compile(rules: &[PolicyRule]) -> Result<Vec<Rule>, Vec<String>> {
    let mut errors = Vec::new();
    let mut compiled = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        match compile_one(i, rule) {
            Ok(r) => compiled.push(r),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(compiled)
    } else {
        Err(errors)
    }
}

/// The errors of `rules`, for config validation (`check-config`, startup, SIGHUP).
pub fn validate(rules: &[PolicyRule]) -> Vec<String> {
    compile(rules).err().unwrap_or_default()
}

fn compile_one(index: usize, r: &PolicyRule) -> Result<Rule, Vec<String>> {
    let name = r
        .name
        .clone()
        .unwrap_or_else(|| format!("policy[{}]", index + 1));
    let at = format!("[[policy]] {name:?}");
    let mut errors = Vec::new();
    let port = match r.port.as_deref() {
        Some("notary") => Some(Port::Notary),
        Some("admin") => Some(Port::Admin),
        Some(other) => {
            errors.push(format!(
                "{at}: port = {other:?} is not a port; write port = \"notary\" or port = \"admin\""
            ));
            None
        }
        None => {
            errors.push(format!(
                "{at}: no port; add port = \"notary\" (the Notary signer services) or port = \"admin\" (the admin API)"
            ));
            None
        }
    };
    let mut fingerprints = Vec::new();
    for f in &r.fingerprints {
        let mut bytes = [0u8; 32];
        match f
            .strip_prefix("sha256:")
            .map(|h| hex::decode_to_slice(h.replace(':', ""), &mut bytes))
        {
            Some(Ok(())) => fingerprints.push(bytes),
            _ => errors.push(format!(
                "{at}: fingerprint {f:?} is not sha256: and 64 hex digits (openssl x509 -noout -fingerprint -sha256)"
            )),
        }
    }
    let certificate_selectors = r.any_certificate
        || !r.subjects.is_empty()
        || !r.sans.is_empty()
        || !r.fingerprints.is_empty()
        || !r.issuers.is_empty();
    let peer_selectors = !r.uids.is_empty() || !r.gids.is_empty() || !r.groups.is_empty();
    if !certificate_selectors && !peer_selectors {
        errors.push(format!(
            "{at}: names nobody; add subjects, sans, fingerprints, issuers or any_certificate = true (client certificates), or uids, gids or groups (admin-socket peers)"
        ));
    }
    if port == Some(Port::Notary) && peer_selectors {
        errors.push(format!(
            "{at}: uids, gids and groups name admin-socket peers, which never call the Notary port; use port = \"admin\" or name client certificates"
        ));
    }
    let mut operations = Vec::new();
    if r.operations.is_empty() {
        errors.push(format!(
            "{at}: grants no operation; add operations = [...] ({})",
            port.map(Operation::names).unwrap_or_default()
        ));
    }
    for op in &r.operations {
        match (Operation::parse(op), port) {
            (Some(o), Some(p)) if o.port_allows(p) => operations.push(o),
            (_, Some(p)) => errors.push(format!(
                "{at}: operation {op:?} is not one of the {} port's: {}",
                p.as_str(),
                Operation::names(p)
            )),
            (_, None) => {}
        }
    }
    let mut algorithms = Vec::new();
    for a in &r.algorithms {
        match a.parse::<KeyAlgorithm>() {
            Ok(a) => algorithms.push(a),
            Err(_) => errors.push(format!(
                "{at}: algorithm {a:?} is not one of ecdsa, ed25519, rsa"
            )),
        }
    }
    let mut domains = Vec::new();
    for d in &r.domains {
        match KeyDomain::parse(d) {
            Some(d) => domains.push(d),
            None => errors.push(format!(
                "{at}: domain {d:?} is not one of notary, admin, legacy"
            )),
        }
    }
    let guns: Vec<Glob> = r.guns.iter().map(|g| Glob::new(g)).collect();
    let roles: Vec<Glob> = r.roles.iter().map(|g| Glob::new(g)).collect();
    for g in r.guns.iter().chain(&r.roles) {
        if g.is_empty() || g.chars().any(char::is_control) {
            errors.push(format!(
                "{at}: {g:?} is not a usable glob; write e.g. \"example.com/acme/*\""
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Rule {
        name,
        port: port.expect("checked above"),
        who: Who {
            any_certificate: r.any_certificate,
            subjects: r.subjects.clone(),
            sans: r.sans.clone(),
            fingerprints,
            issuers: r.issuers.clone(),
            uids: r.uids.clone(),
            gids: r.gids.clone(),
            groups: r.groups.clone(),
        },
        operations,
        guns,
        roles,
        algorithms,
        domains,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<PolicyRule> {
        #[derive(serde::Deserialize)]
        struct File {
            policy: Vec<PolicyRule>,
        }
        toml::from_str::<File>(text).unwrap().policy
    }

    fn errors(text: &str) -> Vec<String> {
        validate(&parse(text))
    }

    #[test]
    fn a_good_rule_compiles() {
        let rules = compile(&parse(
            r#"
            [[policy]]
            name = "release"
            port = "admin"
            uids = [1001]
            operations = ["list", "sign"]
            guns = ["example.com/acme/*"]
            roles = ["targets/releases"]
            "#,
        ))
        .unwrap();
        assert_eq!(rules[0].name, "release");
        assert_eq!(rules[0].operations, vec![Operation::List, Operation::Sign]);
    }

    #[test]
    fn mistakes_say_where_and_how_to_fix() {
        assert_eq!(
            errors("[[policy]]\nsubjects = [\"CN=a\"]\noperations = [\"sign\"]\n"),
            vec!["[[policy]] \"policy[1]\": no port; add port = \"notary\" (the Notary signer services) or port = \"admin\" (the admin API)"]
        );
        assert_eq!(
            errors("[[policy]]\nname = \"x\"\nport = \"notary\"\nsubjects = [\"CN=a\"]\noperations = [\"sgn\", \"list\"]\n"),
            vec![
                "[[policy]] \"x\": operation \"sgn\" is not one of the notary port's: create, info, sign, delete",
                "[[policy]] \"x\": operation \"list\" is not one of the notary port's: create, info, sign, delete",
            ]
        );
        assert_eq!(
            errors("[[policy]]\nname = \"x\"\nport = \"admin\"\noperations = [\"list\"]\n"),
            vec!["[[policy]] \"x\": names nobody; add subjects, sans, fingerprints, issuers or any_certificate = true (client certificates), or uids, gids or groups (admin-socket peers)"]
        );
        assert_eq!(
            errors("[[policy]]\nname = \"x\"\nport = \"notary\"\nuids = [0]\noperations = [\"sign\"]\n"),
            vec!["[[policy]] \"x\": uids, gids and groups name admin-socket peers, which never call the Notary port; use port = \"admin\" or name client certificates"]
        );
        assert_eq!(
            errors("[[policy]]\nname = \"x\"\nport = \"admin\"\nfingerprints = [\"sha256:ab\"]\noperations = [\"ca\"]\nalgorithms = [\"dsa\"]\ndomains = [\"pkcs11\"]\n"),
            vec![
                "[[policy]] \"x\": fingerprint \"sha256:ab\" is not sha256: and 64 hex digits (openssl x509 -noout -fingerprint -sha256)",
                "[[policy]] \"x\": algorithm \"dsa\" is not one of ecdsa, ed25519, rsa",
                "[[policy]] \"x\": domain \"pkcs11\" is not one of notary, admin, legacy",
            ]
        );
        assert_eq!(
            errors("[[policy]]\nname = \"x\"\nport = \"web\"\nany_certificate = true\noperations = [\"sign\"]\n"),
            vec!["[[policy]] \"x\": port = \"web\" is not a port; write port = \"notary\" or port = \"admin\""]
        );
        assert_eq!(
            errors("[[policy]]\nname = \"x\"\nport = \"admin\"\nuids = [0]\n"),
            vec!["[[policy]] \"x\": grants no operation; add operations = [...] (list, generate, sign, import, delete, ca, certificates)"]
        );
    }

    #[test]
    fn the_shipped_example_compiles() {
        let text = include_str!("../../../../config/policy.example.toml");
        let file: crate::config::FileConfig = toml::from_str(text).unwrap();
        let rules = compile(&file.policy).unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["notary-server", "registry-a", "release-engineer"]);
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = toml::from_str::<toml::Table>("[[policy]]\nport = \"admin\"\nuid = [0]\n")
            .unwrap()
            .remove("policy")
            .unwrap()
            .try_into::<Vec<PolicyRule>>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `uid`"), "{err}");
    }
}
