//! `--build-context NAME=VALUE`, as buildx has it: a name that `FROM NAME`
//! and `COPY --from=NAME` use instead of an image or stage of that name.
//!
//! VALUE is one of
//! - `docker-image://REF`: another image reference (pulled as usual);
//! - `docker-archive:PATH` (or `oci-archive:PATH`): an image archive, imported
//!   into the store;
//! - `oci-layout:PATH[:TAG|@DIGEST]` (also `oci-layout://…`): an image of an OCI
//!   layout directory, by its `org.opencontainers.image.ref.name` tag or digest;
//! - a directory, which `COPY --from=NAME` reads like the build context.
//!
//! Names match the way BuildKit matches them: a name that is an image
//! reference is compared in its familiar form without `:latest`, so
//! `--build-context alpine=…` also serves `FROM docker.io/library/alpine:latest`.

use std::path::{Path, PathBuf};

use rbuild_store::{Digest, LayoutSelector, Reference};

/// Where a named context comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextSource {
    Directory(PathBuf),
    /// A docker-archive or OCI-archive tar.
    Archive(PathBuf),
    OciLayout { dir: PathBuf, selector: LayoutSelector },
    Image(Reference),
}

/// One `--build-context`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedContext {
    /// The name as given.
    pub name: String,
    key: String,
    pub source: ContextSource,
}

/// All `--build-context`s of a build.
#[derive(Clone, Debug, Default)]
pub struct NamedContexts {
    contexts: Vec<NamedContext>,
}

impl NamedContexts {
    /// Parses the flags; the last of two with the same name wins, as in buildx.
    pub fn parse(flags: &[String]) -> Result<NamedContexts, String> {
        let mut contexts: Vec<NamedContext> = Vec::new();
        for flag in flags {
            let context = parse_build_context(flag)?;
            contexts.retain(|c| c.key != context.key);
            contexts.push(context);
        }
        Ok(NamedContexts { contexts })
    }

    /// The context a FROM or `--from` name refers to, if any.
    pub fn find(&self, name: &str) -> Option<&NamedContext> {
        let key = match_key(name);
        self.contexts.iter().find(|c| c.key == key)
    }

    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }
}

/// The form names are compared in.
fn match_key(name: &str) -> String {
    match Reference::parse(name) {
        Ok(reference) => {
            let familiar = reference.familiar();
            familiar.strip_suffix(":latest").map(str::to_string).unwrap_or(familiar)
        }
        Err(_) => name.to_string(),
    }
}

/// Parses one `NAME=VALUE`.
pub fn parse_build_context(flag: &str) -> Result<NamedContext, String> {
    let invalid = |why: &str| format!("invalid --build-context {flag:?}: {why}");
    let (name, value) = flag
        .split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| invalid("expected NAME=VALUE"))?;
    let source = if let Some(reference) = value.strip_prefix("docker-image://") {
        ContextSource::Image(Reference::parse(reference).map_err(|e| invalid(&e.to_string()))?)
    } else if let Some(path) = strip_any(value, &["docker-archive://", "docker-archive:", "oci-archive://", "oci-archive:"]) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(invalid(&format!("{} is not a file", path.display())));
        }
        ContextSource::Archive(path)
    } else if let Some(rest) = strip_any(value, &["oci-layout://", "oci-layout:"]) {
        let (dir, selector) = split_layout(rest).map_err(|why| invalid(&why))?;
        if !dir.join("index.json").is_file() {
            return Err(invalid(&format!("{} is not an OCI image layout (no index.json)", dir.display())));
        }
        ContextSource::OciLayout { dir, selector }
    } else if value.contains("://") || value.starts_with("git@") {
        return Err(invalid("remote contexts (URLs, git) are not supported; give a directory, an archive, an OCI layout or docker-image://"));
    } else {
        let dir = PathBuf::from(value);
        if !dir.is_dir() {
            return Err(invalid(&format!("{} is not a directory", dir.display())));
        }
        ContextSource::Directory(dir)
    };
    Ok(NamedContext { name: name.to_string(), key: match_key(name), source })
}

fn strip_any<'a>(value: &'a str, prefixes: &[&str]) -> Option<&'a str> {
    prefixes.iter().find_map(|p| value.strip_prefix(p))
}

/// `PATH`, `PATH:TAG` or `PATH@sha256:…`. A `:` counts as the tag separator
/// only after the last `/` and when `PATH` itself is not a directory.
fn split_layout(rest: &str) -> Result<(PathBuf, LayoutSelector), String> {
    if let Some((dir, digest)) = rest.rsplit_once('@') {
        let digest: Digest = digest.parse().map_err(|e: rbuild_store::DigestError| e.to_string())?;
        return Ok((PathBuf::from(dir), LayoutSelector::Digest(digest)));
    }
    if Path::new(rest).is_dir() {
        return Ok((PathBuf::from(rest), LayoutSelector::All));
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(i) => {
            let split = last_slash + i;
            let tag = &rest[split + 1..];
            if tag.is_empty() {
                return Err("empty tag".to_string());
            }
            Ok((PathBuf::from(&rest[..split]), LayoutSelector::Tag(tag.to_string())))
        }
        None => Ok((PathBuf::from(rest), LayoutSelector::All)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let layout = dir.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        std::fs::write(layout.join("index.json"), "{}").unwrap();
        let archive = dir.path().join("base.tar");
        std::fs::write(&archive, "").unwrap();
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

        let source = |flag: String| parse_build_context(&flag).unwrap().source;
        assert_eq!(source(format!("assets={root}")), ContextSource::Directory(dir.path().into()));
        assert_eq!(source(format!("base=docker-archive:{}", archive.display())), ContextSource::Archive(archive.clone()));
        assert_eq!(source(format!("base=oci-archive://{}", archive.display())), ContextSource::Archive(archive.clone()));
        assert_eq!(
            source("base=docker-image://127.0.0.1:5000/base:1".into()),
            ContextSource::Image(Reference::parse("127.0.0.1:5000/base:1").unwrap())
        );
        assert_eq!(
            source(format!("base=oci-layout:{}", layout.display())),
            ContextSource::OciLayout { dir: layout.clone(), selector: LayoutSelector::All }
        );
        assert_eq!(
            source(format!("base=oci-layout://{}:v2", layout.display())),
            ContextSource::OciLayout { dir: layout.clone(), selector: LayoutSelector::Tag("v2".into()) }
        );
        assert_eq!(
            source(format!("base=oci-layout:{}@sha256:{hex}", layout.display())),
            ContextSource::OciLayout {
                dir: layout.clone(),
                selector: LayoutSelector::Digest(format!("sha256:{hex}").parse().unwrap())
            }
        );

        for bad in [
            "noequals".to_string(),
            "=x".to_string(),
            "a=".to_string(),
            format!("a={root}/missing"),
            "a=https://example.com/x.git".to_string(),
            format!("a=docker-archive:{root}"),
            format!("a=oci-layout:{root}"),
            "a=docker-image://Bad:Ref".to_string(),
        ] {
            assert!(parse_build_context(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_match_in_familiar_form_and_last_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let flags = vec![
            "alpine=docker-image://busybox".to_string(),
            format!("alpine={}", dir.path().display()),
            "tools=docker-image://busybox:1".to_string(),
        ];
        let contexts = NamedContexts::parse(&flags).unwrap();
        for name in ["alpine", "alpine:latest", "docker.io/library/alpine", "library/alpine:latest"] {
            let found = contexts.find(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(found.source, ContextSource::Directory(dir.path().into()), "{name}");
        }
        assert!(contexts.find("alpine:3").is_none());
        assert!(contexts.find("tools").is_some());
        assert!(contexts.find("tools:1").is_none(), "the name is tools, that is tools:latest");
        assert!(contexts.find("other").is_none());
    }
}
