//! Platforms (`os/arch[/variant]`) as image indexes and configs name them, and
//! the choice of one manifest out of an index or a Docker manifest list.
//!
//! Matching follows containerd's platform matcher, which Docker and BuildKit
//! use: os and architecture must be equal after normalisation (`x86_64` is
//! `amd64`, `aarch64` is `arm64`), and a variant the wanted platform does not
//! name matches any; `arm64` without a variant is `arm64/v8`.

use std::fmt;

use crate::config::host_architecture;

/// A platform in OCI terms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on.
    pub fn host() -> Platform {
        let (architecture, variant) = host_architecture();
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os/arch[/variant]`, normalising the names as containerd does.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let bad = || format!("invalid platform {text:?}: expected os/arch[/variant]");
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] if !variant.is_empty() => (*os, *arch, Some(*variant)),
            _ => return Err(bad()),
        };
        if os.is_empty() || arch.is_empty() {
            return Err(bad());
        }
        Ok(Platform::new(os, arch, variant))
    }

    /// A platform from the fields of an index entry or an image config.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let (architecture, variant) = normalise_arch(&architecture.to_ascii_lowercase(), variant);
        Platform { os, architecture, variant }
    }

    /// Whether an image built for `candidate` runs where `self` is wanted.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && (self.variant.is_none() || self.variant == candidate.variant)
    }

    /// A form safe in a file name: `linux-arm64-v8`.
    pub(crate) fn key(&self) -> String {
        self.to_string().replace('/', "-")
    }
}

/// containerd's normalisation: the names uname and Go use map to OCI's, and
/// the default variant of an architecture is made explicit (or dropped).
fn normalise_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let variant = variant.map(str::to_ascii_lowercase);
    match arch {
        "i386" | "x86" => ("386".into(), None),
        "x86_64" | "x86-64" | "amd64" => {
            // amd64/v1 is plain amd64.
            let variant = variant.filter(|v| v != "v1");
            ("amd64".into(), variant)
        }
        "aarch64" | "arm64" => {
            let variant = match variant.as_deref() {
                None | Some("8") | Some("v8") => Some("v8".to_string()),
                Some(_) => variant,
            };
            ("arm64".into(), variant)
        }
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => {
            let variant = match variant.as_deref() {
                None | Some("7") => Some("v7".to_string()),
                Some("5") | Some("6") | Some("8") => variant.map(|v| format!("v{v}")),
                Some(_) => variant,
            };
            ("arm".into(), variant)
        }
        other => (other.to_string(), variant),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let p = Platform::parse("linux/amd64").unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert_eq!(Platform::parse("linux/x86_64").unwrap(), p);
        assert_eq!(Platform::parse("linux/aarch64").unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(Platform::parse("linux/arm").unwrap().to_string(), "linux/arm/v7");
        assert_eq!(Platform::parse("linux/arm/v6").unwrap().key(), "linux-arm-v6");
        for bad in ["linux", "", "linux/", "/amd64", "linux/amd64/", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn variant_matching() {
        let want = Platform::parse("linux/arm").unwrap();
        assert!(want.matches(&Platform::new("linux", "arm", Some("v7"))));
        assert!(!want.matches(&Platform::new("linux", "arm", Some("v6"))));
        let any_arm64 = Platform { variant: None, ..Platform::parse("linux/arm64").unwrap() };
        assert!(any_arm64.matches(&Platform::new("linux", "arm64", None)));
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert!(amd64.matches(&Platform::new("linux", "amd64", None)));
        assert!(!amd64.matches(&Platform::new("windows", "amd64", None)));
        assert!(!amd64.matches(&Platform::new("linux", "arm64", None)));
    }
}
