//! Per-instruction argument rules: how the text after keyword and flags
//! becomes the argument list of a [`Node`].
//!
//! Nothing here checks what an instruction means; unknown keywords are
//! accepted with a single empty argument so that the instruction layer can
//! report them with their location.

use super::words::{is_separator, split_quoted, split_whitespace};
use super::Node;

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// The arguments of one instruction.
#[derive(Debug, Default)]
pub(super) struct Arguments {
    pub args: Vec<String>,
    /// The arguments came from a JSON array (exec form).
    pub json: bool,
    /// ONBUILD's own instruction.
    pub nested: Option<Box<Node>>,
}

impl Arguments {
    fn plain(args: Vec<String>) -> Self {
        Arguments {
            args,
            ..Arguments::default()
        }
    }
}

/// Applies the rule of `keyword` (lower case) to `rest` (trimmed, flags removed).
pub(super) fn parse_arguments(
    keyword: &str,
    rest: &str,
    escape: char,
) -> Result<Arguments, String> {
    match keyword {
        "from" | "expose" => Ok(Arguments::plain(split_whitespace(rest))),
        "add" | "copy" | "volume" => json_or_list(rest),
        "run" | "cmd" | "entrypoint" | "shell" => json_or_shell(rest),
        "env" => key_value_pairs(rest, "ENV", escape).map(Arguments::plain),
        "label" => key_value_pairs(rest, "LABEL", escape).map(Arguments::plain),
        "arg" => Ok(Arguments::plain(split_quoted(rest, escape))),
        "maintainer" | "user" | "workdir" | "stopsignal" => Ok(Arguments::plain(whole(rest))),
        "healthcheck" => healthcheck(rest),
        // ONBUILD's rest is an instruction of its own: `node_from_line` parses it.
        "onbuild" => Ok(Arguments::default()),
        _ => Ok(Arguments::plain(vec![String::new()])),
    }
}

/// The whole text as one argument, or none if it is empty.
fn whole(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest.to_string()]
    }
}

/// Decodes `rest` as a JSON array of strings. `Ok(None)` means it is not JSON
/// (it doesn't start with `[` or doesn't decode), so another form applies; a
/// JSON array holding anything but strings is an error.
fn json_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|value| match value {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(NOT_STRING_ARRAY.to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// ADD, COPY, VOLUME: a JSON array, else whitespace-separated words.
fn json_or_list(rest: &str) -> Result<Arguments, String> {
    Ok(match json_array(rest)? {
        Some(args) => Arguments {
            args,
            json: true,
            nested: None,
        },
        None => Arguments::plain(split_whitespace(rest)),
    })
}

/// RUN, CMD, ENTRYPOINT, SHELL: a JSON array (exec form), else the whole text
/// as one argument (shell form).
fn json_or_shell(rest: &str) -> Result<Arguments, String> {
    if rest.is_empty() {
        return Ok(Arguments::default());
    }
    Ok(match json_array(rest)? {
        Some(args) => Arguments {
            args,
            json: true,
            nested: None,
        },
        None => Arguments::plain(vec![rest.to_string()]),
    })
}

/// ENV and LABEL: triples of key, value and separator. The legacy form
/// `KEY value with spaces` (first word has no `=`) gives one triple with an
/// empty separator; otherwise every word must be `key=value`. Quotes and
/// escapes stay in the values for the expansion step.
fn key_value_pairs(rest: &str, instruction: &str, escape: char) -> Result<Vec<String>, String> {
    let words = split_quoted(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(split) = rest.find(is_separator) else {
            return Err(format!("{instruction} must have two arguments"));
        };
        let value = rest[split..].trim_start_matches(is_separator);
        return Ok(vec![
            rest[..split].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                super::dump::go_quote(word)
            ));
        };
        args.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(args)
}

/// HEALTHCHECK: the first word as written (`CMD`, `NONE`, …), then the rest
/// parsed like CMD.
fn healthcheck(rest: &str) -> Result<Arguments, String> {
    let split = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if split == 0 {
        return Ok(Arguments::default());
    }
    let (kind, command) = rest.split_at(split);
    let mut arguments = json_or_shell(command.trim_start())?;
    arguments.args.insert(0, kind.to_string());
    Ok(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(keyword: &str, rest: &str) -> Result<(Vec<String>, bool), String> {
        parse_arguments(keyword, rest, '\\').map(|a| (a.args, a.json))
    }

    #[test]
    fn json_arrays_of_strings_decode() {
        let cases: [(&str, &[&str]); 7] = [
            ("[]", &[]),
            (r#"[""]"#, &[""]),
            (r#"["a","b"]"#, &["a", "b"]),
            (r#"[ "a", "b" ]"#, &["a", "b"]),
            ("[\t\"a\",\t\"b\"\t]", &["a", "b"]),
            (r#"["♥", "☃"]"#, &["♥", "☃"]),
            (
                r#"["\" \\ \/ \b \f \n \r \t \u0000"]"#,
                &["\" \\ / \u{8} \u{c} \n \r \t \0"],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                args("cmd", text),
                Ok((expected.iter().map(|s| s.to_string()).collect(), true)),
                "{text}"
            );
        }
    }

    #[test]
    fn json_arrays_with_non_strings_are_errors() {
        for text in [
            r#"["a",42,"b"]"#,
            r#"["a",123.456,"b"]"#,
            r#"["a",{},"b"]"#,
            r#"["a",{"c": "d"},"b"]"#,
            r#"["a",["c"],"b"]"#,
            r#"["a",true,"b"]"#,
            r#"["a",false,"b"]"#,
            r#"["a",null,"b"]"#,
        ] {
            assert_eq!(
                args("run", text),
                Err(NOT_STRING_ARRAY.to_string()),
                "{text}"
            );
            assert_eq!(
                args("copy", text),
                Err(NOT_STRING_ARRAY.to_string()),
                "{text}"
            );
        }
    }

    #[test]
    fn invalid_json_falls_back() {
        assert_eq!(args("cmd", "['a']"), Ok((vec!["['a']".into()], false)));
        assert_eq!(
            args("cmd", r#"["a"]junk"#),
            Ok((vec![r#"["a"]junk"#.into()], false))
        );
        assert_eq!(
            args("copy", r#"["a" "b"]"#),
            Ok((vec![r#"["a""#.into(), r#""b"]"#.into()], false))
        );
        assert_eq!(args("run", ""), Ok((vec![], false)));
    }

    #[test]
    fn env_forms() {
        assert_eq!(
            args("env", "A b  c"),
            Ok((vec!["A".into(), "b  c".into(), "".into()], false))
        );
        assert_eq!(
            args("env", r#"a=1 b="x y""#),
            Ok((
                vec![
                    "a".into(),
                    "1".into(),
                    "=".into(),
                    "b".into(),
                    r#""x y""#.into(),
                    "=".into()
                ],
                false
            ))
        );
        assert_eq!(
            args("env", "PATH"),
            Err("ENV must have two arguments".into())
        );
        assert_eq!(
            args("label", "only"),
            Err("LABEL must have two arguments".into())
        );
        assert_eq!(
            args("env", "a=1 b"),
            Err(r#"Syntax error - can't find = in "b". Must be of the form: name=value"#.into())
        );
        assert_eq!(args("env", ""), Ok((vec![], false)));
    }

    #[test]
    fn healthcheck_keeps_kind_and_form() {
        assert_eq!(
            args("healthcheck", "NONE"),
            Ok((vec!["NONE".into()], false))
        );
        assert_eq!(
            args("healthcheck", "CMD   a b"),
            Ok((vec!["CMD".into(), "a b".into()], false))
        );
        assert_eq!(
            args("healthcheck", r#"CMD ["x"]"#),
            Ok((vec!["CMD".into(), "x".into()], true))
        );
        assert_eq!(args("healthcheck", ""), Ok((vec![], false)));
    }
}
