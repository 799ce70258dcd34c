//! Instruction flags (`--from=build`, `--link`): each instruction declares the
//! flags it accepts, and anything else is an error, as in BuildKit.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--name` or `--name=true|false`.
    Bool,
    /// `--name=value`, at most once.
    String,
    /// `--name=value`, any number of times.
    List,
}

/// The flags given to one instruction, checked against what it accepts.
#[derive(Debug, Default)]
pub struct Flags {
    values: BTreeMap<String, Vec<String>>,
}

impl Flags {
    /// Parses raw flag words (`--name=value`) given to `keyword`.
    pub fn parse(
        keyword: &str,
        raw: &[String],
        accepted: &[(&str, FlagKind)],
    ) -> Result<Flags, String> {
        let mut flags = Flags::default();
        for word in raw {
            let body = word
                .strip_prefix("--")
                .ok_or_else(|| format!("{keyword}: invalid flag {word:?}"))?;
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let kind = accepted
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, k)| *k)
                .ok_or_else(|| format!("unknown flag: --{name} (for {keyword})"))?;
            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" | "false" => v.to_ascii_lowercase(),
                    _ => return Err(format!("expecting boolean value for flag --{name}, not: {v}")),
                },
                (_, None) => return Err(format!("missing a value on flag: --{name}")),
                (_, Some(v)) => v.to_string(),
            };
            let entry = flags.values.entry(name.to_string()).or_default();
            if kind != FlagKind::List && !entry.is_empty() {
                return Err(format!("duplicate flag specified: --{name}"));
            }
            entry.push(value);
        }
        Ok(flags)
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    pub fn bool(&self, name: &str) -> bool {
        self.string(name).as_deref() == Some("true")
    }

    pub fn optional_bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    pub fn list(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY_FLAGS: &[(&str, FlagKind)] = &[
        ("from", FlagKind::String),
        ("link", FlagKind::Bool),
        ("exclude", FlagKind::List),
    ];

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_accepted_flags() {
        let f = Flags::parse(
            "COPY",
            &words(&["--from=build", "--link", "--exclude=a", "--exclude=b"]),
            COPY_FLAGS,
        )
        .unwrap();
        assert_eq!(f.string("from").as_deref(), Some("build"));
        assert!(f.bool("link"));
        assert_eq!(f.list("exclude"), vec!["a", "b"]);
        assert_eq!(f.string("chown"), None);
    }

    #[test]
    fn rejects_unknown_duplicate_and_malformed_flags() {
        assert!(Flags::parse("COPY", &words(&["--nope=1"]), COPY_FLAGS)
            .unwrap_err()
            .contains("unknown flag: --nope"));
        assert!(Flags::parse("COPY", &words(&["--from=a", "--from=b"]), COPY_FLAGS)
            .unwrap_err()
            .contains("duplicate"));
        assert!(Flags::parse("COPY", &words(&["--from"]), COPY_FLAGS)
            .unwrap_err()
            .contains("missing a value"));
        assert!(Flags::parse("COPY", &words(&["--link=maybe"]), COPY_FLAGS)
            .unwrap_err()
            .contains("boolean"));
        assert!(!Flags::parse("COPY", &words(&["--link=false"]), COPY_FLAGS)
            .unwrap()
            .bool("link"));
    }
}
