use super::*;

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn word(src: &str, pairs: &[(&str, &str)]) -> Result<String, ShellError> {
    Lexer::default()
        .process_word(src, &vars(pairs))
        .map(|e| e.value)
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn defaults_and_alternatives_distinguish_unset_from_empty() {
    let env = [("SET", "v"), ("EMPTY", "")];
    assert_eq!(word("${SET-d}|${EMPTY-d}|${NONE-d}", &env).unwrap(), "v||d");
    assert_eq!(
        word("${SET:-d}|${EMPTY:-d}|${NONE:-d}", &env).unwrap(),
        "v|d|d"
    );
    assert_eq!(word("${SET+a}|${EMPTY+a}|${NONE+a}", &env).unwrap(), "a|a|");
    assert_eq!(
        word("${SET:+a}|${EMPTY:+a}|${NONE:+a}", &env).unwrap(),
        "a||"
    );
}

#[test]
fn required_variables_report_the_expanded_message() {
    let env = [("ARG", "x"), ("EMPTY", "")];
    assert_eq!(word("${ARG?no $ARG}", &env).unwrap(), "x");
    assert_eq!(word("${EMPTY?no $ARG}", &env).unwrap(), "");
    assert_eq!(
        word("${NONE?no $ARG here}", &env),
        Err(ShellError::Required {
            name: "NONE".into(),
            message: "no x here".into()
        })
    );
    let err = word("${EMPTY:?}", &env).unwrap_err();
    assert_eq!(err.to_string(), "EMPTY: is not allowed to be empty");
    let err = word("${NONE:?}", &env).unwrap_err();
    assert_eq!(err.to_string(), "NONE: is not allowed to be unset");
}

#[test]
fn assignment_and_unknown_modifiers_are_rejected() {
    for src in [
        "${A=x}", "${A:=x}", "${A=}", "${A:x}", "${A^}", "${A:#x}", "${A:%%x}",
    ] {
        assert!(
            matches!(
                word(src, &[("A", "v")]),
                Err(ShellError::UnsupportedModifier(_))
            ),
            "{src}"
        );
    }
    assert_eq!(word("${}", &[]), Err(ShellError::BadSubstitution));
    assert_eq!(word("${:-x}", &[]), Err(ShellError::BadSubstitution));
    assert_eq!(word("${A", &[]), Err(ShellError::MissingBrace));
    assert_eq!(word("${A:-x", &[]), Err(ShellError::MissingBrace));
    assert_eq!(word("${A:-'x}", &[]), Err(ShellError::MissingBrace));
}

#[test]
fn prefix_and_suffix_removal() {
    let env = [("F", "dir/sub/file.tar.gz"), ("STAR", "a**b*")];
    assert_eq!(word("${F#*/}", &env).unwrap(), "sub/file.tar.gz");
    assert_eq!(word("${F##*/}", &env).unwrap(), "file.tar.gz");
    assert_eq!(word("${F%.*}", &env).unwrap(), "dir/sub/file.tar");
    assert_eq!(word("${F%%.*}", &env).unwrap(), "dir/sub/file");
    assert_eq!(word("${F#nomatch}", &env).unwrap(), "dir/sub/file.tar.gz");
    assert_eq!(
        word("${F#}|${F%%}", &env).unwrap(),
        "dir/sub/file.tar.gz|dir/sub/file.tar.gz"
    );
    assert_eq!(word("${F#d?r/}", &env).unwrap(), "sub/file.tar.gz");
    assert_eq!(word("${STAR%\\*}", &env).unwrap(), "a**b");
    assert_eq!(word("${STAR#a\\*}", &env).unwrap(), "*b*");
    assert_eq!(word("${STAR%%\\**}", &env).unwrap(), "a");
    assert_eq!(word("${NONE#x}", &env).unwrap(), "");
    assert!(matches!(
        word("${F#\\x}", &env),
        Err(ShellError::InvalidPattern { .. })
    ));
}

#[test]
fn pattern_may_come_from_a_variable() {
    let env = [("F", "xxyy"), ("P", "x"), ("EMPTY", "")];
    assert_eq!(word("${F#$P}", &env).unwrap(), "xyy");
    assert_eq!(word("${F##$EMPTY}", &env).unwrap(), "xxyy");
}

#[test]
fn substitution() {
    let env = [
        ("F", "/tmp/tmp/bar.txt"),
        ("NEEDLE", "/tmp"),
        ("URL", "http://example.com"),
    ];
    assert_eq!(word("${F/$NEEDLE/}", &env).unwrap(), "/tmp/bar.txt");
    assert_eq!(word("${F//$NEEDLE/}", &env).unwrap(), "/bar.txt");
    assert_eq!(word("${F//t?p/X}", &env).unwrap(), "/X/X/bar.txt");
    assert_eq!(
        word("${URL/http:\\/\\//https:\\/\\/}", &env).unwrap(),
        "https:\\/\\/example.com"
    );
    assert_eq!(
        word("${URL/http/https}", &env).unwrap(),
        "https://example.com"
    );
    assert_eq!(
        word("${F//\\//\\/}", &env).unwrap(),
        "\\/tmp\\/tmp\\/bar.txt"
    );
    assert_eq!(word("${F///}", &env).unwrap(), "/tmp/tmp/bar.txt");
    assert_eq!(word("${NONE///}", &env).unwrap(), "");
    assert_eq!(word("${F/$NONE/>}", &env).unwrap(), ">/tmp/tmp/bar.txt");
    assert_eq!(word("${F//x}", &env), Err(ShellError::MissingSlash));
    assert_eq!(word("${F//}", &env), Err(ShellError::MissingSlash));
    assert_eq!(word("${F/a/b", &env), Err(ShellError::MissingBrace));
}

#[test]
fn referenced_names_include_unset_and_nested_ones() {
    let lexer = Lexer::default();
    let env = vars(&[("FOO", "x"), ("EMPTY", "")]);
    let got = lexer
        .process_word("$FOO ${BAR:-${BAZ}} ${EMPTY:+$QUX} '$NOT' \\$NOR $1", &env)
        .unwrap();
    assert_eq!(got.value, "x   $NOT $NOR ");
    assert_eq!(
        got.referenced,
        names(&["1", "BAR", "BAZ", "EMPTY", "FOO", "QUX"])
    );
    assert_eq!(got.unset, names(&["1", "BAR", "BAZ", "QUX"]));

    let got = lexer.process_word("plain", &env).unwrap();
    assert!(got.referenced.is_empty() && got.unset.is_empty());
}

#[test]
fn release_file_name_with_optional_suffix() {
    let src = "app-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tgz";
    let base = [
        ("VERSION", "1.2"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm"),
    ];
    assert_eq!(word(src, &base).unwrap(), "app-1.2.linux-arm.tgz");
    let mut with_variant = base.to_vec();
    with_variant.push(("TARGETVARIANT", "v7"));
    assert_eq!(
        word(src, &with_variant).unwrap(),
        "app-1.2.linux-arm-v7.tgz"
    );
    with_variant.pop();
    with_variant.push(("TARGETVARIANT", ""));
    assert_eq!(word(src, &with_variant).unwrap(), "app-1.2.linux-arm.tgz");
}

#[test]
fn field_splitting() {
    let lexer = Lexer::default();
    let env = vars(&[("PORTS", " 80  443 "), ("EMPTY", "")]);
    let split = |src: &str| lexer.process_words(src, &env).unwrap().value;
    assert_eq!(split("$PORTS 8080/tcp"), ["80", "443", "8080/tcp"]);
    assert_eq!(split("\"$PORTS\""), [" 80  443 "]);
    assert_eq!(split("a '' \"\" $EMPTY b"), ["a", "b"]);
    // Text before a `${...}` operator stays in the same field.
    assert_eq!(split("port=${NONE:-80}/tcp"), ["port=80/tcp"]);
    assert_eq!(split("x${NONE:-a b}y"), ["xa", "by"]);
    assert_eq!(split("cat <<EOF"), ["cat", "<<EOF"]);
    assert_eq!(split("cat << EOF"), ["cat", "<< EOF"]);
    assert_eq!(split("a\\ b c"), ["a b", "c"]);
}

#[test]
fn backtick_escape() {
    let lexer = Lexer::new('`');
    let env = vars(&[("P", "C:\\dir")]);
    let got = lexer.process_word("$P\\x `$P \"`\"\\\"", &env).unwrap();
    assert_eq!(got.value, "C:\\dir\\x $P \"\\");
}

#[test]
fn raw_quotes_keep_quote_characters() {
    let lexer = Lexer::default().raw_quotes(true);
    let env = vars(&[("A", "1")]);
    let got = lexer.process_words("'EOF' \"x $A\" y", &env).unwrap();
    assert_eq!(got.value, ["'EOF'", "\"x 1\"", "y"]);
}

#[test]
fn raw_escapes_keep_escape_characters() {
    let lexer = Lexer::default().raw_escapes(true);
    let env = vars(&[("A", "1")]);
    assert_eq!(
        lexer
            .process_word("\\$A \"\\$A \\t\" \\", &env)
            .unwrap()
            .value,
        "\\$A \\$A \\t \\"
    );
    // Defaults inside `${...}` are still unescaped.
    assert_eq!(
        lexer.process_word("${NONE:-\\$A}", &env).unwrap().value,
        "$A"
    );
}

#[test]
fn skip_unset_leaves_references_as_written() {
    let lexer = Lexer::default().skip_unset(true);
    let env = vars(&[("A", "1")]);
    let got = lexer
        .process_word("$A $B ${C} ${D:-x$A} ${E//p/r} ${F#y} $", &env)
        .unwrap();
    assert_eq!(got.value, "1 $B ${C} ${D:-x1} ${E//p/r} ${F#y} $");
    assert_eq!(got.unset, names(&["B", "C", "D", "E", "F"]));
}

#[test]
fn skip_quotes_expands_inside_quotes() {
    let lexer = Lexer::default().skip_quotes(true);
    let env = vars(&[("A", "1")]);
    assert_eq!(
        lexer
            .process_word("echo '$A' \"$A\" \\$A", &env)
            .unwrap()
            .value,
        "echo '1' \"1\" $A"
    );
    // An unbalanced quote is just a character.
    assert_eq!(lexer.process_word("it's", &env).unwrap().value, "it's");
}

#[test]
fn var_sources() {
    let list = vec![
        ("A".to_string(), "first".to_string()),
        ("A".to_string(), "last".to_string()),
    ];
    assert_eq!(list.get_var("A").as_deref(), Some("last"));
    assert_eq!(list.as_slice().get_var("B"), None);
    let map: HashMap<String, String> = [("A".to_string(), String::new())].into();
    assert_eq!(map.get_var("A").as_deref(), Some(""));
    let lexer = Lexer::default();
    assert_eq!(lexer.process_word("$A", &map).unwrap().value, "");
    assert_eq!(lexer.process_word("$A", &list).unwrap().value, "last");
}

/// Nesting is bounded: a hostile depth is refused with an error instead of exhausting the stack,
/// and the deepest allowed nesting still expands.
#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let lexer = Lexer::new('\\');
    let vars = HashMap::<String, String>::new();
    let nest = |depth: usize| format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
    assert_eq!(lexer.process_word(&nest(MAX_NESTING), &vars).unwrap().value, "x");
    for depth in [MAX_NESTING + 1, 10_000, 100_000] {
        let err = lexer.process_word(&nest(depth), &vars).unwrap_err();
        assert_eq!(err, ShellError::TooDeep, "depth {depth}");
    }
    let words = format!("{}\"x\"{}", "${a:+".repeat(20_000), "}".repeat(20_000));
    assert_eq!(lexer.process_words(&words, &vars).unwrap_err(), ShellError::TooDeep);
}
