//! kaniko's command line, read the way kaniko's flag library (pflag) reads it: `--flag=value`
//! and `--flag value`, booleans as `--flag` or `--flag=true|false` (never `--flag false`,
//! which pflag also refuses), the short forms `-c`, `-d`, `-f` and `-v`, and repeatable list
//! flags. Only reading happens here; what each flag means for rbuild is in `translate`.

use std::fmt;

/// A mistake on a kaniko command line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("unknown flag: {0} (rbuild executor takes kaniko's flags; `rbuild executor --help` lists them)")]
    Unknown(String),
    #[error("flag needs an argument: {0}")]
    MissingValue(String),
    #[error("invalid argument {value:?} for {flag}: {reason}")]
    Invalid { flag: String, value: String, reason: String },
    #[error("unexpected argument {0:?}: kaniko's executor takes flags only (the context is --context)")]
    Positional(String),
}

/// What a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Value,
    Bool,
}

/// One kaniko flag: its long name, its short letter, and what it takes.
struct Spec {
    long: &'static str,
    short: Option<char>,
    takes: Takes,
}

const fn value(long: &'static str) -> Spec {
    Spec { long, short: None, takes: Takes::Value }
}
const fn boolean(long: &'static str) -> Spec {
    Spec { long, short: None, takes: Takes::Bool }
}
const fn short(long: &'static str, letter: char) -> Spec {
    Spec { long, short: Some(letter), takes: Takes::Value }
}

/// The kaniko flags rbuild reads (kaniko's `cmd/executor/cmd/root.go`); any other is an error.
const SPECS: &[Spec] = &[
    short("context", 'c'),
    value("context-sub-path"),
    short("dockerfile", 'f'),
    short("destination", 'd'),
    boolean("no-push"),
    boolean("no-push-cache"),
    value("tar-path"),
    value("digest-file"),
    value("image-name-with-digest-file"),
    value("image-name-tag-with-digest-file"),
    value("build-arg"),
    value("target"),
    value("label"),
    boolean("cache"),
    value("cache-repo"),
    value("cache-dir"),
    value("cache-ttl"),
    boolean("cache-copy-layers"),
    boolean("cache-run-layers"),
    boolean("reproducible"),
    boolean("insecure"),
    boolean("insecure-pull"),
    value("insecure-registry"),
    boolean("skip-tls-verify"),
    boolean("skip-tls-verify-pull"),
    value("skip-tls-verify-registry"),
    value("registry-mirror"),
    boolean("single-snapshot"),
    value("custom-platform"),
    short("verbosity", 'v'),
    value("log-format"),
    boolean("log-timestamp"),
    boolean("cleanup"),
    boolean("force"),
    boolean("skip-unused-stages"),
    value("push-retry"),
    boolean("ignore-var-run"),
    value("snapshot-mode"),
    boolean("use-new-run"),
    boolean("compressed-caching"),
    value("kaniko-dir"),
];

/// One flag as given: its long name and its value (`"true"`/`"false"` for booleans).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub name: &'static str,
    pub value: String,
}

impl fmt::Display for Given {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{}={}", self.name, self.value)
    }
}

/// What the command line asked for: `--help`, or the flags in the order given.
#[derive(Debug, PartialEq, Eq)]
pub enum CommandLine {
    Help,
    Flags(Vec<Given>),
}

/// Reads kaniko's arguments (without the program name).
pub fn read(args: &[String]) -> Result<CommandLine, FlagError> {
    let mut given = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(CommandLine::Help);
        }
        let (spec, inline) = if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            let spec = SPECS.iter().find(|s| s.long == name).ok_or_else(|| FlagError::Unknown(format!("--{name}")))?;
            (spec, inline)
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let letter = short.chars().next().expect("not empty");
            let spec = SPECS
                .iter()
                .find(|s| s.short == Some(letter))
                .ok_or_else(|| FlagError::Unknown(format!("-{letter}")))?;
            // pflag takes `-fFILE` and `-f=FILE` as well as `-f FILE`.
            let attached = &short[letter.len_utf8()..];
            let inline = (!attached.is_empty()).then(|| attached.strip_prefix('=').unwrap_or(attached).to_string());
            (spec, inline)
        } else {
            return Err(FlagError::Positional(arg.clone()));
        };
        let value = match (spec.takes, inline) {
            (Takes::Bool, None) => "true".to_string(),
            (Takes::Bool, Some(text)) => parse_bool(&text)
                .ok_or_else(|| FlagError::Invalid {
                    flag: format!("--{}", spec.long),
                    value: text.clone(),
                    reason: "expected true or false".into(),
                })?
                .to_string(),
            (Takes::Value, Some(text)) => text,
            (Takes::Value, None) => rest.next().cloned().ok_or_else(|| FlagError::MissingValue(format!("--{}", spec.long)))?,
        };
        given.push(Given { name: spec.long, value });
    }
    Ok(CommandLine::Flags(given))
}

/// Go's `strconv.ParseBool`, which pflag uses for boolean flags.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The flag names, for `--help`.
pub fn names() -> impl Iterator<Item = String> {
    SPECS.iter().map(|s| match s.short {
        Some(letter) => format!("-{letter}, --{}", s.long),
        None => format!("--{}", s.long),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Result<Vec<(String, String)>, FlagError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match read(&args)? {
            CommandLine::Flags(given) => Ok(given.into_iter().map(|g| (g.name.to_string(), g.value)).collect()),
            CommandLine::Help => panic!("help"),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn values_inline_separate_and_short() {
        let read = flags(&["--context=dir://ctx", "--dockerfile", "Dockerfile.x", "-d", "r/a:1", "-dr/b:2", "-v=debug"]).unwrap();
        assert_eq!(
            read,
            pairs(&[
                ("context", "dir://ctx"),
                ("dockerfile", "Dockerfile.x"),
                ("destination", "r/a:1"),
                ("destination", "r/b:2"),
                ("verbosity", "debug")
            ])
        );
    }

    #[test]
    fn booleans_take_no_separate_value() {
        assert_eq!(flags(&["--no-push"]).unwrap(), pairs(&[("no-push", "true")]));
        assert_eq!(flags(&["--no-push=false", "--cache=True"]).unwrap(), pairs(&[("no-push", "false"), ("cache", "true")]));
        // As in pflag, `--cache true` leaves `true` as a positional argument.
        assert_eq!(flags(&["--cache", "true"]), Err(FlagError::Positional("true".into())));
        assert!(matches!(flags(&["--cache=yes"]), Err(FlagError::Invalid { .. })));
    }

    #[test]
    fn unknown_and_incomplete_flags_are_named() {
        assert_eq!(flags(&["--frobnicate=1"]), Err(FlagError::Unknown("--frobnicate".into())));
        assert_eq!(flags(&["-x"]), Err(FlagError::Unknown("-x".into())));
        assert_eq!(flags(&["--destination"]), Err(FlagError::MissingValue("--destination".into())));
        let message = FlagError::Unknown("--frobnicate".into()).to_string();
        assert!(message.contains("--frobnicate"), "{message}");
    }

    #[test]
    fn help() {
        assert_eq!(read(&["--help".to_string()]), Ok(CommandLine::Help));
    }
}
