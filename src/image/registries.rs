//! k3s's `registries.yaml`: mirrors (with optional repository rewrites) and
//! per-endpoint auth and TLS. Unknown keys are errors, so a typo does not
//! silently pull from the wrong place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ImageError;
use super::reference::{DOCKER_HUB, Reference};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Keyed by endpoint host (`host:port`), as k3s does.
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regex on the repository -> replacement (`$1`), applied for this mirror's endpoints.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub auth: Option<AuthConfig>,
    pub tls: Option<TlsConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `user:password`.
    pub auth: Option<String>,
    pub identity_token: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to try for an image: the base URL up to and including `/v2`,
/// and the repository as that place names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub base: String,
    /// `host:port`, the key for credentials and TLS settings.
    pub host: String,
    pub repository: String,
}

impl Registries {
    pub fn load(path: &Path) -> Result<Registries, ImageError> {
        let text = std::fs::read_to_string(path).map_err(|e| ImageError::Registries {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Registries::parse(&text).map_err(|reason| ImageError::Registries {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Registries, String> {
        let reg: Registries = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        for (name, mirror) in &reg.mirrors {
            for e in &mirror.endpoint {
                split_endpoint(e).map_err(|r| format!("mirrors.{name}.endpoint {e:?}: {r}"))?;
            }
            for pattern in mirror.rewrite.keys() {
                regex_lite::Regex::new(pattern)
                    .map_err(|e| format!("mirrors.{name}.rewrite {pattern:?}: {e}"))?;
            }
        }
        Ok(reg)
    }

    /// Where to look for `r`, in order: its mirrors (or the `*` mirror), then
    /// the registry itself, as k3s does.
    pub fn endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let mirror = self
            .mirrors
            .get(&r.registry)
            .or_else(|| self.mirrors.get("*"));
        let mut out = Vec::new();
        if let Some(m) = mirror {
            let repository = rewrite(&m.rewrite, &r.repository);
            for e in &m.endpoint {
                if let Ok((base, host)) = split_endpoint(e) {
                    out.push(Endpoint {
                        base,
                        host,
                        repository: repository.clone(),
                    });
                }
            }
        }
        let default = default_endpoint(&r.registry);
        if !out.iter().any(|e| e.base == default.0) {
            out.push(Endpoint {
                base: default.0,
                host: default.1,
                repository: r.repository.clone(),
            });
        }
        out
    }

    pub fn config(&self, host: &str) -> Option<&RegistryConfig> {
        self.configs.get(host)
    }
}

fn rewrite(rules: &BTreeMap<String, String>, repository: &str) -> String {
    for (pattern, replacement) in rules {
        if let Ok(re) = regex_lite::Regex::new(pattern)
            && re.is_match(repository)
        {
            return re.replace(repository, replacement.as_str()).into_owned();
        }
    }
    repository.to_string()
}

/// `https://host:port[/path]` -> (`https://host:port/v2` or the path as given, `host:port`).
/// No scheme means https, as in k3s.
fn split_endpoint(e: &str) -> Result<(String, String), String> {
    let (scheme, rest) = match e.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        Some((s, _)) => return Err(format!("scheme {s:?} is not http or https")),
        None => ("https", e),
    };
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let path = if path.is_empty() { "v2" } else { path };
    Ok((format!("{scheme}://{host}/{path}"), host.to_string()))
}

/// Docker Hub's API host is not its name; loopback registries speak plain
/// HTTP (Docker treats 127.0.0.0/8 as insecure by default too).
fn default_endpoint(registry: &str) -> (String, String) {
    let host = if registry == DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    };
    let hostname = host
        .rsplit_once(':')
        .map(|(h, _)| h)
        .filter(|_| !host.ends_with(']'))
        .unwrap_or(host);
    let loopback = hostname == "localhost" || hostname.starts_with("127.") || hostname == "[::1]";
    let scheme = if loopback { "http" } else { "https" };
    (format!("{scheme}://{host}/v2"), host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://10.0.0.5:5000"
      - "https://mirror.example.com"
    rewrite:
      "^library/(.*)": "hub/$1"
  "*":
    endpoint: ["https://everything.example.com/custom/v2"]
configs:
  "mirror.example.com":
    auth: {username: u, password: p}
    tls: {insecure_skip_verify: true}
  "10.0.0.5:5000":
    auth: {auth: dTpw}
"#;

    #[test]
    fn parses_k3s_registries_yaml() {
        let reg = Registries::parse(EXAMPLE).unwrap();
        assert_eq!(reg.mirrors["docker.io"].endpoint.len(), 2);
        assert!(
            reg.config("mirror.example.com")
                .and_then(|c| c.tls.as_ref())
                .is_some_and(|t| t.insecure_skip_verify)
        );
        assert_eq!(
            reg.config("10.0.0.5:5000")
                .and_then(|c| c.auth.as_ref())
                .and_then(|a| a.auth.as_deref()),
            Some("dTpw")
        );
    }

    #[test]
    fn unknown_key_is_named_in_the_error() {
        let err = Registries::parse("mirrors:\n  docker.io:\n    endpoints: [\"http://x\"]\n")
            .unwrap_err();
        assert!(err.contains("unknown field `endpoints`"), "{err}");
        let err = Registries::parse("configs:\n  x:\n    auth: {user: a}\n").unwrap_err();
        assert!(err.contains("unknown field `user`"), "{err}");
        let err = Registries::parse("mirrors:\n  x:\n    endpoint: [\"ftp://h\"]\n").unwrap_err();
        assert!(err.contains("mirrors.x.endpoint"), "{err}");
    }

    #[test]
    fn mirrors_first_then_the_registry_with_rewrites() {
        let reg = Registries::parse(EXAMPLE).unwrap();
        let eps = reg.endpoints(&Reference::parse("busybox").unwrap());
        let got: Vec<(&str, &str)> = eps
            .iter()
            .map(|e| (e.base.as_str(), e.repository.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("http://10.0.0.5:5000/v2", "hub/busybox"),
                ("https://mirror.example.com/v2", "hub/busybox"),
                ("https://registry-1.docker.io/v2", "library/busybox"),
            ]
        );
        let eps = reg.endpoints(&Reference::parse("ghcr.io/o/app:1").unwrap());
        assert_eq!(eps[0].base, "https://everything.example.com/custom/v2");
        assert_eq!(eps[1].base, "https://ghcr.io/v2");
    }

    #[test]
    fn loopback_registries_default_to_plain_http() {
        let reg = Registries::default();
        assert_eq!(
            reg.endpoints(&Reference::parse("127.0.0.1:5000/a").unwrap())[0].base,
            "http://127.0.0.1:5000/v2"
        );
        assert_eq!(
            reg.endpoints(&Reference::parse("localhost:5000/a").unwrap())[0].base,
            "http://localhost:5000/v2"
        );
        assert_eq!(
            reg.endpoints(&Reference::parse("quay.io/a/b").unwrap())[0].base,
            "https://quay.io/v2"
        );
    }
}
