//! A client for the distribution v2 API (the registry protocol), written here
//! because no small blocking crate covers what a board needs together: the
//! OCI Accept headers, the Basic and Bearer challenge flows, mirrors with
//! fallback, and Range-resumed blob downloads into the content store. ureq
//! does the HTTP.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use serde::Deserialize;
use ureq::Agent;
use ureq::http::Response;

use super::auth::{Auth, Credentials, basic_header, parse_challenges};
use super::content::{Partial, ensure_blob};
use super::digest::Digest;
use super::oci::{self, Descriptor, MANIFEST_ACCEPT};
use super::reference::Reference;
use super::registries::{Endpoint, Registries};
use super::{BlobSource, ImageError, ImageStore, MAX_DOCUMENT, Progress};

const MANIFEST_ATTEMPTS: u32 = 3;
const BLOB_ATTEMPTS: u32 = 6;

/// Waits before retry `attempt` (0-based): 0.5 s doubling, at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(16))).min(Duration::from_secs(30))
}

/// Errors another try may cure: the network, a busy or broken server, bytes
/// that did not verify.
fn retryable(e: &ImageError) -> bool {
    match e {
        ImageError::Transfer { .. } | ImageError::Corrupt { .. } => true,
        ImageError::Registry { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        _ => false,
    }
}

fn retry<T>(
    attempts: u32,
    what: &str,
    mut f: impl FnMut() -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(e) if retryable(&e) && attempt + 1 < attempts => {
                let wait = backoff(attempt);
                log::warn!("{what}: {e}; retrying in {wait:?}");
                std::thread::sleep(wait);
                attempt += 1;
            }
            other => return other,
        }
    }
}

pub struct Client<'a> {
    endpoints: Vec<(Endpoint, Agent)>,
    /// The endpoint that served the manifest serves the blobs too.
    active: usize,
    creds: &'a Credentials,
    /// `Authorization` values per endpoint host, once a challenge is answered.
    authorization: HashMap<String, String>,
}

impl<'a> Client<'a> {
    pub fn new(
        registries: &'a Registries,
        creds: &'a Credentials,
        r: &Reference,
    ) -> Result<Client<'a>, ImageError> {
        let endpoints = registries
            .endpoints(r)
            .into_iter()
            .map(|e| Ok((agent(registries, &e.host)?, e)))
            .map(|res: Result<_, ImageError>| res.map(|(a, e)| (e, a)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Client {
            endpoints,
            active: 0,
            creds,
            authorization: HashMap::new(),
        })
    }

    /// The manifest or index for a tag or digest, from the first endpoint
    /// that has it; returns the bytes and their media type.
    pub fn manifest(&mut self, key: &str) -> Result<(Vec<u8>, String), ImageError> {
        let mut last = None;
        for i in 0..self.endpoints.len() {
            let url = self.url(i, "manifests", key);
            match retry(MANIFEST_ATTEMPTS, &url, || self.document(i, &url)) {
                Ok(found) => {
                    self.active = i;
                    return Ok(found);
                }
                Err(e) => {
                    log::info!("{e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(ImageError::BadDocument {
            what: key.into(),
            reason: "no registry endpoint".into(),
        }))
    }

    fn url(&self, i: usize, kind: &str, key: &str) -> String {
        let (e, _) = &self.endpoints[i];
        format!("{}/{}/{kind}/{key}", e.base, e.repository)
    }

    fn document(&mut self, i: usize, url: &str) -> Result<(Vec<u8>, String), ImageError> {
        let mut resp = self.send(i, url, None)?;
        if resp.status() != 200 {
            return Err(registry_error(url, resp));
        }
        let media_type = header(&resp, "content-type").unwrap_or_default();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT)
            .read_to_vec()
            .map_err(transfer(url))?;
        Ok((bytes, media_type))
    }

    /// GET with the auth this endpoint asked for; a 401 is answered once
    /// (again later if a cached token expires).
    fn send(
        &mut self,
        i: usize,
        url: &str,
        range_from: Option<u64>,
    ) -> Result<Response<ureq::Body>, ImageError> {
        let resp = self.get(i, url, range_from)?;
        if resp.status() != 401 {
            return Ok(resp);
        }
        let challenge = header(&resp, "www-authenticate").unwrap_or_default();
        let value = self.answer(i, &challenge)?;
        self.authorization
            .insert(self.endpoints[i].0.host.clone(), value);
        self.get(i, url, range_from)
    }

    fn get(
        &self,
        i: usize,
        url: &str,
        range_from: Option<u64>,
    ) -> Result<Response<ureq::Body>, ImageError> {
        let (endpoint, agent) = &self.endpoints[i];
        let mut req = agent.get(url).header("Accept", MANIFEST_ACCEPT);
        if let Some(auth) = self.authorization.get(&endpoint.host) {
            req = req.header("Authorization", auth);
        }
        if let Some(from) = range_from {
            req = req.header("Range", format!("bytes={from}-"));
        }
        req.call().map_err(transfer(url))
    }

    /// Turns a `WWW-Authenticate` challenge into an `Authorization` value.
    fn answer(&self, i: usize, header: &str) -> Result<String, ImageError> {
        let (endpoint, agent) = &self.endpoints[i];
        let auth_err = |reason: String| ImageError::Auth {
            registry: endpoint.host.clone(),
            reason,
        };
        let creds = self.creds.get(&endpoint.host);
        let challenges = parse_challenges(header);
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer
                .params
                .get("realm")
                .ok_or_else(|| auth_err("bearer challenge without a realm".into()))?;
            let service = bearer.params.get("service").cloned().unwrap_or_default();
            let scope = bearer
                .params
                .get("scope")
                .cloned()
                .unwrap_or_else(|| format!("repository:{}:pull", endpoint.repository));
            let resp = match creds {
                Some(Auth::IdentityToken(token)) => agent.post(realm).send_form([
                    ("grant_type", "refresh_token"),
                    ("service", service.as_str()),
                    ("scope", scope.as_str()),
                    ("client_id", "bramble"),
                    ("refresh_token", token.as_str()),
                ]),
                Some(Auth::Basic { username, password }) => agent
                    .get(realm)
                    .query("service", &service)
                    .query("scope", &scope)
                    .header("Authorization", basic_header(username, password))
                    .call(),
                None => agent
                    .get(realm)
                    .query("service", &service)
                    .query("scope", &scope)
                    .call(),
            };
            let mut resp = resp.map_err(transfer(realm))?;
            if resp.status() != 200 {
                let err = registry_error(realm, resp);
                return Err(auth_err(format!(
                    "the token server refused: {err}{}",
                    hint(creds.is_some())
                )));
            }
            let body = resp
                .body_mut()
                .with_config()
                .limit(MAX_DOCUMENT)
                .read_to_vec()
                .map_err(transfer(realm))?;
            let token: TokenReply = serde_json::from_slice(&body)
                .map_err(|e| auth_err(format!("bad reply from token server {realm}: {e}")))?;
            let token = token
                .token
                .or(token.access_token)
                .ok_or_else(|| auth_err("the token server sent no token".into()))?;
            return Ok(format!("Bearer {token}"));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match creds {
                Some(Auth::Basic { username, password }) => Ok(basic_header(username, password)),
                _ => Err(auth_err(format!(
                    "the registry wants a username and password{}",
                    hint(false)
                ))),
            };
        }
        Err(auth_err(format!("unsupported challenge {header:?}")))
    }

    /// Downloads a blob into the store, resuming from `tmp/<hex>.partial`.
    fn download(
        &mut self,
        store: &ImageStore,
        desc: &Descriptor,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), ImageError> {
        let digest = Digest::parse(&desc.digest)?;
        let url = self.url(self.active, "blobs", &desc.digest);
        retry(BLOB_ATTEMPTS, &url, || {
            let mut partial = Partial::create(&store.root, digest.hex(), true)?;
            if partial.len() > desc.size {
                partial.reset()?;
            }
            if partial.len() < desc.size {
                self.fetch_rest(&url, &mut partial, desc.size, &digest, progress)?;
            }
            partial.commit(Some(&digest)).map(drop)
        })
    }

    fn fetch_rest(
        &mut self,
        url: &str,
        partial: &mut Partial,
        size: u64,
        digest: &Digest,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), ImageError> {
        let offset = partial.len();
        let resp = self.send(self.active, url, (offset > 0).then_some(offset))?;
        match resp.status().as_u16() {
            200 if offset > 0 => {
                log::info!("{url}: the registry ignored Range; downloading from the start");
                partial.reset()?;
            }
            200 => {}
            206 => {
                let range = header(&resp, "content-range").unwrap_or_default();
                if !range.starts_with(&format!("bytes {offset}-")) {
                    partial.reset()?;
                    return Err(short(
                        url,
                        format!("asked for bytes {offset}- and got {range:?}"),
                    ));
                }
            }
            416 => {
                partial.reset()?;
                return Err(short(url, "range not satisfiable".into()));
            }
            _ => return Err(registry_error(url, resp)),
        }
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body
                .read(&mut buf)
                .map_err(|e| transfer(url)(ureq::Error::Io(e)))?;
            if n == 0 {
                break;
            }
            partial.append(&buf[..n])?;
            if partial.len() > size {
                partial.reset()?;
                return Err(short(
                    url,
                    format!("more than the {size} bytes the manifest announced"),
                ));
            }
            progress(Progress::Download {
                digest: digest.clone(),
                done: partial.len(),
                total: size,
            });
        }
        match partial.len() == size {
            true => Ok(()),
            false => Err(short(
                url,
                format!("the transfer stopped at {} of {size} bytes", partial.len()),
            )),
        }
    }
}

impl BlobSource for Client<'_> {
    fn small(&mut self, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let kind = match desc.media_type.as_str() {
            oci::OCI_INDEX | oci::OCI_MANIFEST | oci::DOCKER_LIST | oci::DOCKER_MANIFEST => {
                "manifests"
            }
            _ => "blobs",
        };
        let url = self.url(self.active, kind, &desc.digest);
        retry(MANIFEST_ATTEMPTS, &url, || {
            self.document(self.active, &url).map(|(b, _)| b)
        })
    }

    fn blob(
        &mut self,
        store: &ImageStore,
        desc: &Descriptor,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), ImageError> {
        let digest = Digest::parse(&desc.digest)?;
        ensure_blob(&store.root, &digest, || {
            self.download(store, desc, progress)
        })
    }
}

#[derive(Deserialize)]
struct TokenReply {
    token: Option<String>,
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorReply {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn hint(had_credentials: bool) -> &'static str {
    match had_credentials {
        true => " (check the credentials in registries.yaml or the pod's imagePullSecrets)",
        false => " (add credentials under configs in registries.yaml, or an imagePullSecret)",
    }
}

/// The registry's own words (`manifest unknown`), which users need to see on the pod.
fn registry_error(url: &str, mut resp: Response<ureq::Body>) -> ImageError {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let message = match serde_json::from_str::<ErrorReply>(&body) {
        Ok(reply) if !reply.errors.is_empty() => reply
            .errors
            .iter()
            .map(|e| format!("{} ({})", e.message, e.code))
            .collect::<Vec<_>>()
            .join("; "),
        _ => body.trim().chars().take(200).collect(),
    };
    let message = if message.is_empty() {
        resp.status().canonical_reason().unwrap_or("").to_string()
    } else {
        message
    };
    ImageError::Registry {
        url: url.to_string(),
        status,
        message,
    }
}

fn transfer(url: &str) -> impl FnOnce(ureq::Error) -> ImageError + use<> {
    let url = url.to_string();
    move |e| ImageError::Transfer {
        url,
        source: Box::new(e),
    }
}

fn short(url: &str, why: String) -> ImageError {
    transfer(url)(ureq::Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        why,
    )))
}

fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// One agent per endpoint, with that host's TLS settings from registries.yaml.
fn agent(registries: &Registries, host: &str) -> Result<Agent, ImageError> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(t) = registries.config(host).and_then(|c| c.tls.as_ref()) {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| ImageError::Auth {
                registry: host.into(),
                reason: format!("cannot read {}: {e}", path.display()),
            })
        };
        let pem = |bytes: &[u8]| {
            ureq::tls::parse_pem(bytes)
                .filter_map(Result::ok)
                .collect::<Vec<_>>()
        };
        if let Some(ca) = &t.ca_file {
            let certs = pem(&read(ca)?)
                .into_iter()
                .filter_map(|item| match item {
                    ureq::tls::PemItem::Certificate(c) => Some(c),
                    _ => None,
                })
                .collect::<Vec<_>>();
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
            let certs = pem(&read(cert)?)
                .into_iter()
                .filter_map(|item| match item {
                    ureq::tls::PemItem::Certificate(c) => Some(c),
                    _ => None,
                })
                .collect::<Vec<_>>();
            let key =
                ureq::tls::PrivateKey::from_pem(&read(key)?).map_err(|e| ImageError::Auth {
                    registry: host.into(),
                    reason: format!("key_file: {e}"),
                })?;
            tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&certs, key)));
        }
        tls = tls.disable_verification(t.insecure_skip_verify);
    }
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(10), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn only_transient_errors_are_retried() {
        let reg = |status| ImageError::Registry {
            url: String::new(),
            status,
            message: String::new(),
        };
        assert!(retryable(&reg(503)));
        assert!(retryable(&reg(429)));
        assert!(!retryable(&reg(404)));
        assert!(!retryable(&reg(401)));
    }
}
