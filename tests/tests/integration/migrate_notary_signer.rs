//! Moving a running notary-signer's keys into the HSM: the Go notary-signer on a throwaway
//! PostgreSQL, behind the real notary-server, publishes a repository; `signerd migrate
//! notary-signer` moves its timestamp and snapshot keys into a SoftHSM token; signerd then
//! answers at the Go signer's address, and the same repository publishes and verifies with the
//! same keys: no rotation, nothing lost from the database.

use std::io;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;
use signerd_tests::postgres::Postgres;
use signerd_tests::signerd::{signerd_bin, Signerd, TestToken};
use signerd_tests::{GoSigner, Lifecycle, NotaryServer, TestDir, TestPki};

/// notary's own schema for the signer's PostgreSQL store (its
/// `migrations/signer/postgresql/0001_initial.up.sql`): notary-signer does not create it.
const SCHEMA: &str = r#"CREATE TABLE "private_keys" (
  "id" serial PRIMARY KEY,
  "created_at" timestamp NULL DEFAULT NULL,
  "updated_at" timestamp NULL DEFAULT NULL,
  "deleted_at" timestamp NULL DEFAULT NULL,
  "key_id" varchar(255) NOT NULL,
  "encryption_alg" varchar(255) NOT NULL,
  "keywrap_alg" varchar(255) NOT NULL,
  "algorithm" varchar(50) NOT NULL,
  "passphrase_alias" varchar(50) NOT NULL,
  "public" bytea NOT NULL,
  "private" bytea NOT NULL,
  "gun" varchar(255) NOT NULL,
  "role" varchar(255) NOT NULL,
  "last_used" timestamp NULL DEFAULT NULL,
  CONSTRAINT "key_id" UNIQUE ("key_id"),
  CONSTRAINT "key_id_2" UNIQUE ("key_id","algorithm")
)"#;

const PASSPHRASE: &str = "alpha passphrase";
const GUN: &str = "example.com/migrated/app";

/// `signerd migrate notary-signer` on `token`, with `env` (the passphrases) and `extra` flags.
fn migrate(
    dir: &Path,
    token: &TestToken,
    db_url: &str,
    env: &[(&str, &str)],
    extra: &[&str],
) -> Output {
    let mut command = Command::new(signerd_bin());
    command
        .args([
            "migrate",
            "notary-signer",
            "--db-url",
            db_url,
            "--token",
            &token.uri,
        ])
        .args(extra)
        .current_dir(dir)
        .env_clear()
        .env("SOFTHSM2_CONF", token.softhsm.conf())
        .envs(env.iter().copied());
    command.output().expect("signerd runs")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The line of a migration report about `key_id`.
fn line_of<'a>(report: &'a str, key_id: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(key_id))
        .unwrap_or_else(|| panic!("no line for {key_id} in:\n{report}"))
}

/// The key IDs of `role` in the client's cached root.json, and the key that signed its cached
/// `role`.json (for timestamp and snapshot).
fn keys_of(client_trust: &Path, role: &str) -> (Vec<String>, String) {
    let metadata = client_trust.join("tuf").join(GUN).join("metadata");
    let read = |name: &str| -> serde_json::Value {
        let path = metadata.join(name);
        serde_json::from_slice(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap()
    };
    let root = read("root.json");
    let ids = root["signed"]["roles"][role]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let signed = read(&format!("{role}.json"));
    let signer = signed["signatures"][0]["keyid"]
        .as_str()
        .unwrap()
        .to_owned();
    (ids, signer)
}

#[test]
fn keys_move_from_a_go_notary_signer_on_postgresql_without_rotation() -> io::Result<()> {
    let dir = TestDir::new("migrate-postgres")?;
    let pg = Postgres::start(&dir.subdir("postgres")?)?;
    pg.psql("postgres", "CREATE DATABASE notarysigner")?;
    pg.psql("notarysigner", SCHEMA)?;
    let db_url = pg.url("notarysigner");
    let pki = TestPki::generate(&dir.subdir("pki")?)?;

    // notary-server on the Go notary-signer, whose keys live in PostgreSQL under alias "alpha".
    let mut go = GoSigner::start_with_storage(
        &dir.subdir("go-signer")?,
        &pki,
        json!({ "backend": "postgres", "db_url": db_url, "default_alias": "alpha" }),
        &[("NOTARY_SIGNER_ALPHA".into(), PASSPHRASE.into())],
    )?;
    let signer_port = go.endpoint().port;
    let server = NotaryServer::start(&dir.subdir("server")?, go.endpoint(), "ecdsa")?;
    let lifecycle = Lifecycle::new(&dir.subdir("clients")?, &server, GUN)?;
    lifecycle.part1(&server);
    let reader_trust = lifecycle.reader().trust_dir().to_owned();
    let (timestamp_ids, _) = keys_of(&reader_trust, "timestamp");
    let (snapshot_ids, _) = keys_of(&reader_trust, "snapshot");
    let in_db = pg.psql(
        "notarysigner",
        "SELECT key_id || ' ' || role FROM private_keys WHERE deleted_at IS NULL ORDER BY id",
    )?;
    for (ids, role) in [(&timestamp_ids, "timestamp"), (&snapshot_ids, "snapshot")] {
        assert_eq!(ids.len(), 1, "{role} keys in root.json: {ids:?}");
        assert!(
            in_db.contains(&format!("{} {role}", ids[0])),
            "{role} key not in the database:\n{in_db}"
        );
    }

    // Rows signerd must refuse, each with its reason, losing nothing.
    let bad_algorithm = "aa".repeat(32);
    let corrupt = "bb".repeat(32);
    pg.psql(
        "notarysigner",
        &format!(
            "INSERT INTO private_keys (key_id, encryption_alg, keywrap_alg, algorithm, passphrase_alias, public, private, gun, role) VALUES \
             ('{bad_algorithm}', 'A256GCM', 'PBES2-HS256+A128KW', 'dsa', 'alpha', '\\x00', '\\x00', 'example.com/other', 'timestamp'), \
             ('{corrupt}', 'A256GCM', 'PBES2-HS256+A128KW', 'ecdsa', 'alpha', '\\x3000', 'not a jwe', 'example.com/other', 'snapshot')"
        ),
    )?;
    let rows_before = pg.psql("notarysigner", "SELECT count(*) FROM private_keys")?;

    let token = TestToken::create(&dir.subdir("token")?)?;
    let work = dir.subdir("migrate")?;
    let pass = [("NOTARY_SIGNER_ALPHA", PASSPHRASE)];

    // A dry run lists what would move and changes nothing.
    let out = migrate(&work, &token, &db_url, &pass, &["--dry-run"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !out.status.success(),
        "bad rows make the run fail: {}",
        text(&out)
    );
    for id in [&timestamp_ids[0], &snapshot_ids[0]] {
        assert!(
            line_of(&report, id).contains("would migrate"),
            "{}",
            text(&out)
        );
    }
    assert!(
        line_of(&report, &bad_algorithm).contains("algorithm 'dsa' is not one signerd keeps"),
        "{}",
        text(&out)
    );
    assert!(
        line_of(&report, &corrupt).contains("database row is damaged"),
        "{}",
        text(&out)
    );

    // No passphrase, then a wrong one: each named, nothing imported.
    let out = migrate(&work, &token, &db_url, &[], &[]);
    assert!(
        line_of(&String::from_utf8_lossy(&out.stdout), &timestamp_ids[0])
            .contains("NOTARY_SIGNER_ALPHA is not set"),
        "{}",
        text(&out)
    );
    let out = migrate(
        &work,
        &token,
        &db_url,
        &[("NOTARY_SIGNER_ALPHA", "wrong")],
        &[],
    );
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        line_of(&report, &snapshot_ids[0])
            .contains("the passphrase in NOTARY_SIGNER_ALPHA does not decrypt it"),
        "{}",
        text(&out)
    );
    assert!(!report.contains("wrong") && !String::from_utf8_lossy(&out.stderr).contains("wrong"));
    let out = migrate(&work, &token, &db_url, &pass, &["--dry-run"]);
    assert!(
        line_of(&String::from_utf8_lossy(&out.stdout), &timestamp_ids[0]).contains("would migrate"),
        "a failed run imported something: {}",
        text(&out)
    );

    // The real run: both keys imported and verified; the bad rows still refused.
    let out = migrate(&work, &token, &db_url, &pass, &[]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    for id in [&timestamp_ids[0], &snapshot_ids[0]] {
        assert!(
            line_of(&report, id).contains("migrated and verified"),
            "{}",
            text(&out)
        );
    }
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        !report.contains(PASSPHRASE) && !String::from_utf8_lossy(&out.stderr).contains(PASSPHRASE)
    );

    // Nothing was taken from the database; once the bad rows are gone a second run is clean
    // and skips what is already there.
    assert_eq!(
        pg.psql("notarysigner", "SELECT count(*) FROM private_keys")?,
        rows_before
    );
    pg.psql(
        "notarysigner",
        &format!("DELETE FROM private_keys WHERE key_id IN ('{bad_algorithm}', '{corrupt}')"),
    )?;
    let out = migrate(&work, &token, &db_url, &pass, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    for id in [&timestamp_ids[0], &snapshot_ids[0]] {
        assert!(
            line_of(&report, id).contains("already in the token; skipped"),
            "{}",
            text(&out)
        );
    }

    // signerd takes the Go signer's place at the same address; notary-server reconnects.
    go.process().stop()?;
    let signerd = Signerd::start_on_port(
        &dir.subdir("signerd")?,
        "signerd",
        &token,
        &pki,
        signer_port,
    )?;
    // notary-server's channel to the signer backs off after the Go signer went away, and its
    // health answer is cached: wait until it really reaches signerd.
    server.wait_signer_reachable(GUN, std::time::Duration::from_secs(60))?;
    let files = dir.subdir("after")?;
    let after = files.join("after-migration");
    std::fs::write(&after, b"published after the move into the HSM\n")?;
    let admin = lifecycle.admin();
    admin.run_ok(&["add", GUN, "after-migration", after.to_str().unwrap()]);
    let out = admin.run_ok(&["publish", GUN]);
    assert!(out.contains("Successfully published"), "{out}");
    let listed = lifecycle.reader().run_ok(&["list", GUN]);
    assert!(
        listed.contains("after-migration") && listed.contains("v1"),
        "{listed}"
    );

    // Same keys: root.json unchanged for timestamp and snapshot, and the new metadata signed
    // by them, in the token.
    let (timestamp_now, timestamp_signer) = keys_of(&reader_trust, "timestamp");
    let (snapshot_now, snapshot_signer) = keys_of(&reader_trust, "snapshot");
    assert_eq!(timestamp_now, timestamp_ids, "timestamp key rotated");
    assert_eq!(snapshot_now, snapshot_ids, "snapshot key rotated");
    assert_eq!(timestamp_signer, timestamp_ids[0]);
    assert_eq!(snapshot_signer, snapshot_ids[0]);
    let logs = signerd.logs();
    for id in [&timestamp_ids[0], &snapshot_ids[0]] {
        assert!(
            logs.lines()
                .any(|l| l.contains("Sign") && l.contains(id.as_str()) && l.contains("ok")),
            "signerd did not sign with {id}:\n{logs}"
        );
    }
    // And the rest of the lifecycle (delegation, verify, rotation, delete) runs on signerd,
    // from the targets it expects.
    admin.run_ok(&["remove", GUN, "after-migration"]);
    let out = admin.run_ok(&["publish", GUN]);
    assert!(out.contains("Successfully published"), "{out}");
    lifecycle.part2(&server);
    Ok(())
}
