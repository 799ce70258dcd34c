//! One instruction's text → [`Node`]: keyword, `--flags`, then the argument
//! rule of that keyword.

use super::arguments::parse_arguments;
use super::words::is_separator;
use super::Node;

/// Builds the node for the joined text of one instruction. Line numbers and
/// heredocs are filled in by the caller. Errors are plain messages; the caller
/// adds the location.
pub(super) fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let original = line.trim();
    let (keyword, after_keyword) = match original.find(is_separator) {
        Some(end) => (
            &original[..end],
            original[end..].trim_start_matches(is_separator),
        ),
        None => (original, ""),
    };
    let (rest, flags) = extract_flags(after_keyword, escape);
    let keyword = keyword.to_lowercase();
    let mut arguments = parse_arguments(&keyword, rest.trim(), escape)?;
    // ONBUILD: the rest is an instruction of its own.
    if keyword == "onbuild" && !rest.trim().is_empty() {
        arguments.nested = Some(Box::new(node_from_line(rest, escape)?));
    }
    Ok(Node {
        keyword,
        original: original.to_string(),
        flags,
        args: arguments.args,
        json: arguments.json,
        heredocs: Vec::new(),
        start_line: 0,
        end_line: 0,
        next: arguments.nested,
    })
}

/// Takes the leading `--flag` words off `text`, returning the remaining text
/// and the flags. Flags end at the first word not starting with `--`, or at a
/// lone `--`, which is dropped. Inside a flag, quotes are removed and the
/// escape character makes the next character literal.
fn extract_flags(text: &str, escape: char) -> (&str, Vec<String>) {
    let mut flags = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return ("", flags);
        };
        if !text[start..].starts_with("--") {
            return (&text[start..], flags);
        }

        let mut flag = String::new();
        // A flag written with quotes is kept even if it ends up empty.
        let mut quoted = false;
        let mut quote: Option<char> = None;
        let mut end = None;
        while let Some((pos, c)) = chars.next() {
            if quote.is_none() && c.is_whitespace() {
                end = Some(pos);
                break;
            }
            if quote.is_none() && (c == '\'' || c == '"') {
                quote = Some(c);
                quoted = true;
            } else if quote == Some(c) {
                quote = None;
            } else if c == escape {
                match chars.next() {
                    Some((_, escaped)) => flag.push(escaped),
                    // A trailing escape character is dropped.
                    None => quote = None,
                }
            } else {
                flag.push(c);
            }
        }

        if flag == "--" {
            return (end.map_or("", |pos| &text[pos..]), flags);
        }
        if quoted || !flag.is_empty() {
            flags.push(flag);
        }
        if end.is_none() {
            return ("", flags);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(text: &str) -> (&str, Vec<String>) {
        extract_flags(text, '\\')
    }

    #[test]
    fn flags_stop_at_first_plain_word() {
        assert_eq!(
            flags("--a=1 --b x --c"),
            ("x --c", vec!["--a=1".into(), "--b".into()])
        );
        assert_eq!(flags("x"), ("x", vec![]));
        assert_eq!(flags("-x --a"), ("-x --a", vec![]));
        assert_eq!(flags("--a"), ("", vec!["--a".into()]));
        assert_eq!(flags(""), ("", vec![]));
    }

    #[test]
    fn double_dash_ends_flags_and_is_dropped() {
        assert_eq!(flags("--a -- --b"), (" --b", vec!["--a".into()]));
        assert_eq!(flags("--a --"), ("", vec!["--a".into()]));
        assert_eq!(flags("-- x"), (" x", vec![]));
    }

    #[test]
    fn quotes_removed_and_escapes_resolved_in_flags() {
        assert_eq!(flags(r#"--a="x y" z"#).1, vec!["--a=x y"]);
        assert_eq!(flags(r"--a='x\'y' z").1, vec!["--a=x'y"]);
        assert_eq!(flags(r"--a=x\ y z"), ("z", vec!["--a=x y".into()]));
        assert_eq!(flags("--a\\"), ("", vec!["--a".into()]));
        assert_eq!(extract_flags("--a=`\" z", '`').1, vec!["--a=\""]);
    }

    #[test]
    fn node_splits_keyword_flags_and_rest() {
        let node = node_from_line("  CoPy --from=a   src dst  ", '\\').unwrap();
        assert_eq!(node.keyword, "copy");
        assert_eq!(node.original, "CoPy --from=a   src dst");
        assert_eq!(node.flags, ["--from=a"]);
        assert_eq!(node.args, ["src", "dst"]);
        assert!(!node.json);
    }

    #[test]
    fn unknown_keyword_gets_one_empty_argument() {
        let node = node_from_line("FOO bar", '\\').unwrap();
        assert_eq!(
            (node.keyword.as_str(), node.args.clone()),
            ("foo", vec![String::new()])
        );
    }

    #[test]
    fn onbuild_nests_an_instruction() {
        let node = node_from_line(r#"ONBUILD RUN ["a"]"#, '\\').unwrap();
        assert!(node.args.is_empty());
        let nested = node.next.unwrap();
        assert_eq!((nested.keyword.as_str(), nested.json), ("run", true));
        assert!(node_from_line("ONBUILD", '\\').unwrap().next.is_none());
    }
}
