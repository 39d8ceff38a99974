//! Image references, parsed and normalised the way Docker does, so a pod
//! naming `busybox` and an archive tagged `docker.io/library/busybox:latest`
//! mean the same image.

use std::fmt;

use super::ImageError;
use super::digest::Digest;

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// `library/busybox`.
    pub repository: String,
    /// `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, ImageError> {
        let bad = |reason: &str| ImageError::BadReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (
                n,
                Some(
                    Digest::parse(d)
                        .map_err(|_| bad("the digest must be sha256:<64 hex digits>"))?,
                ),
            ),
            None => (input, None),
        };
        // A tag is after the last ':' that has no '/' after it (a port has one).
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (name_tag, None),
        };
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        if name.len() > 255 {
            return Err(bad("the name is longer than 255 characters"));
        }
        let (registry, mut repository) = match name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if !valid_registry(&registry) {
            return Err(bad("the registry must be host[:port]"));
        }
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if let Some(c) = repository.split('/').find(|c| !valid_component(c)) {
            return Err(bad(&format!(
                "path component {c:?} must be lowercase letters and digits, separated by '.', '_', '__' or dashes"
            )));
        }
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(bad(
                "a tag is at most 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry's manifest endpoint for: the digest if pinned.
    pub fn manifest_key(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component is a registry if it has a '.' or a ':',
/// is `localhost`, or has upper-case letters (which a repository cannot).
fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn valid_registry(r: &str) -> bool {
    let host_char = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let (host_ok, port) = match r.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((v6, tail)) => {
            let v6_ok = !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
            match tail {
                "" => (v6_ok, None),
                _ => (v6_ok, Some(tail.strip_prefix(':').unwrap_or(""))),
            }
        }
        None => match r.split_once(':') {
            Some((h, p)) => (!h.is_empty() && h.chars().all(host_char), Some(p)),
            None => (!r.is_empty() && r.chars().all(host_char), None),
        },
    };
    host_ok
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    t.len() <= 128
        && t.chars().next().is_some_and(word)
        && t.chars().all(|c| word(c) || c == '.' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let table = [
            ("busybox", "docker.io/library/busybox:latest".to_string()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".to_string()),
            ("myorg/app:1", "docker.io/myorg/app:1".to_string()),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".to_string(),
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest".to_string(),
            ),
            ("ghcr.io/o/r/x:v1", "ghcr.io/o/r/x:v1".to_string()),
            ("localhost/app", "localhost/app:latest".to_string()),
            ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1".to_string()),
            (
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app:latest".to_string(),
            ),
            ("[::1]:5000/app:2", "[::1]:5000/app:2".to_string()),
            (
                &format!("busybox@{d}"),
                format!("docker.io/library/busybox@{d}"),
            ),
            (
                &format!("busybox:1@{d}"),
                format!("docker.io/library/busybox:1@{d}"),
            ),
            (
                "a/b__c/d-e.f---g:1_x.y-z",
                "docker.io/a/b__c/d-e.f---g:1_x.y-z".to_string(),
            ),
        ];
        for (input, want) in table {
            assert_eq!(
                Reference::parse(input).unwrap().to_string(),
                want,
                "input {input}"
            );
        }
    }

    #[test]
    fn refuses_what_docker_refuses() {
        for input in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:123",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "a//b",
            "a/b_",
            "a/b...c",
            "host:99999999/app",
            "/busybox",
        ] {
            assert!(Reference::parse(input).is_err(), "accepted {input:?}");
        }
    }

    #[test]
    fn manifest_key_prefers_the_digest() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            Reference::parse(&format!("busybox:1@{d}"))
                .unwrap()
                .manifest_key(),
            d
        );
        assert_eq!(
            Reference::parse("busybox").unwrap().manifest_key(),
            "latest"
        );
    }
}
