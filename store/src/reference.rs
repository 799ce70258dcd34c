//! Image references, parsed and normalised the way Docker does it:
//! `app:1.0` is `docker.io/library/app:1.0`, `busybox` is `busybox:latest`,
//! `localhost:5000/x/y:t` keeps its registry, and `name@sha256:…` pins a digest.
//!
//! The grammar: `[domain/]path[:tag][@digest]`, where the first component is a
//! domain only if it contains `.` or `:`, is `localhost`, or has upper case
//! (Docker's rule, so `library/app` stays a path); path components are lower
//! case alphanumerics joined by `.`, `_`, `__` or runs of `-`; tags are
//! `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; the whole name is at most 255 bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// A normalised image reference.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `input`. A reference with neither tag nor digest
    /// gets the tag `latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(fail("empty reference"));
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail(
                "a 64-digit hexadecimal string is an image id, not a name",
            ));
        }

        let (rest, digest) = match input.rsplit_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(digest.parse::<Digest>().map_err(|e| fail(&e.to_string()))?),
            ),
            None => (input, None),
        };
        let (name, tag) = split_tag(rest);
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                return Err(fail("invalid tag: tags are up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"));
            }
        }

        let (domain, path) = split_domain(name);
        if path.to_lowercase() != path {
            return Err(fail("repository name must be lowercase"));
        }
        if !is_valid_domain(domain) {
            return Err(fail("invalid registry host"));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path.to_string()
        };
        if !path.split('/').all(is_valid_path_component) {
            return Err(fail(
                "invalid repository name: components are lower-case letters and digits, joined by '.', '_', '__' or '-'",
            ));
        }
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(fail("repository name is longer than 255 characters"));
        }

        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain: domain.to_string(),
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port), `docker.io` by default.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/app`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError {
                input: format!("{}:{tag}", self.repository()),
                reason: "invalid tag".to_string(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// `docker.io/library/app`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it: `app`, `user/app`,
    /// `localhost:5000/app`. A Docker Hub path whose first component reads
    /// as a registry host (`docker.io/example.com/app`) keeps its domain:
    /// without it the name would parse as another repository.
    pub fn familiar_repository(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        let short = match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(short) if !short.contains('/') => short,
            _ => self.path.as_str(),
        };
        if split_domain(short).1 != short {
            return self.repository();
        }
        short.to_string()
    }

    /// The fully qualified form, `docker.io/library/app:1.0`.
    pub fn full(&self) -> String {
        self.with_suffix(self.repository())
    }

    /// The form Docker shows, `app:1.0`.
    pub fn familiar(&self) -> String {
        self.with_suffix(self.familiar_repository())
    }

    fn with_suffix(&self, mut name: String) -> String {
        if let Some(tag) = &self.tag {
            name.push(':');
            name.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            name.push('@');
            name.push_str(&digest.to_string());
        }
        name
    }
}

/// Splits `name[:tag]`; a `:` before the last `/` belongs to a registry port.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    match s.rfind(':') {
        Some(i) if !s[i..].contains('/') => (&s[..i], Some(&s[i + 1..])),
        _ => (s, None),
    }
}

/// Docker's rule for whether the first component names a registry.
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            let domain = if first == LEGACY_DEFAULT_DOMAIN {
                DEFAULT_DOMAIN
            } else {
                first
            };
            (domain, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    }
}

fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_MAX
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `alnum+ (separator alnum+)*` with separators `.`, `_`, `__`, `-+`.
fn is_valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]`, host being DNS labels joined by `.` or a bracketed IPv6.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("[v6]", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    host == "[v6]" || host.split('.').all(is_valid_domain_label)
}

fn is_valid_domain_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({})", self.full())
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.full())
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(deserializer)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        let digest = format!("sha256:{HEX}");
        let table: Vec<(String, &str, String)> = vec![
            (
                "busybox".into(),
                "docker.io/library/busybox:latest",
                "busybox:latest".into(),
            ),
            (
                "app:1.0".into(),
                "docker.io/library/app:1.0",
                "app:1.0".into(),
            ),
            (
                "library/app:1.0".into(),
                "docker.io/library/app:1.0",
                "app:1.0".into(),
            ),
            (
                "docker.io/app:1.0".into(),
                "docker.io/library/app:1.0",
                "app:1.0".into(),
            ),
            (
                "index.docker.io/app".into(),
                "docker.io/library/app:latest",
                "app:latest".into(),
            ),
            (
                "user/app".into(),
                "docker.io/user/app:latest",
                "user/app:latest".into(),
            ),
            (
                "docker.io/library/a/b:t".into(),
                "docker.io/library/a/b:t",
                "library/a/b:t".into(),
            ),
            (
                "rbuild-test/busybox:1".into(),
                "docker.io/rbuild-test/busybox:1",
                "rbuild-test/busybox:1".into(),
            ),
            (
                "localhost/app".into(),
                "localhost/app:latest",
                "localhost/app:latest".into(),
            ),
            (
                "localhost:5000/x/y:t".into(),
                "localhost:5000/x/y:t",
                "localhost:5000/x/y:t".into(),
            ),
            (
                "ghcr.io/o/r:v1.2-rc_3".into(),
                "ghcr.io/o/r:v1.2-rc_3",
                "ghcr.io/o/r:v1.2-rc_3".into(),
            ),
            (
                "[::1]:5000/app:T".into(),
                "[::1]:5000/app:T",
                "[::1]:5000/app:T".into(),
            ),
            (
                "Registry.Example/app".into(),
                "Registry.Example/app:latest",
                "Registry.Example/app:latest".into(),
            ),
            (
                "a__b.c---d_e".into(),
                "docker.io/library/a__b.c---d_e:latest",
                "a__b.c---d_e:latest".into(),
            ),
            (format!("app@{digest}"), "", format!("app@{digest}")),
            (format!("app:1@{digest}"), "", format!("app:1@{digest}")),
        ];
        for (input, full, familiar) in table {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            if !full.is_empty() {
                assert_eq!(r.full(), full, "full of {input}");
            }
            assert_eq!(r.familiar(), familiar, "familiar of {input}");
            // Normalisation is idempotent.
            assert_eq!(Reference::parse(&r.full()).unwrap(), r);
        }
    }

    #[test]
    fn familiar_form_parses_back_when_the_path_looks_like_a_host() {
        // Found by the `reference` fuzz target: the familiar form dropped
        // `docker.io/` and so named the repository `app` on lier.io.
        let input = std::str::from_utf8(b"docker.io/lier.io/licrcrary/app:1.0").unwrap();
        let r = Reference::parse(input).unwrap();
        assert_eq!(r.familiar(), "docker.io/lier.io/licrcrary/app:1.0");
        for input in [input, "docker.io/localhost/app", "docker.io/docker.io/app", "index.docker.io/a.b/c"] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(Reference::parse(&r.familiar()).unwrap(), r, "familiar of {input}");
            assert_eq!(Reference::parse(&r.full()).unwrap(), r, "full of {input}");
        }
        // Official images keep their short form.
        assert_eq!(Reference::parse("docker.io/library/a.b").unwrap().familiar(), "a.b:latest");
    }

    #[test]
    fn exposes_parts() {
        let r = Reference::parse(&format!("localhost:5000/x/y:t@sha256:{HEX}")).unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "x/y");
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.digest().unwrap().hex(), HEX);
        let pinned = Reference::parse(&format!("app@sha256:{HEX}")).unwrap();
        assert_eq!(pinned.tag(), None, "a digest reference gets no default tag");
        assert_eq!(
            pinned.with_tag("2").unwrap().full(),
            "docker.io/library/app:2"
        );
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "",
            "App:1.0",
            "user/App",
            "app:",
            "app:-x",
            "app:.x",
            "app:a/b",
            "-app",
            "app-",
            "a..b",
            "a.-b",
            "a___b",
            "app!",
            "/app",
            "app/",
            "a//b",
            "localhost:abc/app",
            "bad_host.com/app",
            "app@sha256:1234",
            "app@md5:abcd",
            HEX,
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long_tag = format!("app:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_name = format!("{}/x", "a".repeat(250));
        assert!(Reference::parse(&long_name).is_err());
    }

    #[test]
    fn error_names_the_input() {
        let err = Reference::parse("App").unwrap_err();
        assert!(err.to_string().contains("\"App\""), "{err}");
        assert!(err.to_string().contains("lowercase"), "{err}");
    }

    #[test]
    fn serde_uses_the_full_form() {
        let r = Reference::parse("app:1").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/library/app:1\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
    }
}
