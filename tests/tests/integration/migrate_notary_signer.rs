//! Moving a running notary-signer's keys into the HSM: the Go notary-signer on a throwaway
//! PostgreSQL or MariaDB, behind the real notary-server, publishes a repository; `signerd
//! migrate notary-signer` moves its timestamp and snapshot keys into a SoftHSM token; signerd
//! then answers at the Go signer's address, and the same repository publishes and verifies with
//! the same keys: no rotation, nothing lost from the database.

use std::io;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;
use signerd_tests::mariadb::{self, MariaDb};
use signerd_tests::postgres::Postgres;
use signerd_tests::signerd::{signerd_bin, Signerd, TestToken};
use signerd_tests::{GoSigner, Lifecycle, NotaryServer, TestDir, TestPki};

/// notary's own schema for the signer's PostgreSQL store (its
/// `migrations/signer/postgresql/0001_initial.up.sql`): notary-signer does not create it.
const POSTGRES_SCHEMA: &str = r#"CREATE TABLE "private_keys" (
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

/// notary's schema for the signer's MySQL store: its `migrations/signer/mysql/0001_initial.up.sql`
/// and `0002_gun_role_on_keys.up.sql`.
const MYSQL_SCHEMA: &str = r#"CREATE TABLE `private_keys` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `created_at` timestamp NULL DEFAULT NULL,
  `updated_at` timestamp NULL DEFAULT NULL,
  `deleted_at` timestamp NULL DEFAULT NULL,
  `key_id` varchar(255) NOT NULL,
  `encryption_alg` varchar(255) NOT NULL,
  `keywrap_alg` varchar(255) NOT NULL,
  `algorithm` varchar(50) NOT NULL,
  `passphrase_alias` varchar(50) NOT NULL,
  `public` blob NOT NULL,
  `private` blob NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `key_id` (`key_id`),
  UNIQUE KEY `key_id_2` (`key_id`,`algorithm`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;
ALTER TABLE `private_keys` ADD COLUMN `gun` VARCHAR(255) NOT NULL, ADD COLUMN `role` VARCHAR(255) NOT NULL, ADD COLUMN `last_used` DATETIME NULL DEFAULT NULL;"#;

const PASSPHRASE: &str = "alpha passphrase";
const GUN: &str = "example.com/migrated/app";

/// notary-signer's key database for one test: the server, and how to reach and change it.
enum KeyDb {
    Postgres(Postgres),
    /// MariaDB serving TLS only, with the CA file that checks its certificate.
    MariaDb(MariaDb, String),
}

impl KeyDb {
    /// A fresh server with the `notarysigner` database and notary's schema in it; MariaDB
    /// with the server certificate of `pki`.
    fn start(dir: &Path, pki: Option<&TestPki>) -> io::Result<KeyDb> {
        if let Some(pki) = pki {
            let db = MariaDb::start_tls(dir, "notarysigner", &pki.server.cert, &pki.server.key)?;
            db.sql("notarysigner", MYSQL_SCHEMA)?;
            Ok(KeyDb::MariaDb(db, pki.ca.cert_path().display().to_string()))
        } else {
            let pg = Postgres::start(dir)?;
            pg.psql("postgres", "CREATE DATABASE notarysigner")?;
            pg.psql("notarysigner", POSTGRES_SCHEMA)?;
            Ok(KeyDb::Postgres(pg))
        }
    }

    /// notary-signer's `storage.db_url`.
    fn url(&self) -> String {
        match self {
            KeyDb::Postgres(pg) => pg.url("notarysigner"),
            // The Go driver on TLS, not checking the certificate.
            KeyDb::MariaDb(db, _) => db.dsn("notarysigner", "tls=skip-verify"),
        }
    }

    /// The URL `signerd migrate` is given, and its flags.
    fn migrate_url(&self) -> (String, Vec<String>) {
        match self {
            KeyDb::Postgres(_) => (self.url(), vec![]),
            // The certificate checked, against the CA given on the command line.
            KeyDb::MariaDb(db, ca) => (
                db.dsn("notarysigner", "tls=true"),
                vec![
                    "--backend".into(),
                    "mysql".into(),
                    "--db-ca-file".into(),
                    ca.clone(),
                ],
            ),
        }
    }

    /// notary-signer's `storage.backend`.
    fn backend(&self) -> &'static str {
        match self {
            KeyDb::Postgres(_) => "postgres",
            KeyDb::MariaDb(..) => "mysql",
        }
    }

    /// Runs `sql` in `notarysigner`; one output row per line, columns tab-separated.
    fn sql(&self, sql: &str) -> io::Result<String> {
        match self {
            KeyDb::Postgres(pg) => pg.psql("notarysigner", sql),
            KeyDb::MariaDb(db, _) => db.sql("notarysigner", sql),
        }
    }

    /// A binary literal in this database's SQL.
    fn bytes(&self, hex: &str) -> String {
        match self {
            KeyDb::Postgres(_) => format!("'\\x{hex}'"),
            KeyDb::MariaDb(..) => format!("X'{hex}'"),
        }
    }
}

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
    let db = KeyDb::start(&dir.subdir("postgres")?, None)?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    keys_move_without_rotation(&dir, &pki, db)
}

#[test]
fn keys_move_from_a_go_notary_signer_on_mariadb_without_rotation() -> io::Result<()> {
    let dir = TestDir::new("migrate-mariadb")?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let db = KeyDb::start(&dir.subdir("mariadb")?, Some(&pki))?;
    let KeyDb::MariaDb(server, ca) = &db else {
        unreachable!("started as MariaDB")
    };
    let token = TestToken::create(&dir.subdir("probe-token")?)?;
    let probe = dir.subdir("probe")?;
    let dry_run = |dsn: &str, extra: &[&str]| {
        let mut flags = vec!["--backend", "mysql", "--dry-run"];
        flags.extend_from_slice(extra);
        migrate(&probe, &token, dsn, &[], &flags)
    };

    // TLS as the DSN asks: checked against --db-ca-file, or not checked with skip-verify.
    for (params, extra) in [
        ("tls=true", vec!["--db-ca-file", ca.as_str()]),
        ("tls=skip-verify", vec![]),
    ] {
        let out = dry_run(&server.dsn("notarysigner", params), &extra);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("0 key(s)"),
            "{params}: {}",
            text(&out)
        );
    }
    // A certificate from an unknown CA is refused; the server refuses a plain connection; a
    // wrong password is refused: each names the database, never the password.
    let refused = [
        (server.dsn("notarysigner", "tls=true"), "UnknownIssuer"),
        (server.dsn("notarysigner", "tls=false"), "Access denied"),
        (
            server
                .dsn("notarysigner", "tls=skip-verify")
                .replace(mariadb::PASSWORD, "not-the-password"),
            "Access denied",
        ),
    ];
    for (dsn, why) in refused {
        let out = dry_run(&dsn, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && stderr.contains("cannot connect to signer:***@tcp(127.0.0.1:")
                && stderr.contains(why)
                && !stderr.contains("not-the-password")
                && !stderr.contains(mariadb::PASSWORD),
            "{dsn}: {}",
            text(&out)
        );
    }
    keys_move_without_rotation(&dir, &pki, db)
}

/// The whole move on `db`: the Go signer on it publishes, signerd takes its keys and its
/// place, the repository publishes with the same keys.
fn keys_move_without_rotation(dir: &TestDir, pki: &TestPki, db: KeyDb) -> io::Result<()> {
    let (db_url, flags) = db.migrate_url();
    let with = |extra: &[&'static str]| -> Vec<&str> {
        flags
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .collect()
    };

    // notary-server on the Go notary-signer, whose keys live in the database under alias "alpha".
    let mut go = GoSigner::start_with_storage(
        &dir.subdir("go-signer")?,
        pki,
        json!({ "backend": db.backend(), "db_url": db.url(), "default_alias": "alpha" }),
        &[("NOTARY_SIGNER_ALPHA".into(), PASSPHRASE.into())],
    )?;
    let signer_port = go.endpoint().port;
    let server = NotaryServer::start(&dir.subdir("server")?, go.endpoint(), "ecdsa")?;
    let lifecycle = Lifecycle::new(&dir.subdir("clients")?, &server, GUN)?;
    lifecycle.part1(&server);
    let reader_trust = lifecycle.reader().trust_dir().to_owned();
    let (timestamp_ids, _) = keys_of(&reader_trust, "timestamp");
    let (snapshot_ids, _) = keys_of(&reader_trust, "snapshot");
    let in_db = db.sql(
        "SELECT CONCAT(key_id, ' ', role) FROM private_keys WHERE deleted_at IS NULL ORDER BY id",
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
    let (zero, der_stub, not_jwe) = (
        db.bytes("00"),
        db.bytes("3000"),
        db.bytes("6e6f742061206a7765"),
    );
    db.sql(&format!(
        "INSERT INTO private_keys (key_id, encryption_alg, keywrap_alg, algorithm, passphrase_alias, public, private, gun, role) VALUES \
         ('{bad_algorithm}', 'A256GCM', 'PBES2-HS256+A128KW', 'dsa', 'alpha', {zero}, {zero}, 'example.com/other', 'timestamp'), \
         ('{corrupt}', 'A256GCM', 'PBES2-HS256+A128KW', 'ecdsa', 'alpha', {der_stub}, {not_jwe}, 'example.com/other', 'snapshot')"
    ))?;
    let rows_before = db.sql("SELECT count(*) FROM private_keys")?;

    let token = TestToken::create(&dir.subdir("token")?)?;
    let work = dir.subdir("migrate")?;
    let pass = [("NOTARY_SIGNER_ALPHA", PASSPHRASE)];

    // A dry run lists what would move and changes nothing.
    let out = migrate(&work, &token, &db_url, &pass, &with(&["--dry-run"]));
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
    let out = migrate(&work, &token, &db_url, &[], &with(&[]));
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
        &with(&[]),
    );
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        line_of(&report, &snapshot_ids[0])
            .contains("the passphrase in NOTARY_SIGNER_ALPHA does not decrypt it"),
        "{}",
        text(&out)
    );
    assert!(!report.contains("wrong") && !String::from_utf8_lossy(&out.stderr).contains("wrong"));
    let out = migrate(&work, &token, &db_url, &pass, &with(&["--dry-run"]));
    assert!(
        line_of(&String::from_utf8_lossy(&out.stdout), &timestamp_ids[0]).contains("would migrate"),
        "a failed run imported something: {}",
        text(&out)
    );

    // The real run: both keys imported and verified; the bad rows still refused.
    let out = migrate(&work, &token, &db_url, &pass, &with(&[]));
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
    assert_eq!(db.sql("SELECT count(*) FROM private_keys")?, rows_before);
    db.sql(&format!(
        "DELETE FROM private_keys WHERE key_id IN ('{bad_algorithm}', '{corrupt}')"
    ))?;
    let out = migrate(&work, &token, &db_url, &pass, &with(&[]));
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
    let signerd =
        Signerd::start_on_port(&dir.subdir("signerd")?, "signerd", &token, pki, signer_port)?;
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
