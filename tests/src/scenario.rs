//! The notary lifecycle every signer must carry: init, server-managed snapshot and timestamp
//! keys, targets by file and by hash, verification, a delegation signed by a separate client,
//! removal and remote deletion, each step's exit status and effect checked.
//!
//! Split in two parts so a test can restart the signer between them.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::notary::{parse_key_list, parse_target_list, ListedTarget, NotaryClient, NotaryServer};
use crate::pki;

/// How long a part waits for notary-server's health to be 200 before it starts.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// The delegation role the delegate client signs for.
pub const DELEGATION_ROLE: &str = "targets/releases";

const V1_CONTENT: &[u8] = b"signerd lifecycle target v1\n";
const V2_CONTENT: &[u8] = b"signerd lifecycle target v2, added by hash\n";
const V3_CONTENT: &[u8] = b"signerd lifecycle target v3, signed by the delegate\n";
const TAMPERED_CONTENT: &[u8] = b"signerd lifecycle target v1, tampered\n";

/// The lifecycle of one GUN against one notary-server, with three CLI users:
/// `admin` (owns root and targets keys), `reader` (a fresh client that only downloads and
/// verifies, so every signature the signer made is checked by someone without a cache), and
/// `delegate` (holds only its `targets/releases` key).
#[derive(Debug)]
pub struct Lifecycle {
    gun: String,
    key_algorithm: String,
    files: PathBuf,
    admin: NotaryClient,
    reader: NotaryClient,
    delegate: NotaryClient,
}

impl Lifecycle {
    /// Prepares the three clients (under `dir/admin`, `dir/reader`, `dir/delegate`) and the
    /// target files (under `dir/files`) for `gun` on `server`.
    pub fn new(dir: &Path, server: &NotaryServer, gun: &str) -> io::Result<Self> {
        let client = |name: &str| {
            let path = dir.join(name);
            std::fs::create_dir_all(&path)?;
            NotaryClient::new(&path, &server.url(), server.ca_file())
        };
        let (admin, reader, delegate) = (client("admin")?, client("reader")?, client("delegate")?);
        Self::with_clients(&dir.join("files"), server, gun, admin, reader, delegate)
    }

    /// Like [`Self::new`] with clients set up by the caller (e.g. an admin whose root key lives
    /// behind a PKCS#11 provider); each must be fresh, with its own trust dir. Target files go
    /// under `files_dir`.
    pub fn with_clients(
        files_dir: &Path,
        server: &NotaryServer,
        gun: &str,
        admin: NotaryClient,
        reader: NotaryClient,
        delegate: NotaryClient,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(files_dir)?;
        for (name, content) in [
            ("v1", V1_CONTENT),
            ("v3", V3_CONTENT),
            ("tampered", TAMPERED_CONTENT),
        ] {
            std::fs::write(files_dir.join(name), content)?;
        }
        Ok(Self {
            gun: gun.to_owned(),
            key_algorithm: server.key_algorithm().to_owned(),
            files: files_dir.to_owned(),
            admin,
            reader,
            delegate,
        })
    }

    /// The repository owner: root and targets keys.
    pub fn admin(&self) -> &NotaryClient {
        &self.admin
    }

    /// The read-only client.
    pub fn reader(&self) -> &NotaryClient {
        &self.reader
    }

    /// The delegate client, holding only the `targets/releases` key (after part 2 starts).
    pub fn delegate(&self) -> &NotaryClient {
        &self.delegate
    }

    /// The GUN.
    pub fn gun(&self) -> &str {
        &self.gun
    }

    /// Both parts in a row.
    pub fn run(&self, server: &NotaryServer) {
        self.part1(server);
        self.part2(server);
    }

    /// Part 1: `init --publish` (server makes the timestamp key), snapshot key rotated to the
    /// server, `add v1` + `publish`, then `list` by admin and reader and `lookup v1` by reader.
    ///
    /// # Panics
    /// On the first step that fails, with the CLI's output.
    pub fn part1(&self, server: &NotaryServer) {
        let gun = self.gun.as_str();
        wait_healthy(server);

        let out = self.admin.run_ok(&["init", gun, "--publish"]);
        assert!(
            out.contains("Successfully published"),
            "init did not publish:\n{out}"
        );

        let out = self
            .admin
            .run_ok(&["key", "rotate", gun, "snapshot", "--server-managed"]);
        assert!(
            out.contains("Successfully rotated snapshot key"),
            "snapshot rotation:\n{out}"
        );

        let v1 = self.file("v1");
        self.admin.run_ok(&["add", gun, "v1", path_str(&v1)]);
        let out = self.admin.run_ok(&["publish", gun]);
        assert!(
            out.contains("Successfully published"),
            "publish of v1:\n{out}"
        );

        let expected_v1 = target("v1", V1_CONTENT, "targets");
        assert_eq!(self.list(&self.admin), vec![expected_v1.clone()]);
        assert_eq!(self.list(&self.reader), vec![expected_v1.clone()]);
        // The reader has just downloaded the current root.json.
        self.server_key_id("timestamp");
        self.server_key_id("snapshot");

        let out = self.reader.run_ok(&["lookup", gun, "v1"]);
        let expected = format!("v1 sha256:{} {}", expected_v1.digest, expected_v1.size);
        assert_eq!(out.trim(), expected, "lookup v1");

        assert_eq!(server.health_status(), 200, "health after part 1");
    }

    /// Part 2: `addhash v2` + publish, `verify` of v1 (and of tampered content, which fails),
    /// a `targets/releases` delegation published by the admin and used by the delegate alone,
    /// timestamp key rotated on the server, `remove v1`, `delete --remote`.
    ///
    /// # Panics
    /// On the first step that fails, with the CLI's output.
    pub fn part2(&self, server: &NotaryServer) {
        let gun = self.gun.as_str();
        // After a signer restart notary-server needs about a second to reconnect (gRPC
        // backoff; its calls fail fast meanwhile), and its health may say 503 for up to 10 s.
        if let Err(e) = server.wait_signer_reachable(gun, HEALTHY_TIMEOUT) {
            panic!("{e}");
        }
        wait_healthy(server);

        // The first publish after a possible signer restart: the signer must still have the
        // snapshot and timestamp keys made in part 1.
        let v2_digest = hex::encode(Sha256::digest(V2_CONTENT));
        let v2_size = V2_CONTENT.len().to_string();
        let out = self.admin.run_ok(&[
            "addhash",
            gun,
            "v2",
            &v2_size,
            "--sha256",
            &v2_digest,
            "--publish",
        ]);
        assert!(
            out.contains("Successfully published"),
            "addhash v2 publish:\n{out}"
        );
        let v1 = target("v1", V1_CONTENT, "targets");
        let v2 = target("v2", V2_CONTENT, "targets");
        assert_eq!(self.list(&self.reader), vec![v1.clone(), v2.clone()]);

        let out = self
            .reader
            .run_ok_with_stdin(&["verify", gun, "v1"], &self.file("v1"));
        assert_eq!(
            out.as_bytes(),
            V1_CONTENT,
            "verify echoes the verified content"
        );
        let out = self
            .reader
            .run_err_with_stdin(&["verify", gun, "v1"], &self.file("tampered"));
        assert!(
            out.contains("did not match"),
            "tampered content must fail verification with a checksum mismatch:\n{out}"
        );

        let v3 = self.delegation(server);
        let old_timestamp_key = self.server_key_id("timestamp");

        let out = self
            .admin
            .run_ok(&["key", "rotate", gun, "timestamp", "--server-managed"]);
        assert!(
            out.contains("Successfully rotated timestamp key"),
            "timestamp rotation:\n{out}"
        );
        assert_eq!(self.list(&self.reader), vec![v1, v2.clone(), v3.clone()]);
        let new_timestamp_key = self.server_key_id("timestamp");
        assert_ne!(
            new_timestamp_key, old_timestamp_key,
            "the timestamp key did not change in root.json"
        );

        let out = self.admin.run_ok(&["remove", gun, "v1", "--publish"]);
        assert!(
            out.contains("Successfully published"),
            "remove v1 publish:\n{out}"
        );
        assert_eq!(self.list(&self.reader), vec![v2, v3]);
        assert_eq!(server.health_status(), 200, "health before delete");

        let out = self.admin.run_ok(&["delete", gun, "--remote"]);
        assert!(
            out.contains("Successfully deleted local and remote trust data"),
            "delete --remote:\n{out}"
        );
        // A client that still has a cache keeps listing it (with only a warning) after the
        // remote delete, so check the admin (whose cache went too) and the server itself.
        let out = self.admin.run_err(&["list", gun]);
        assert!(
            out.contains("does not have trust data"),
            "list after delete --remote:\n{out}"
        );
        let root_path = format!("/v2/{gun}/_trust/tuf/root.json");
        assert_eq!(
            server.get_status(&root_path).ok(),
            Some(404),
            "root.json after delete --remote"
        );
        assert_eq!(server.health_status(), 200, "health after part 2");
    }

    /// The delegation steps; returns the target the delegate added.
    fn delegation(&self, server: &NotaryServer) -> ListedTarget {
        let gun = self.gun.as_str();
        let key = pki::delegation_key(self.delegate.dir(), "releases-delegate")
            .unwrap_or_else(|e| panic!("making the delegation key: {e}"));

        let out = self.admin.run_ok(&[
            "delegation",
            "add",
            gun,
            DELEGATION_ROLE,
            path_str(&key.cert),
            "--all-paths",
            "--publish",
        ]);
        assert!(
            out.contains("Successfully published"),
            "delegation add publish:\n{out}"
        );
        let out = self.reader.run_ok(&["delegation", "list", gun]);
        assert!(
            out.contains(DELEGATION_ROLE),
            "delegation list does not show {DELEGATION_ROLE}:\n{out}"
        );

        self.delegate.run_ok(&[
            "key",
            "import",
            path_str(&key.key),
            "--role",
            DELEGATION_ROLE,
        ]);
        let keys = parse_key_list(&self.delegate.run_ok(&["key", "list"]));
        let roles: Vec<&str> = keys.iter().map(|k| k.role.as_str()).collect();
        assert_eq!(
            roles,
            vec![DELEGATION_ROLE],
            "the delegate must hold only its delegation key"
        );

        let v3_file = self.file("v3");
        let out = self.delegate.run_ok(&[
            "add",
            gun,
            "v3",
            path_str(&v3_file),
            "--roles",
            DELEGATION_ROLE,
            "--publish",
        ]);
        assert!(
            out.contains("Successfully published"),
            "delegate's publish of v3:\n{out}"
        );

        let v3 = target("v3", V3_CONTENT, DELEGATION_ROLE);
        let listed = self.list(&self.admin);
        assert!(
            listed.contains(&v3),
            "admin's list lacks the delegate's v3: {listed:?}"
        );
        assert_eq!(server.health_status(), 200, "health after delegation");
        v3
    }

    /// `notary list <gun>` by `client`, parsed and sorted by name.
    fn list(&self, client: &NotaryClient) -> Vec<ListedTarget> {
        let mut rows = parse_target_list(&client.run_ok(&["list", &self.gun]));
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// Checks in the reader's cached root.json (current after its last `list`) that `role` has
    /// exactly one key, of the server's key algorithm, that the admin does not hold: the key
    /// notary-server got from the signer. Returns its ID.
    fn server_key_id(&self, role: &str) -> String {
        let path = self
            .reader
            .trust_dir()
            .join("tuf")
            .join(&self.gun)
            .join("metadata")
            .join("root.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let root: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        let ids = root["signed"]["roles"][role]["keyids"]
            .as_array()
            .unwrap_or_else(|| panic!("root.json has no {role} role:\n{text}"));
        assert_eq!(ids.len(), 1, "{role} key IDs in root.json: {ids:?}");
        let id = ids[0].as_str().unwrap_or_default().to_owned();
        let keytype = root["signed"]["keys"][&id]["keytype"].as_str();
        assert_eq!(
            keytype,
            Some(self.key_algorithm.as_str()),
            "keytype of the {role} key {id} in root.json"
        );
        let admin_keys = parse_key_list(&self.admin.run_ok(&["key", "list"]));
        assert!(
            admin_keys.iter().all(|k| k.key_id != id),
            "the {role} key {id} should be held by the signer, not the admin: {admin_keys:?}"
        );
        id
    }

    /// Path of the target file `name`.
    fn file(&self, name: &str) -> PathBuf {
        self.files.join(name)
    }
}

/// The row `notary list` shows for `content` added as `name` by `role`.
fn target(name: &str, content: &[u8], role: &str) -> ListedTarget {
    ListedTarget {
        name: name.to_owned(),
        digest: hex::encode(Sha256::digest(content)),
        size: content.len() as u64,
        role: role.to_owned(),
    }
}

/// Waits for health 200, panicking with the server's log tail if it does not come.
fn wait_healthy(server: &NotaryServer) {
    if let Err(e) = server.wait_healthy(HEALTHY_TIMEOUT) {
        panic!("{e}");
    }
}

/// A path as a CLI argument.
fn path_str(path: &Path) -> &str {
    // Every path here is built under a tempfile directory from ASCII names.
    path.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 test path {}", path.display()))
}
