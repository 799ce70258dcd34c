//! Tests of whole-file parsing: heredoc bodies, directives, warnings, line
//! ranges and error locations.

use super::*;

fn parsed(source: &str) -> Dockerfile {
    parse(source).unwrap_or_else(|e| panic!("parse failed: {e}\n{source}"))
}

fn heredoc(name: &str, content: &str) -> Heredoc {
    Heredoc {
        name: name.to_string(),
        content: content.to_string(),
        expand: true,
        chomp: false,
        file_descriptor: None,
    }
}

#[test]
fn several_heredocs_on_one_line_take_bodies_in_order() {
    let file = parsed("FROM a\nCOPY <<X <<Y /dest\nY\nX\nX\nY\nRUN true\n");
    let copy = &file.children[1];
    assert_eq!(
        copy.heredocs,
        vec![heredoc("X", "Y\n"), heredoc("Y", "X\n")]
    );
    assert_eq!(copy.args, ["<<X", "<<Y", "/dest"]);
    assert_eq!((copy.start_line, copy.end_line), (2, 6));
    assert_eq!(file.children[2].start_line, 7);
    assert_eq!(
        file.dump(),
        "(from \"a\")\n(copy \"<<X\" \"<<Y\" \"/dest\")\n(run \"true\")"
    );
}

#[test]
fn heredoc_bodies_are_raw_lines() {
    let file = parsed("FROM a\nRUN <<EOF python3\n# not a comment \\\n\tprint('hi')\r\n\nEOF\n");
    let run = &file.children[1];
    assert_eq!(
        run.heredocs,
        vec![heredoc("EOF", "# not a comment \\\n\tprint('hi')\r\n\n")]
    );
    assert_eq!(run.args, ["<<EOF python3"]);
    assert_eq!(run.end_line, 6);
}

#[test]
fn empty_heredoc_and_terminator_at_eof() {
    let file = parsed("FROM a\nRUN <<EMPTY\nEMPTY");
    assert_eq!(file.children[1].heredocs, vec![heredoc("EMPTY", "")]);
    assert_eq!(file.end_line, 3);
}

#[test]
fn quoted_heredoc_word_is_not_a_heredoc() {
    let file = parsed("FROM a\nRUN \"<<EOF\"\nRUN '<<EOF'\nEOF\n");
    assert!(file.children.iter().all(|n| n.heredocs.is_empty()));
    assert_eq!(file.children.len(), 4);
}

#[test]
fn json_form_and_other_instructions_have_no_heredocs() {
    let file = parsed("FROM a\nRUN [\"<<EOF\"]\nUSER <<EOF\nCMD <<EOF\nEOF\n");
    assert!(file.children.iter().all(|n| n.heredocs.is_empty()));
    assert_eq!(file.children.len(), 5);
    assert!(file.children[1].json);
}

#[test]
fn chomp_strips_tabs_from_body_and_terminator() {
    let file = parsed("FROM a\nRUN <<-EOF\n\tbaz\n\t\tquux\n \tkept\n\tEOF\n");
    let doc = &file.children[1].heredocs[0];
    assert!(doc.chomp);
    assert_eq!(doc.content, "baz\nquux\n \tkept\n");
    // Without `-`, an indented terminator is body text.
    let file = parsed("FROM a\nRUN <<EOF\n\tEOF\nEOF\n");
    assert_eq!(file.children[1].heredocs[0].content, "\tEOF\n");
}

#[test]
fn partly_quoted_names_turn_off_expansion() {
    let file = parsed("FROM a\nRUN <<eo'f'\necho $X\neof\nRUN <<-'NOEXPAND'\n\t$Y\nNOEXPAND\n");
    let first = &file.children[1].heredocs[0];
    assert_eq!(
        (first.name.as_str(), first.expand, first.content.as_str()),
        ("eof", false, "echo $X\n")
    );
    let second = &file.children[2].heredocs[0];
    assert_eq!(
        (second.expand, second.chomp, second.content.as_str()),
        (false, true, "$Y\n")
    );
}

#[test]
fn file_descriptor_and_spaces_after_operator() {
    let file = parsed("FROM a\nRUN 3<<EMPTY2\nEMPTY2\nRUN <<  EOF  > foo\nbody\nEOF\n");
    assert_eq!(file.children[1].heredocs[0].file_descriptor, Some(3));
    assert_eq!(file.children[2].heredocs[0], heredoc("EOF", "body\n"));
}

#[test]
fn heredocs_after_flags_continuations_and_under_onbuild() {
    let file = parsed(
        "FROM a\nRUN --mount=type=cache,target=/x \\\n  <<MOUNT\necho hi\nMOUNT\nONBUILD ADD <<F /f\nhello\nF\n",
    );
    let run = &file.children[1];
    assert_eq!(
        (run.heredocs.len(), run.start_line, run.end_line),
        (1, 2, 5)
    );
    let onbuild = &file.children[2];
    assert!(onbuild.heredocs.is_empty());
    let nested = onbuild.next.as_deref().unwrap();
    assert_eq!(nested.heredocs, vec![heredoc("F", "hello\n")]);
    assert_eq!((nested.start_line, nested.end_line), (6, 8));
    assert_eq!(
        file.dump().lines().last(),
        Some("(onbuild (add \"<<F\" \"/f\"))")
    );
}

#[test]
fn unterminated_heredoc_is_an_error_at_its_instruction() {
    let err = parse("FROM a\n\nRUN <<EOF\necho\n").unwrap_err();
    assert_eq!(err.line, 3);
    assert!(err.message.contains("unterminated heredoc"), "{err}");
    let err = parse("FROM a\nCOPY <<A <<B /\nA\n").unwrap_err();
    assert_eq!(err.line, 2);
}

#[test]
fn directives_are_reported() {
    let file = parsed("# syntax=docker/dockerfile:1.7\n# escape=`\n#check=skip=all\nFROM a\n");
    assert_eq!(
        file.directives,
        Directives {
            syntax: Some("docker/dockerfile:1.7".to_string()),
            escape: Some('`'),
            check: Some("skip=all".to_string()),
        }
    );
    assert_eq!(file.escape, '`');
    let plain = parsed("FROM a\n");
    assert_eq!(
        (plain.directives.clone(), plain.escape),
        (Directives::default(), '\\')
    );
}

#[test]
fn directive_header_ends_at_first_other_line() {
    // Not directives: after a comment, after a blank line, after a shebang.
    for source in [
        "# hello\n# escape=`\nFROM a `\nb\n",
        "\n# escape=`\nFROM a `\nb\n",
        "#!/bin/x\n# escape=`\nFROM a `\nb\n",
    ] {
        let file = parsed(source);
        assert_eq!((file.escape, file.children.len()), ('\\', 2), "{source:?}");
    }
    // Indented directives and a BOM are fine.
    let file = parsed("\u{feff}  #  ESCAPE = `  \nFROM a `\nb\n");
    assert_eq!(
        (file.escape, file.dump().as_str()),
        ('`', "(from \"a\" \"b\")")
    );
}

#[test]
fn directive_errors_name_their_line() {
    let err = parse("# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
    assert_eq!(
        (err.line, err.message.as_str()),
        (2, "only one escape parser directive can be used")
    );
    let err = parse("# syntax=a\n#escape=x\nFROM a\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert_eq!(
        err.to_string(),
        "line 2: invalid escape token 'x' does not match ` or \\"
    );
}

#[test]
fn instruction_errors_name_the_first_line() {
    let err = parse("FROM a\n\nENV A=1 \\\n  B\n").unwrap_err();
    assert_eq!(err.line, 3);
    let err = parse("FROM a\nCMD [\"a\", 1]\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: when using JSON array syntax, arrays must be comprised of strings only"
    );
}

#[test]
fn empty_files_are_errors() {
    assert_eq!(parse("").unwrap_err().message, "file with no instructions");
    let err = parse("# only\n\n   # comments\n").unwrap_err();
    assert_eq!(
        (err.line, err.message.as_str()),
        (3, "file with no instructions")
    );
}

#[test]
fn long_lines_are_errors() {
    let source = format!("\t\tFROM image\n\t\tLABEL test={}\n", "a".repeat(65536));
    let err = parse(&source).unwrap_err();
    assert_eq!(
        err,
        ParseError::new(2, "dockerfile line greater than max allowed size of 65535")
    );
}

#[test]
fn empty_continuation_lines_warn_once_per_instruction() {
    let file = parsed(concat!(
        "FROM alpine\n",
        "RUN valid \\\n    continuation\n\n",
        "RUN something \\\n\n    following \\\n\n    more\n\n",
        "RUN another \\\n\n    thing\n\n",
        "RUN indented \\\n    # a comment\n    comment\n",
    ));
    let lines: Vec<usize> = file.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [9, 13]);
    assert_eq!(
        file.warnings[0].message,
        "Empty continuation line found in: RUN something     following     more"
    );
    assert_eq!(file.children[4].args, ["indented     comment"]);
}

#[test]
fn lone_escape_line_starts_a_continuation() {
    let file = parsed("\\\nFROM a\n");
    assert_eq!(
        (file.children[0].original.as_str(), file.start_line),
        ("FROM a", 1)
    );
}

#[test]
fn file_range_spans_instructions_only() {
    let file = parsed("# c\n\nFROM a\n\nRUN b \\\n\n# x\n");
    assert_eq!((file.start_line, file.end_line), (3, 7));
    assert_eq!(
        (file.children[1].start_line, file.children[1].end_line),
        (5, 7)
    );
}
