//! `--cache-to` and `--cache-from` in buildx's forms, parsed into typed settings:
//!
//! ```text
//! --cache-to   type=registry,ref=REG/REPO:TAG[,mode=min|max][,ignore-error=true|false]
//!              [,compression=gzip|zstd][,compression-level=N][,mounts=true]
//! --cache-to   type=local,dest=DIR[,…the same options]
//! --cache-from type=registry,ref=REF | type=local,src=DIR | REF
//! ```

use std::path::PathBuf;

use rbuild_store::{Codec, Compression, Reference};

use crate::engine::output::layer_codec;

/// Where a cache is exported to or imported from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// A tag in a registry (`type=registry,ref=`).
    Registry(Reference),
    /// An OCI image layout directory (`type=local,dest=` / `src=`).
    Local(PathBuf),
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Registry(reference) => f.write_str(&reference.full()),
            CacheLocation::Local(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Which steps an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps of the final image's chain (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage the build ran or found cached.
    Max,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub location: CacheLocation,
    pub mode: CacheMode,
    /// `ignore-error=true` (the default): a failed export is a warning.
    pub ignore_error: bool,
    /// How the exported layers are compressed.
    pub compression: Codec,
    /// `mounts=true`: the build's cache mounts travel too.
    pub mounts: bool,
}

/// One `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheImport {
    pub location: CacheLocation,
}

/// The `key=value` fields of a spec, each key at most once.
fn fields<'a>(flag: &str, text: &'a str) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for field in text.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("{flag} field {field:?}: expected key=value"))?;
        let key = key.trim();
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("{flag}: {key}= is given twice"));
        }
        out.push((key, value.trim()));
    }
    Ok(out)
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{key}={value:?}: expected true or false")),
    }
}

fn registry_ref(key: &str, value: &str) -> Result<Reference, String> {
    let reference = Reference::parse(value).map_err(|e| format!("{key}={value:?}: {e}"))?;
    Ok(reference)
}

/// Parses one `--cache-to` value.
pub fn parse_cache_to(text: &str) -> Result<CacheExport, String> {
    if !text.is_empty() && !text.contains('=') {
        return parse_cache_to(&format!("type=registry,ref={text}"));
    }
    let mut kind = None;
    let mut reference = None;
    let mut dest = None;
    let mut mode = CacheMode::Min;
    let mut ignore_error = true;
    let mut compression = None;
    let mut level = None;
    let mut mounts = false;
    for (key, value) in fields("--cache-to", text)? {
        match key {
            "type" => kind = Some(value),
            "ref" => reference = Some(registry_ref(key, value)?),
            "dest" => dest = Some(PathBuf::from(value)),
            "mode" => {
                mode = match value {
                    "min" => CacheMode::Min,
                    "max" => CacheMode::Max,
                    _ => return Err(format!("mode={value:?}: expected min or max")),
                }
            }
            "ignore-error" => ignore_error = boolean(key, value)?,
            "compression" => compression = Some(value),
            "compression-level" => level = Some(value),
            "mounts" => mounts = boolean(key, value)?,
            // What BuildKit's registry cache takes and rbuild's format makes moot.
            "oci-mediatypes" | "image-manifest" => {
                if !boolean(key, value)? {
                    return Err(format!("{key}=false is not supported: rbuild's cache is always a plain OCI image manifest"));
                }
            }
            other => return Err(format!("unknown --cache-to attribute {other:?}")),
        }
    }
    let location = match kind {
        Some("registry") => {
            if dest.is_some() {
                return Err("type=registry takes ref=, not dest=".into());
            }
            let reference = reference.ok_or("type=registry needs ref=REGISTRY/REPOSITORY:TAG")?;
            if reference.digest().is_some() {
                return Err(format!(
                    "ref={} names a digest; a cache export names a tag",
                    reference.familiar()
                ));
            }
            CacheLocation::Registry(reference)
        }
        Some("local") => {
            if reference.is_some() {
                return Err("type=local takes dest=DIR, not ref=".into());
            }
            CacheLocation::Local(dest.ok_or("type=local needs dest=DIR")?)
        }
        Some(other) => return Err(format!("unknown cache type {other:?} (registry or local)")),
        None => return Err("type= is missing (registry or local)".into()),
    };
    let compression = layer_codec(compression, level)?;
    if compression.compression == Compression::None {
        return Err("compression=uncompressed is not supported for a cache export: its layers are sent gzip or zstd".into());
    }
    Ok(CacheExport {
        location,
        mode,
        ignore_error,
        compression,
        mounts,
    })
}

/// Parses one `--cache-from` value; a bare reference means `type=registry,ref=`.
pub fn parse_cache_from(text: &str) -> Result<CacheImport, String> {
    if text.is_empty() {
        return Err("empty --cache-from".into());
    }
    if !text.contains('=') {
        return Ok(CacheImport {
            location: CacheLocation::Registry(registry_ref("ref", text)?),
        });
    }
    let mut kind = None;
    let mut reference = None;
    let mut src = None;
    for (key, value) in fields("--cache-from", text)? {
        match key {
            "type" => kind = Some(value),
            "ref" => reference = Some(registry_ref(key, value)?),
            "src" => src = Some(PathBuf::from(value)),
            // BuildKit's local cache picks a manifest by digest; rbuild's layout holds one.
            "digest" | "tag" => {
                return Err(format!(
                    "{key}= is not supported: a local cache directory holds one cache"
                ))
            }
            other => return Err(format!("unknown --cache-from attribute {other:?}")),
        }
    }
    let location = match kind.unwrap_or("registry") {
        "registry" => {
            if src.is_some() {
                return Err("type=registry takes ref=, not src=".into());
            }
            CacheLocation::Registry(
                reference.ok_or("type=registry needs ref=REGISTRY/REPOSITORY:TAG")?,
            )
        }
        "local" => {
            if reference.is_some() {
                return Err("type=local takes src=DIR, not ref=".into());
            }
            CacheLocation::Local(src.ok_or("type=local needs src=DIR")?)
        }
        other => return Err(format!("unknown cache type {other:?} (registry or local)")),
    };
    Ok(CacheImport { location })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_store::Compression;

    #[test]
    fn registry_exports_take_buildx_options() {
        let export = parse_cache_to("type=registry,ref=127.0.0.1:5000/app/cache:main,mode=max,ignore-error=false,compression=zstd,compression-level=5,mounts=true").unwrap();
        assert_eq!(
            export.location,
            CacheLocation::Registry(Reference::parse("127.0.0.1:5000/app/cache:main").unwrap())
        );
        assert_eq!(export.mode, CacheMode::Max);
        assert!(!export.ignore_error && export.mounts);
        assert_eq!(export.compression.compression, Compression::Zstd);
        assert_eq!(export.compression.explicit_level(), Some(5));

        let defaults = parse_cache_to("type=registry,ref=r.example/c:1").unwrap();
        assert_eq!(
            (defaults.mode, defaults.ignore_error, defaults.mounts),
            (CacheMode::Min, true, false)
        );
        assert_eq!(defaults.compression.compression, Compression::Gzip);
        let local = parse_cache_to("type=local,dest=/tmp/cache,mode=max").unwrap();
        assert_eq!(
            local.location,
            CacheLocation::Local(PathBuf::from("/tmp/cache"))
        );
    }

    #[test]
    fn bad_specs_name_the_key() {
        for (spec, says) in [
            ("type=registry,ref=r/c:1,mode=all", "mode="),
            ("type=registry,ref=r/c:1,ignore-error=maybe", "ignore-error="),
            ("type=registry,ref=r/c:1,compression=lz4", "lz4"),
            ("type=registry,ref=r/c:1,compression-level=99", "99"),
            ("type=registry,ref=r/c:1,colour=blue", "colour"),
            ("type=registry", "ref="),
            ("type=local", "dest="),
            ("type=local,ref=r/c:1", "ref="),
            ("type=s3,ref=r/c:1", "s3"),
            ("type=registry,ref=r/c:1,mode=max,mode=min", "twice"),
            ("type=registry,ref=r/c@sha256:0000000000000000000000000000000000000000000000000000000000000000", "digest"),
        ] {
            let error = parse_cache_to(spec).unwrap_err();
            assert!(error.contains(says), "{spec}: {error}");
        }
        for (spec, says) in [
            ("type=local", "src="),
            ("type=gha", "gha"),
            ("type=registry,src=/x", "src="),
            ("", "empty"),
        ] {
            let error = parse_cache_from(spec).unwrap_err();
            assert!(error.contains(says), "{spec}: {error}");
        }
    }

    #[test]
    fn a_bare_cache_from_is_a_registry_ref() {
        let bare = parse_cache_from("127.0.0.1:5000/app/cache:main").unwrap();
        let full = parse_cache_from("type=registry,ref=127.0.0.1:5000/app/cache:main").unwrap();
        assert_eq!(bare, full);
        let local = parse_cache_from("type=local,src=ci-cache").unwrap();
        assert_eq!(
            local.location,
            CacheLocation::Local(PathBuf::from("ci-cache"))
        );
    }
}
