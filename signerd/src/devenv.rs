//! The embedded development environment: `signerd serve` with nothing configured makes, under
//! `.signerd/` (git-ignored), a SoftHSM token with random PINs and throwaway mutual-TLS
//! certificates, and runs on them. Made once; later runs reuse it.
//!
//! Not for production: the TLS private keys are files, and the CA that signs them is one too.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use signerd_token::softhsm::{SoftHsmDir, SoftHsmError};

use crate::config::TlsFiles;

/// Why the development environment could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevEnvError {
    /// A folder could not be made.
    #[error("cannot create {path}: {source}; pick a folder you can write with --dev-dir")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}; pick a folder you can write with --dev-dir")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No random bytes for the PINs or serial numbers.
    #[error("cannot read /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
    /// The throwaway certificates could not be made.
    #[error("cannot make development certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    /// The SoftHSM folder or token could not be made.
    #[error(transparent)]
    SoftHsm(#[from] SoftHsmError),
}

/// Label of the development token.
pub const DEV_TOKEN_LABEL: &str = "signerd-dev";

/// The folder `signerd serve` keeps the development environment in (`--dev-dir`).
pub const DEFAULT_DEV_DIR: &str = ".signerd";

/// The admin socket's file name in the development folder; with [`DEFAULT_DEV_DIR`] it is
/// `signerd_vocab::DEV_ADMIN_SOCKET`, where the admin CLI looks when run from the same folder
/// (the shim only when `SIGNERD_SOCKET` says so).
pub const ADMIN_SOCKET_FILE: &str = "admin.sock";

/// The dev token's SO PIN file in the development folder.
const SO_PIN_FILE: &str = "so-pin";

/// A throwaway PKI for mutual TLS: a CA, a server certificate and a client certificate.
#[derive(Clone, Debug)]
pub struct DevPki {
    /// The CA certificate both sides trust.
    pub ca: PathBuf,
    /// signerd's certificate (SAN `localhost`, `127.0.0.1`, `::1`).
    pub server_cert: PathBuf,
    /// signerd's key.
    pub server_key: PathBuf,
    /// The client certificate for notary-server.
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
}

impl DevPki {
    /// Makes the PKI in `dir` unless it is already there.
    pub fn ensure(dir: &Path) -> Result<DevPki, DevEnvError> {
        let pki = DevPki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
        };
        if [
            &pki.ca,
            &pki.server_cert,
            &pki.server_key,
            &pki.client_cert,
            &pki.client_key,
        ]
        .iter()
        .all(|p| p.exists())
        {
            return Ok(pki);
        }
        std::fs::create_dir_all(dir).map_err(|source| DevEnvError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "signerd development CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |names: Vec<String>,
                    cn: &str,
                    eku: ExtendedKeyUsagePurpose|
         -> Result<(String, String), DevEnvError> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(names)?;
            params.distinguished_name.push(DnType::CommonName, cn);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![eku];
            let cert = params.signed_by(&key, &issuer)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let (server_pem, server_key) = leaf(names, "signerd", ExtendedKeyUsagePurpose::ServerAuth)?;
        let (client_pem, client_key) = leaf(
            Vec::new(),
            "notary-server",
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;

        write_file(&pki.ca, &ca_cert.pem(), 0o644)?;
        write_file(&pki.server_cert, &server_pem, 0o644)?;
        write_file(&pki.server_key, &server_key, 0o600)?;
        write_file(&pki.client_cert, &client_pem, 0o644)?;
        write_file(&pki.client_key, &client_key, 0o600)?;
        Ok(pki)
    }

    /// The TLS files signerd serves with.
    pub fn server_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
            client_ca: self.ca.clone(),
        }
    }
}

/// The whole development environment under one folder.
#[derive(Clone, Debug)]
pub struct DevEnv {
    /// The folder (`.signerd/` by default).
    pub root: PathBuf,
    /// The SoftHSM configuration (`SOFTHSM2_CONF`).
    pub softhsm_conf: PathBuf,
    /// The token URI, with its PIN file.
    pub token_uri: String,
    /// The mutual-TLS files.
    pub pki: DevPki,
}

impl DevEnv {
    /// Where the admin API is served on the development environment.
    pub fn admin_socket(&self) -> PathBuf {
        self.root.join(ADMIN_SOCKET_FILE)
    }

    /// The file holding the dev token's SO PIN (what an SO `Login` on the admin API checks).
    pub fn so_pin_file(&self) -> PathBuf {
        self.root.join(SO_PIN_FILE)
    }

    /// Makes (or reuses) the development environment in `root`.
    pub fn ensure(root: &Path) -> Result<DevEnv, DevEnvError> {
        let hsm = SoftHsmDir::create(&root.join("softhsm"))?;
        let pin_file = root.join("pin");
        if !hsm.has_token(DEV_TOKEN_LABEL) {
            let pin = random_hex(8)?;
            let so_pin = random_hex(8)?;
            hsm.init_token(DEV_TOKEN_LABEL, &pin, &so_pin)?;
            write_file(&pin_file, &pin, 0o600)?;
            write_file(&root.join(SO_PIN_FILE), &so_pin, 0o600)?;
        }
        let pki = DevPki::ensure(&root.join("tls"))?;
        let absolute = std::fs::canonicalize(&pin_file).unwrap_or(pin_file);
        Ok(DevEnv {
            root: root.to_path_buf(),
            softhsm_conf: hsm.conf(),
            token_uri: hsm.uri(DEV_TOKEN_LABEL, &absolute),
            pki,
        })
    }
}

/// Writes `contents` to `path`, created with `mode` (private keys and PINs: 0600).
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), DevEnvError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .map_err(|source| DevEnvError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// `bytes` random bytes as hex (the dev token's PINs).
fn random_hex(bytes: usize) -> Result<String, DevEnvError> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .map_err(DevEnvError::Random)?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_admin_socket_is_where_the_cli_looks_from_the_same_folder() {
        assert_eq!(
            Path::new(DEFAULT_DEV_DIR).join(ADMIN_SOCKET_FILE),
            Path::new(signerd_vocab::DEV_ADMIN_SOCKET)
        );
        assert!(Path::new(signerd_vocab::DEFAULT_ADMIN_SOCKET).is_absolute());
    }

    #[test]
    fn dev_pki_is_made_once_and_private_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::ensure(dir.path()).unwrap();
        let first = std::fs::read(&pki.server_cert).unwrap();
        let again = DevPki::ensure(dir.path()).unwrap();
        assert_eq!(
            std::fs::read(&again.server_cert).unwrap(),
            first,
            "reused, not remade"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&pki.server_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_unwritable_folder_says_to_pick_another() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let err = DevPki::ensure(&file.join("tls")).unwrap_err();
        assert!(matches!(err, DevEnvError::CreateDir { .. }), "{err:?}");
        assert!(
            err.to_string()
                .ends_with("pick a folder you can write with --dev-dir"),
            "{err}"
        );
    }
}
