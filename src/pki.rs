//! The API's credentials: a CA made at first start, a serving certificate
//! signed by it at every start (so new addresses and `--tls-san` names are
//! always covered, and nothing is written for it), and the admin bearer token.
//!
//! Files in DATA_DIR/tls (mode 0600 for secrets): ca.crt, ca.key, token.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum PkiError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    Cert {
        what: &'static str,
        source: rcgen::Error,
    },
}

impl std::fmt::Display for PkiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PkiError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            PkiError::Cert { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for PkiError {}

/// What the API server and `bramble kubeconfig` need.
pub struct Credentials {
    pub ca_pem: String,
    pub token: String,
}

pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
}

fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a secret file readable by root only, atomically.
pub fn write_secret(path: &Path, contents: &str) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bramble-ca");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    p
}

/// Loads the CA and token, making them on first start.
pub fn ensure(data_dir: &Path) -> Result<Credentials, PkiError> {
    let dir = tls_dir(data_dir);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let (ca_crt, ca_key, token) = (dir.join("ca.crt"), dir.join("ca.key"), dir.join("token"));
    if !ca_crt.exists() || !ca_key.exists() {
        let key = KeyPair::generate().map_err(|source| PkiError::Cert {
            what: "generating the CA key",
            source,
        })?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(|source| PkiError::Cert {
                what: "signing the CA certificate",
                source,
            })?;
        write_secret(&ca_key, &key.serialize_pem())?;
        write_secret(&ca_crt, &cert.pem())?;
        log::info!("made a new cluster CA in {}", dir.display());
    }
    if !token.exists() {
        let hex: String = crate::model::random_bytes::<24>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        write_secret(&token, &hex)?;
    }
    Ok(Credentials {
        ca_pem: fs::read_to_string(&ca_crt).map_err(io(&ca_crt))?,
        token: fs::read_to_string(&token)
            .map_err(io(&token))?
            .trim()
            .to_string(),
    })
}

/// A serving certificate for the given DNS names and IP addresses, signed by
/// the CA in `data_dir`. Kept in memory only.
pub fn serving_cert(data_dir: &Path, names: &[String]) -> Result<ServingCert, PkiError> {
    let issuer = ca_issuer(data_dir)?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bramble-apiserver");
    p.distinguished_name = dn;
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(|source| PkiError::Cert {
            what: "a --tls-san name",
            source,
        })?;
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let key = KeyPair::generate().map_err(|source| PkiError::Cert {
        what: "generating the serving key",
        source,
    })?;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(|source| PkiError::Cert {
            what: "signing the serving certificate",
            source,
        })?;
    Ok(ServingCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A client certificate (PEM) for `common_name` over a public key the
/// client made, signed by the CA in `data_dir`: the cluster link's per-node
/// credential.
pub fn client_cert(
    data_dir: &Path,
    common_name: &str,
    public_key: &impl rcgen::PublicKeyData,
) -> Result<String, PkiError> {
    let issuer = ca_issuer(data_dir)?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = p
        .signed_by(public_key, &issuer)
        .map_err(|source| PkiError::Cert {
            what: "signing a node certificate",
            source,
        })?;
    Ok(cert.pem())
}

fn ca_issuer(data_dir: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let ca_key_path = tls_dir(data_dir).join("ca.key");
    let ca_key_pem = fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|source| PkiError::Cert {
        what: "reading the CA key",
        source,
    })?;
    Ok(Issuer::new(ca_params(), ca_key))
}

/// A kubeconfig that kubectl uses as is.
pub fn kubeconfig(creds: &Credentials, server: &str) -> String {
    use base64::Engine;
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: bramble
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: bramble-admin
  user:
    token: {token}
contexts:
- name: bramble
  context:
    cluster: bramble
    user: bramble-admin
    namespace: default
current-context: bramble
",
        ca = base64::engine::general_purpose::STANDARD.encode(creds.ca_pem.as_bytes()),
        token = creds.token,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_made_once_and_signs_serving_certs() {
        let dir = std::env::temp_dir().join(format!("bramble-pki-{}", std::process::id()));
        let a = ensure(&dir).unwrap();
        let b = ensure(&dir).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.token, b.token);
        assert_eq!(a.token.len(), 48);
        let s = serving_cert(&dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(s.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
