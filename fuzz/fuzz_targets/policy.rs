//! `[[policy]]` rules as a config file carries them: any text as signerd's TOML config, its
//! rules checked and compiled (`edge::policy::config::compile`), and, when they compile, every
//! decision asked of them for callers and keys taken from the rules themselves. Nothing may
//! panic; a caller no rule names is never allowed anything; a socket peer a rule names is
//! (by uid, gid or group) is allowed that rule's operations on a key the rule selects (the
//! admin port, where every domain is in reach by default).
#![no_main]

use libfuzzer_sys::fuzz_target;
use signerd::config::{AdminSettings, FileConfig, PolicyRule};
use signerd::edge::identity::{Caller, CertIdentity};
use signerd::edge::policy::config::compile;
use signerd::edge::policy::{Decision, Glob, KeyFacts, Operation, Policy, Rule};
use signerd::edge::record::Port;
use signerd_token::{KeyAlgorithm, KeyDomain};

const OPERATIONS: [Operation; 9] = [
    Operation::Create,
    Operation::Info,
    Operation::Sign,
    Operation::Delete,
    Operation::List,
    Operation::Generate,
    Operation::Import,
    Operation::Ca,
    Operation::Certificates,
];
const DOMAINS: [KeyDomain; 3] = [KeyDomain::Legacy, KeyDomain::Notary, KeyDomain::Admin];
const ALGORITHMS: [Option<KeyAlgorithm>; 4] = [
    None,
    Some(KeyAlgorithm::Ecdsa),
    Some(KeyAlgorithm::Ed25519),
    Some(KeyAlgorithm::Rsa),
];
/// signerd's own uid: the admin port's built-in rule (`admin.allow_uids` unset) names it.
const OWN_UID: u32 = 0;

/// A text the glob matches: every `*` matching "x".
fn instance(glob: &str) -> String {
    glob.replace('*', "x")
}

fn probes(rules: &[Rule], written: &[PolicyRule]) -> (Vec<Caller>, Vec<String>, Vec<String>) {
    let mut callers = Vec::new();
    let mut guns = vec!["example.com/app".to_owned()];
    let mut roles: Vec<String> = ["timestamp", "snapshot", "root", "ca"]
        .map(String::from)
        .into();
    for (rule, w) in rules.iter().zip(written).take(4) {
        for subject in rule.who.subjects.iter().take(2) {
            callers.push(Caller::Certificate(CertIdentity {
                subject: subject.clone(),
                sans: rule.who.sans.iter().take(2).cloned().collect(),
                fingerprint: rule.who.fingerprints.first().copied().unwrap_or([7; 32]),
                issuer: rule.who.issuers.first().cloned().unwrap_or_default(),
            }));
        }
        for uid in rule.who.uids.iter().take(2) {
            callers.push(Caller::Local {
                uid: *uid,
                gid: rule.who.gids.first().copied().unwrap_or(u32::MAX),
                groups: rule.who.groups.iter().take(2).copied().collect(),
                pid: None,
            });
        }
        guns.extend(w.guns.iter().take(2).map(|g| instance(g)));
        roles.extend(w.roles.iter().take(2).map(|g| instance(g)));
    }
    (callers, guns, roles)
}

/// A socket peer whose uid and gid no rule names (nor the built-in admin rule).
fn outsider(rules: &[Rule]) -> Option<Caller> {
    let uid =
        (1..u32::MAX).find(|u| *u != OWN_UID && rules.iter().all(|r| !r.who.uids.contains(u)))?;
    let gid = (1..u32::MAX).find(|g| {
        rules
            .iter()
            .all(|r| !r.who.gids.contains(g) && !r.who.groups.contains(g))
    })?;
    Some(Caller::Local {
        uid,
        gid,
        groups: vec![],
        pid: None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    let rules = match compile(&config.policy) {
        Ok(rules) => rules,
        Err(errors) => {
            assert!(!errors.is_empty());
            return;
        }
    };
    let policy = Policy::new(rules.clone(), &AdminSettings::default(), OWN_UID);
    let _ = policy.describe();
    let _ = policy.admin_on_tls();
    let (mut callers, guns, roles) = probes(&rules, &config.policy);
    let stranger = outsider(&rules);
    callers.extend(stranger.clone());
    for caller in &callers {
        for port in [Port::Notary, Port::Admin] {
            for operation in OPERATIONS {
                let called = policy.may_call(port, caller, operation);
                if Some(caller) == stranger.as_ref() {
                    assert!(called.is_err(), "{caller} may call {operation} on {port:?}");
                }
                for gun in guns.iter().take(3) {
                    for role in roles.iter().take(6) {
                        for domain in DOMAINS {
                            for algorithm in ALGORITHMS {
                                let key = KeyFacts {
                                    gun,
                                    role,
                                    algorithm,
                                    domain,
                                };
                                let decision = policy.decide(port, caller, operation, &key);
                                if Some(caller) == stranger.as_ref() {
                                    assert!(
                                        !matches!(decision, Decision::Allow(_)),
                                        "{caller} allowed {operation} on {port:?}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // A socket peer a rule names may do what the rule grants on a key the rule selects.
    for (rule, w) in rules.iter().zip(&config.policy) {
        if rule.port != Port::Admin {
            continue;
        }
        let (uid, gid, group) = (
            rule.who.uids.first().copied(),
            rule.who.gids.first().copied(),
            rule.who.groups.first().copied(),
        );
        if uid.is_none() && gid.is_none() && group.is_none() {
            continue;
        }
        let caller = Caller::Local {
            uid: uid.unwrap_or(u32::MAX - 1),
            gid: gid.unwrap_or(u32::MAX),
            groups: group.into_iter().collect(),
            pid: None,
        };
        let gun = w.guns.first().map(|g| instance(g)).unwrap_or_default();
        let role = w
            .roles
            .first()
            .map(|g| instance(g))
            .unwrap_or_else(|| "targets".into());
        if role == "ca" {
            continue;
        }
        let algorithm = rule.algorithms.first().copied();
        let domain = rule.domains.first().copied().unwrap_or(KeyDomain::Admin);
        let key = KeyFacts {
            gun: &gun,
            role: &role,
            algorithm,
            domain,
        };
        assert!(rule.guns.is_empty() || rule.guns.iter().any(|g| g.matches(&gun)));
        for operation in &rule.operations {
            assert!(policy.may_call(Port::Admin, &caller, *operation).is_ok());
            let decision = policy.decide(Port::Admin, &caller, *operation, &key);
            assert!(
                matches!(decision, Decision::Allow(_)),
                "rule {} names {caller} for {operation} on {gun:?}/{role:?}: {decision:?}",
                rule.name
            );
        }
    }
    // Globs: without `*` a glob is the text itself.
    for gun in &guns {
        for pattern in config.policy.iter().flat_map(|r| &r.guns).take(4) {
            let matched = Glob::new(pattern).matches(gun);
            if !pattern.contains('*') {
                assert_eq!(matched, pattern == gun, "{pattern:?} against {gun:?}");
            }
        }
        if !gun.contains('*') {
            assert!(Glob::new(gun).matches(gun));
            assert!(Glob::new("*").matches(gun));
            assert!(!Glob::new(&format!("{gun}z")).matches(gun));
        }
    }
});
