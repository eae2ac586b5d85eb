use super::config::{compile, PolicyRule};
use super::*;
use crate::edge::identity::CertIdentity;

fn cert(subject: &str, issuer: &str) -> Caller {
    Caller::Certificate(CertIdentity {
        subject: subject.into(),
        sans: vec![format!("{}.example.com", subject.trim_start_matches("CN="))],
        fingerprint: [subject.len() as u8; 32],
        issuer: issuer.into(),
    })
}

fn local(uid: u32, gid: u32, groups: Vec<u32>) -> Caller {
    Caller::Local {
        uid,
        gid,
        groups,
        pid: None,
    }
}

fn policy(text: &str, admin: AdminSettings) -> Policy {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        policy: Vec<PolicyRule>,
    }
    let rules = compile(&toml::from_str::<File>(text).unwrap().policy).unwrap();
    Policy::new(rules, &admin, 1000)
}

fn key<'a>(domain: KeyDomain, gun: &'a str, role: &'a str) -> KeyFacts<'a> {
    KeyFacts {
        gun,
        role,
        algorithm: Some(KeyAlgorithm::Ecdsa),
        domain,
    }
}

#[test]
fn globs() {
    let g = Glob::new("registry-a.example.com/*");
    assert!(g.matches("registry-a.example.com/app"));
    assert!(g.matches("registry-a.example.com/org/app"));
    assert!(!g.matches("registry-b.example.com/app"));
    assert!(!g.matches("registry-a.example.com"));
    assert!(Glob::new("*").matches(""));
    assert!(Glob::new("targets/*").matches("targets/releases"));
    assert!(!Glob::new("targets/*").matches("targets"));
    assert!(Glob::new("a*b*c").matches("a-b-b-c"));
    assert!(!Glob::new("a*b*c").matches("a-c-b"));
    assert!(Glob::new("exact").matches("exact"));
    assert!(!Glob::new("exact").matches("exactly"));
    assert!(!Glob::new("ab*ba").matches("aba"));
}

#[test]
fn by_default_the_notary_port_reaches_only_what_notary_server_manages() {
    let p = policy("", AdminSettings::default());
    let ns = cert("CN=notary-server", "CN=ca");
    for (domain, role) in [
        (KeyDomain::Notary, "timestamp"),
        (KeyDomain::Notary, "snapshot"),
        (KeyDomain::Legacy, "timestamp"),
    ] {
        assert_eq!(
            p.decide(Port::Notary, &ns, Operation::Sign, &key(domain, "g", role)),
            Decision::Allow("builtin:notary-server".into()),
            "{domain} {role}"
        );
    }
    for (domain, role) in [
        (KeyDomain::Admin, "root"),
        (KeyDomain::Admin, "ca"),
        (KeyDomain::Admin, "timestamp"),
        (KeyDomain::Legacy, "root"),
        (KeyDomain::Legacy, "targets"),
        (KeyDomain::Notary, "targets"),
    ] {
        for op in [Operation::Sign, Operation::Info, Operation::Delete] {
            assert_eq!(
                p.decide(Port::Notary, &ns, op, &key(domain, "g", role)),
                Decision::Hidden,
                "{domain} {role} {op}"
            );
        }
    }
    let Decision::Deny(refusal) = p.decide(
        Port::Notary,
        &ns,
        Operation::Create,
        &key(KeyDomain::Notary, "g", "root"),
    ) else {
        panic!("creating a root key on the Notary port is refused")
    };
    assert_eq!(
        refusal.to_string(),
        "create refused by signerd's policy: the Notary port makes only timestamp and snapshot keys (what notary-server manages), not \"root\"; make root, targets and delegation keys with `signerd root new` or `signerd key generate` on the admin socket"
    );
    assert!(p.may_call(Port::Notary, &ns, Operation::Sign).is_ok());
}

#[test]
fn tenants_are_held_to_their_guns_and_the_builtin_rule_goes() {
    let p = policy(
        r#"
        [[policy]]
        name = "registry-a"
        port = "notary"
        subjects = ["CN=notary-a"]
        operations = ["create", "info", "sign"]
        guns = ["registry-a.example.com/*"]
        "#,
        AdminSettings::default(),
    );
    let a = cert("CN=notary-a", "CN=ca");
    let ts = |gun| key(KeyDomain::Notary, gun, "timestamp");
    assert_eq!(
        p.decide(
            Port::Notary,
            &a,
            Operation::Sign,
            &ts("registry-a.example.com/app")
        ),
        Decision::Allow("registry-a".into())
    );
    let Decision::Deny(r) = p.decide(
        Port::Notary,
        &a,
        Operation::Sign,
        &ts("registry-b.example.com/app"),
    ) else {
        panic!("another tenant's key is refused")
    };
    assert!(r.to_string().starts_with("sign refused by signerd's policy: no [[policy]] rule grants sign on notary keys of role \"timestamp\" in \"registry-b.example.com/app\" to 'CN=notary-a'"), "{r}");
    // Delete is not granted at all: refused before any key is looked at.
    let r = p.may_call(Port::Notary, &a, Operation::Delete).unwrap_err();
    assert!(r.reason.contains("grants delete on the notary port"), "{r}");
    // Any other certificate: no rule names it now the built-in rule is replaced.
    let other = cert("CN=notary-b", "CN=ca");
    let r = p
        .may_call(Port::Notary, &other, Operation::Sign)
        .unwrap_err();
    assert_eq!(
        r.to_string(),
        "sign refused by signerd's policy: no [[policy]] rule names 'CN=notary-b' (sha256:0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b) on the notary port; add one with subjects = [\"CN=notary-b\"]"
    );
    // Roles still bound the Notary port: a root key stays hidden from the tenant too.
    assert_eq!(
        p.decide(
            Port::Notary,
            &a,
            Operation::Sign,
            &key(KeyDomain::Admin, "registry-a.example.com/app", "root")
        ),
        Decision::Hidden
    );
}

#[test]
fn admin_rules_by_uid_group_issuer_role_and_ca() {
    let p = policy(
        r#"
        [[policy]]
        name = "release-engineer"
        port = "admin"
        groups = [2001]
        operations = ["list", "sign"]
        guns = ["example.com/acme/*"]
        roles = ["targets/releases"]

        [[policy]]
        name = "ops-cert"
        port = "admin"
        issuers = ["CN=ops-ca"]
        operations = ["list", "ca"]
        "#,
        AdminSettings {
            allow_uids: Some(vec![0]),
            ..AdminSettings::default()
        },
    );
    let engineer = local(1500, 1500, vec![27, 2001]);
    let release = key(KeyDomain::Admin, "example.com/acme/app", "targets/releases");
    assert_eq!(
        p.decide(Port::Admin, &engineer, Operation::Sign, &release),
        Decision::Allow("release-engineer".into())
    );
    for k in [
        key(KeyDomain::Admin, "example.com/acme/app", "root"),
        key(
            KeyDomain::Admin,
            "example.com/other/app",
            "targets/releases",
        ),
    ] {
        assert!(matches!(
            p.decide(Port::Admin, &engineer, Operation::Sign, &k),
            Decision::Deny(_)
        ));
    }
    assert!(p
        .may_call(Port::Admin, &engineer, Operation::Generate)
        .is_err());
    // By primary gid through `groups` too; not by an unrelated group.
    assert!(p
        .may_call(Port::Admin, &local(1501, 2001, vec![]), Operation::List)
        .is_ok());
    let r = p
        .may_call(Port::Admin, &local(1502, 1502, vec![3]), Operation::List)
        .unwrap_err();
    assert!(
        r.reason
            .starts_with("uid 1502 (gid 1502) may not use signerd's admin API"),
        "{r}"
    );
    // Root by the built-in admin.allow_uids rule: everything.
    assert_eq!(
        p.decide(
            Port::Admin,
            &local(0, 0, vec![]),
            Operation::Sign,
            &key(KeyDomain::Admin, "", "ca")
        ),
        Decision::Allow("admin.allow_uids".into())
    );
    // A certificate tied to its issuing CA: CA operations, and only from that CA.
    let ops = cert("CN=ops", "CN=ops-ca");
    let ca_key = key(KeyDomain::Admin, "", "ca");
    assert_eq!(
        p.decide(Port::Admin, &ops, Operation::Sign, &ca_key),
        Decision::Allow("ops-cert".into())
    );
    assert!(matches!(
        p.decide(Port::Admin, &ops, Operation::Sign, &release),
        Decision::Deny(_)
    ));
    let forged = cert("CN=ops", "CN=other-ca");
    let r = p
        .may_call(Port::Admin, &forged, Operation::List)
        .unwrap_err();
    assert!(r.reason.contains("'CN=ops' is not an admin"), "{r}");
    assert!(p.admin_on_tls());
}

#[test]
fn admin_settings_become_builtin_rules() {
    let p = policy(
        "",
        AdminSettings {
            allow_gids: vec![50],
            admin_clients: vec![
                AdminClient::Subject("CN=ops".into()),
                AdminClient::Fingerprint([7; 32]),
            ],
            ..AdminSettings::default()
        },
    );
    assert!(p
        .may_call(Port::Admin, &local(1000, 1000, vec![]), Operation::Generate)
        .is_ok());
    assert!(p
        .may_call(Port::Admin, &local(1234, 50, vec![]), Operation::Generate)
        .is_ok());
    assert!(p
        .may_call(Port::Admin, &cert("CN=ops", "CN=x"), Operation::Import)
        .is_ok());
    let mut by_fp = cert("CN=other", "CN=x");
    if let Caller::Certificate(c) = &mut by_fp {
        c.fingerprint = [7; 32];
    }
    assert!(p.may_call(Port::Admin, &by_fp, Operation::Delete).is_ok());
    let r = p
        .may_call(
            Port::Admin,
            &cert("CN=notary-server", "CN=x"),
            Operation::List,
        )
        .unwrap_err();
    assert!(
        r.reason.contains("'CN=notary-server' is not an admin")
            && r.reason.contains("admin.admin_clients"),
        "{r}"
    );
    assert!(p
        .may_call(Port::Admin, &Caller::Unknown, Operation::List)
        .is_err());
    // Admin rules never open the Notary port.
    assert!(p
        .may_call(Port::Notary, &local(1000, 1000, vec![]), Operation::Sign)
        .is_err());
}

#[test]
fn a_rule_may_open_other_domains_to_the_notary_port_explicitly() {
    let p = policy(
        r#"
        [[policy]]
        name = "legacy-targets"
        port = "notary"
        subjects = ["CN=notary-server"]
        operations = ["sign", "info"]
        roles = ["targets"]
        domains = ["legacy"]
        "#,
        AdminSettings::default(),
    );
    let ns = cert("CN=notary-server", "CN=ca");
    assert_eq!(
        p.decide(
            Port::Notary,
            &ns,
            Operation::Sign,
            &key(KeyDomain::Legacy, "g", "targets")
        ),
        Decision::Allow("legacy-targets".into())
    );
    assert_eq!(
        p.decide(
            Port::Notary,
            &ns,
            Operation::Sign,
            &key(KeyDomain::Admin, "g", "targets")
        ),
        Decision::Hidden
    );
}

#[test]
fn reload_swaps_the_whole_policy() {
    let handle = PolicyHandle::new(policy("", AdminSettings::default()));
    let before = handle.current();
    handle.replace(policy(
        "[[policy]]\nport = \"notary\"\nsubjects = [\"CN=a\"]\noperations = [\"sign\"]\n",
        AdminSettings::default(),
    ));
    let ns = cert("CN=notary-server", "CN=ca");
    // A request that took its snapshot before keeps it; new ones see the new rules.
    assert!(before.may_call(Port::Notary, &ns, Operation::Sign).is_ok());
    assert!(handle
        .current()
        .may_call(Port::Notary, &ns, Operation::Sign)
        .is_err());
}

/// A service that answers OK to whatever reaches it.
#[derive(Clone)]
struct Reached;

impl Service<http::Request<tonic::body::Body>> for Reached {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(tonic::body::Body::empty())))
    }
}

async fn through_layer(port: Port, path: &str, caller: Caller) -> Option<tonic::Status> {
    let handle = PolicyHandle::new(policy("", AdminSettings::default()));
    let mut svc = PolicyLayer::new(port, handle).layer(Reached);
    let mut request = http::Request::builder()
        .uri(path)
        .body(tonic::body::Body::empty())
        .unwrap();
    request.extensions_mut().insert(Arc::new(caller));
    let response = svc.call(request).await.unwrap();
    tonic::Status::from_header_map(response.headers())
}

#[tokio::test]
async fn the_layer_refuses_what_no_rule_can_name() {
    let ns = cert("CN=notary-server", "CN=ca");
    assert!(
        through_layer(Port::Notary, "/proto.Signer/Sign", ns.clone())
            .await
            .is_none()
    );
    assert!(
        through_layer(Port::Notary, "/grpc.health.v1.Health/Check", ns.clone())
            .await
            .is_none()
    );
    let status = through_layer(
        Port::Admin,
        "/signerd.admin.v1.TokenAdmin/NewRpc",
        local(1000, 1000, vec![]),
    )
    .await
    .unwrap();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "NewRpc is not an operation signerd's policy knows; no rule can grant it"
    );
    let status = through_layer(Port::Admin, "/signerd.admin.v1.TokenAdmin/ListTokens", ns)
        .await
        .unwrap();
    assert!(
        status
            .message()
            .contains("'CN=notary-server' is not an admin"),
        "{status:?}"
    );
}
