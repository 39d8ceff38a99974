//! Per-node credentials. The join token's secret is shown once, over a TLS
//! connection whose server the agent has already checked against the
//! token's CA hash; the agent sends a public key it made (its private key
//! never leaves the board) and gets back a client certificate for its node
//! name, signed by the cluster CA. From then on it connects with mutual TLS.
//!
//! The server keeps one file per admitted node, DATA_DIR/cluster/nodes/NAME,
//! holding the sha256 of the certificate it issued. A certificate the CA
//! signed but whose hash is not there is refused, so removing the file
//! (`kubectl delete node NAME`) revokes that board alone, durably, without
//! re-keying the others.
//!
//! Agent side: DATA_DIR/cluster/node.key (0600) and node.crt.

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::tls::{self, TlsError};
use crate::pki::{self, PkiError};

#[derive(Debug)]
pub enum JoinError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    Pki(PkiError),
    Tls(TlsError),
    Key(rcgen::Error),
    /// A node name that cannot be a file name or a Node name.
    BadName(String),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            JoinError::Pki(e) => write!(f, "{e}"),
            JoinError::Tls(e) => write!(f, "{e}"),
            JoinError::Key(e) => write!(f, "node key: {e}"),
            JoinError::BadName(n) => write!(
                f,
                "node name {n:?} is not a valid Kubernetes node name (lower-case letters, digits, '-' and '.')"
            ),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<PkiError> for JoinError {
    fn from(e: PkiError) -> Self {
        JoinError::Pki(e)
    }
}

impl From<TlsError> for JoinError {
    fn from(e: TlsError) -> Self {
        JoinError::Tls(e)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JoinError + '_ {
    move |source| JoinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cluster_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster")
}

/// A DNS-subdomain node name: safe as a file name and as a Node name.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}

/// Compares in constant time, so a wrong guess learns nothing of the secret.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's record of admitted nodes.
pub struct Registry {
    data_dir: PathBuf,
    secret: String,
    /// Node name -> sha256 hex of its current certificate.
    nodes: BTreeMap<String, String>,
}

impl Registry {
    /// Loads the join secret (made on first use) and the admitted nodes.
    pub fn open(data_dir: &Path) -> Result<Registry, JoinError> {
        let dir = cluster_dir(data_dir).join("nodes");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let secret_path = cluster_dir(data_dir).join("secret");
        if !secret_path.exists() {
            let hex: String = crate::model::random_bytes::<24>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            pki::write_secret(&secret_path, &hex)?;
        }
        let secret = fs::read_to_string(&secret_path)
            .map_err(io(&secret_path))?
            .trim()
            .to_string();
        let mut nodes = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_node_name(&name) {
                continue; // e.g. a write's leftover temporary file
            }
            let hash = fs::read_to_string(entry.path()).map_err(io(&entry.path()))?;
            nodes.insert(name, hash.trim().to_string());
        }
        Ok(Registry {
            data_dir: data_dir.to_path_buf(),
            secret,
            nodes,
        })
    }

    /// What `bramble token` prints for a cluster whose CA is `ca_pem`.
    pub fn token(&self, ca_pem: &str) -> Result<tls::Token, JoinError> {
        let ca = tls::certs_from_pem(ca_pem)?;
        let ca = ca
            .first()
            .ok_or_else(|| TlsError::Pem("no certificate in the CA file".into()))?;
        Ok(tls::Token::new(ca, &self.secret))
    }

    pub fn secret_matches(&self, given: &str) -> bool {
        same_secret(given, &self.secret)
    }

    /// Certifies `public_key` (a raw P-256 point) for `node`, replacing any
    /// earlier certificate of that node. Returns the certificate (PEM).
    pub fn issue(&mut self, node: &str, public_key: &[u8]) -> Result<String, JoinError> {
        if !valid_node_name(node) {
            return Err(JoinError::BadName(node.to_string()));
        }
        let pem = pki::client_cert(&self.data_dir, node, &RawP256(public_key))?;
        let der = tls::certs_from_pem(&pem)?;
        let hash = tls::sha256_hex(&der[0]);
        let path = cluster_dir(&self.data_dir).join("nodes").join(node);
        pki::write_secret(&path, &hash)?;
        self.nodes.insert(node.to_string(), hash);
        Ok(pem)
    }

    /// The node a client certificate belongs to, if it is the current one of
    /// an admitted node.
    pub fn node_of(&self, cert_der: &[u8]) -> Option<&str> {
        let hash = tls::sha256_hex(cert_der);
        self.nodes
            .iter()
            .find(|(_, h)| **h == hash)
            .map(|(n, _)| n.as_str())
    }

    /// Whether `node` joined (and was not revoked since).
    pub fn admitted(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// Forgets `node`'s certificate; true if it had one.
    pub fn revoke(&mut self, node: &str) -> Result<bool, JoinError> {
        if self.nodes.remove(node).is_none() {
            return Ok(false);
        }
        let path = cluster_dir(&self.data_dir).join("nodes").join(node);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

/// A P-256 public key as the raw point an agent sends.
struct RawP256<'a>(&'a [u8]);

impl PublicKeyData for RawP256<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// An agent's key pair and certificate, as stored in its data dir.
pub struct Identity {
    pub key_pem: String,
    pub cert_pem: String,
}

impl Identity {
    fn paths(data_dir: &Path) -> (PathBuf, PathBuf) {
        let d = cluster_dir(data_dir);
        (d.join("node.key"), d.join("node.crt"))
    }

    /// The stored identity, if this board has joined.
    pub fn load(data_dir: &Path) -> Result<Option<Identity>, JoinError> {
        let (key, cert) = Identity::paths(data_dir);
        if !key.exists() || !cert.exists() {
            return Ok(None);
        }
        Ok(Some(Identity {
            key_pem: fs::read_to_string(&key).map_err(io(&key))?,
            cert_pem: fs::read_to_string(&cert).map_err(io(&cert))?,
        }))
    }

    /// A new key pair to join with; returns it and the public key to send.
    pub fn new_key() -> Result<(KeyPair, Vec<u8>), JoinError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(JoinError::Key)?;
        let public = key.public_key_raw().to_vec();
        Ok((key, public))
    }

    /// Stores what a join returned.
    pub fn save(data_dir: &Path, key: &KeyPair, cert_pem: &str) -> Result<Identity, JoinError> {
        let dir = cluster_dir(data_dir);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let (key_path, cert_path) = Identity::paths(data_dir);
        let id = Identity {
            key_pem: key.serialize_pem(),
            cert_pem: cert_pem.to_string(),
        };
        pki::write_secret(&key_path, &id.key_pem)?;
        pki::write_secret(&cert_path, &id.cert_pem)?;
        Ok(id)
    }

    /// Forgets the identity (after the server revoked it), so that the next
    /// start joins again with the token.
    pub fn remove(data_dir: &Path) -> Result<(), JoinError> {
        let (key, cert) = Identity::paths(data_dir);
        for p in [key, cert] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A temporary data dir with a cluster CA, removed on drop.
    pub(crate) struct Dir(pub PathBuf);

    impl Dir {
        pub(crate) fn new(tag: &str) -> Dir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d =
                std::env::temp_dir().join(format!("bramble-join-{tag}-{}-{n}", std::process::id()));
            pki::ensure(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn issued_certificates_name_their_node_until_revoked_even_after_a_restart() {
        let dir = Dir::new("registry");
        let mut reg = Registry::open(&dir.0).unwrap();
        let (_, public) = Identity::new_key().unwrap();
        let pem = reg.issue("pi-1", &public).unwrap();
        let der = tls::certs_from_pem(&pem).unwrap().remove(0);
        assert_eq!(reg.node_of(&der), Some("pi-1"));
        let (_, other) = Identity::new_key().unwrap();
        let pem2 = reg.issue("pi-2", &other).unwrap();
        let der2 = tls::certs_from_pem(&pem2).unwrap().remove(0);

        let mut reopened = Registry::open(&dir.0).unwrap();
        assert_eq!(reopened.node_of(&der), Some("pi-1"));
        assert!(reopened.revoke("pi-1").unwrap());
        assert_eq!(reopened.node_of(&der), None);
        assert_eq!(reopened.node_of(&der2), Some("pi-2"), "others keep working");
        let again = Registry::open(&dir.0).unwrap();
        assert_eq!(again.node_of(&der), None, "revocation is durable");
        assert_eq!(again.secret, reg.secret, "the secret is made once");
    }

    #[test]
    fn bad_node_names_and_secrets_are_refused() {
        let dir = Dir::new("names");
        let mut reg = Registry::open(&dir.0).unwrap();
        let (_, public) = Identity::new_key().unwrap();
        for bad in ["", "../etc", "Upper", "-x", "a/b"] {
            assert!(matches!(
                reg.issue(bad, &public),
                Err(JoinError::BadName(_))
            ));
        }
        let secret = reg.secret.clone();
        assert!(reg.secret_matches(&secret));
        assert!(!reg.secret_matches("nope"));
        assert!(!reg.secret_matches(&format!("{secret}x")));
        let ca = fs::read_to_string(dir.0.join("tls/ca.crt")).unwrap();
        let token = reg.token(&ca).unwrap();
        assert_eq!(token.secret, secret);
        assert_eq!(token.to_string().parse::<tls::Token>().unwrap(), token);
    }
}
