//! Registry credentials (registries.yaml and imagePullSecrets) and the
//! `WWW-Authenticate` challenges registries answer with.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::ImageError;
use super::registries::Registries;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token, exchanged at the token realm.
    IdentityToken(String),
}

/// Credentials by registry host. Pull secrets come first, then the node's
/// registries.yaml, as the kubelet orders them.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    entries: Vec<(String, Auth)>,
}

impl Credentials {
    /// No credentials: anonymous pulls only.
    pub fn none() -> Credentials {
        Credentials::default()
    }

    pub fn from_registries(reg: &Registries) -> Result<Credentials, ImageError> {
        let mut entries = Vec::new();
        for (host, config) in &reg.configs {
            let Some(a) = &config.auth else { continue };
            let auth = match (&a.identity_token, &a.auth, &a.username, &a.password) {
                (Some(t), ..) => Auth::IdentityToken(t.clone()),
                (None, Some(encoded), ..) => {
                    decode_auth(encoded).map_err(|reason| ImageError::Auth {
                        registry: host.clone(),
                        reason: format!("configs.{host}.auth.auth: {reason}"),
                    })?
                }
                (None, None, Some(u), p) => Auth::Basic {
                    username: u.clone(),
                    password: p.clone().unwrap_or_default(),
                },
                _ => continue,
            };
            entries.push((normalise_host(host), auth));
        }
        Ok(Credentials { entries })
    }

    /// Adds an imagePullSecret of type kubernetes.io/dockerconfigjson: `data`
    /// is its `.dockerconfigjson` value, base64-encoded as in the Secret.
    pub fn with_pull_secret(mut self, data: &str) -> Result<Credentials, ImageError> {
        let bad = |reason: String| ImageError::PullSecret { reason };
        let json = STANDARD
            .decode(data.trim())
            .map_err(|e| bad(format!(".dockerconfigjson is not base64: {e}")))?;
        let file: DockerConfig = serde_json::from_slice(&json)
            .map_err(|e| bad(format!(".dockerconfigjson is not a docker config: {e}")))?;
        let mut added = Vec::new();
        for (key, entry) in file.auths {
            let auth = match (entry.identitytoken, entry.auth, entry.username) {
                (Some(t), ..) => Auth::IdentityToken(t),
                (None, Some(encoded), _) => {
                    decode_auth(&encoded).map_err(|r| bad(format!("auths.{key}.auth: {r}")))?
                }
                (None, None, Some(u)) => Auth::Basic {
                    username: u,
                    password: entry.password.unwrap_or_default(),
                },
                _ => continue,
            };
            added.push((normalise_host(&key), auth));
        }
        added.append(&mut self.entries);
        self.entries = added;
        Ok(self)
    }

    pub fn get(&self, host: &str) -> Option<&Auth> {
        let host = normalise_host(host);
        self.entries
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, a)| a)
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

fn decode_auth(encoded: &str) -> Result<Auth, String> {
    let raw = STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let text = String::from_utf8(raw).map_err(|_| "not UTF-8".to_string())?;
    let (username, password) = text
        .split_once(':')
        .ok_or("expected base64 of user:password")?;
    Ok(Auth::Basic {
        username: username.into(),
        password: password.into(),
    })
}

/// `https://index.docker.io/v1/` and `registry-1.docker.io` are Docker Hub;
/// keys may carry a scheme and a path.
fn normalise_host(key: &str) -> String {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-case: `basic` or `bearer`.
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value (RFC 7235): one or more challenges,
/// parameters as `key=token` or `key="quoted, with \" escapes"`.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let word_end = rest.find([' ', '=', ',']).unwrap_or(rest.len());
        let word = &rest[..word_end];
        let after = rest[word_end..].trim_start();
        if after.starts_with('=') && !out.is_empty() {
            let (value, remaining) = parse_value(after[1..].trim_start());
            if let Some(c) = out.last_mut() {
                c.params.insert(word.to_ascii_lowercase(), value);
            }
            rest = remaining;
        } else if !word.is_empty() {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            rest = after;
        } else {
            break;
        }
    }
    out
}

fn parse_value(s: &str) -> (String, &str) {
    let Some(quoted) = s.strip_prefix('"') else {
        let end = s.find([',', ' ']).unwrap_or(s.len());
        return (s[..end].to_string(), &s[end..]);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => return (value, &quoted[i + 1..]),
            c => value.push(c),
        }
    }
    (value, "")
}

pub fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge_with_quoted_commas() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["service"], "registry.docker.io");
        assert_eq!(c[0].params["scope"], "repository:library/busybox:pull,push");
    }

    #[test]
    fn parses_basic_and_multiple_challenges() {
        let c = parse_challenges(
            r#"Basic realm="r", Bearer realm=http://t/token, error="invalid_token\"x""#,
        );
        assert_eq!(
            c.iter().map(|c| c.scheme.as_str()).collect::<Vec<_>>(),
            ["basic", "bearer"]
        );
        assert_eq!(c[0].params["realm"], "r");
        assert_eq!(c[1].params["realm"], "http://t/token");
        assert_eq!(c[1].params["error"], "invalid_token\"x");
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn pull_secret_credentials_come_first_and_hub_keys_normalise() {
        let yaml = "configs:\n  docker.io:\n    auth: {username: node, password: n}\n  r.example.com:\n    auth: {username: node, password: n}\n";
        let reg = Registries::parse(yaml).unwrap();
        let json = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"cG9kOnNlY3JldA=="}}}"#;
        let creds = Credentials::from_registries(&reg)
            .unwrap()
            .with_pull_secret(&STANDARD.encode(json))
            .unwrap();
        let pod = Auth::Basic {
            username: "pod".into(),
            password: "secret".into(),
        };
        assert_eq!(creds.get("registry-1.docker.io"), Some(&pod));
        assert_eq!(
            creds.get("r.example.com"),
            Some(&Auth::Basic {
                username: "node".into(),
                password: "n".into()
            })
        );
        assert_eq!(creds.get("other.example.com"), None);
    }

    #[test]
    fn bad_pull_secret_says_what_is_wrong() {
        let err = Credentials::none()
            .with_pull_secret("%%%")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not base64"), "{err}");
        let err = Credentials::none()
            .with_pull_secret(&STANDARD.encode(r#"{"auths":{"h":{"auth":"eA=="}}}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("auths.h.auth"), "{err}");
    }
}
