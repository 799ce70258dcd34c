use super::*;

fn patterns(list: &[&str]) -> IgnorePatterns {
    IgnorePatterns::from_patterns(list).unwrap()
}

#[track_caller]
fn check(ignore: &IgnorePatterns, excluded: &[&str], kept: &[&str]) {
    for path in excluded {
        assert!(
            ignore.is_excluded(path),
            "{path} should be excluded by {ignore:?}"
        );
    }
    for path in kept {
        assert!(
            !ignore.is_excluded(path),
            "{path} should be kept by {ignore:?}"
        );
    }
}

#[test]
fn documented_example_file() {
    let ignore = IgnorePatterns::parse("# comment\n*/temp*\n*/*/temp*\ntemp?\n").unwrap();
    check(
        &ignore,
        &[
            "somedir/temporary.txt",
            "somedir/temp",
            "somedir/temp/inside.txt",
            "somedir/subdir/temporary.txt",
            "tempa",
            "tempb",
        ],
        &[
            "temp",
            "temporary.txt",
            "tempab",
            "a/b/c/temp",
            "somedir/xtemp",
            "comment",
            "# comment",
        ],
    );
}

#[test]
fn double_star_go_files() {
    let ignore = patterns(&["**/*.go"]);
    check(
        &ignore,
        &["main.go", "cmd/main.go", "a/b/c/d.go"],
        &["main.go.txt", "go", "cmd/main.rs"],
    );
}

#[test]
fn markdown_with_readme_exception() {
    let ignore = patterns(&["*.md", "!README.md"]);
    check(&ignore, &["CHANGES.md"], &["README.md", "docs/guide.md"]);
    assert!(ignore.has_exceptions());
}

#[test]
fn exception_order_matters() {
    let ignore = patterns(&["*.md", "!README*.md", "README-secret.md"]);
    check(
        &ignore,
        &["notes.md", "README-secret.md"],
        &["README.md", "README-public.md"],
    );
    // An exclusion placed before the exception has no effect.
    let ignore = patterns(&["*.md", "README-secret.md", "!README*.md"]);
    check(&ignore, &["notes.md"], &["README.md", "README-secret.md"]);
    // An exception before the exclusion it should override does nothing.
    let ignore = patterns(&["!keep.txt", "*.txt"]);
    check(&ignore, &["keep.txt", "other.txt"], &[]);
}

#[test]
fn excluding_a_directory_and_re_including_a_file_inside() {
    let ignore = patterns(&["build", "!build/keep.txt", "!build/assets/**"]);
    check(
        &ignore,
        &["build", "build/out.o", "build/sub/x"],
        &[
            "build/keep.txt",
            "build/assets/a.png",
            "build/assets/img/b.png",
            "buildx",
        ],
    );
    assert!(ignore.may_include_under("build"));
    // `build/assets` itself stays excluded: `build/assets/**` needs a path below.
    assert!(ignore.is_excluded("build/assets"));
}

#[test]
fn a_pattern_excludes_everything_below_a_match() {
    check(
        &patterns(&["foo"]),
        &["foo", "foo/bar", "foo/bar/baz.txt"],
        &["foobar", "x/foo", "fo"],
    );
    check(&patterns(&["a/b"]), &["a/b", "a/b/c"], &["a", "a/bc", "b"]);
}

#[test]
fn single_star_stays_in_one_directory() {
    check(
        &patterns(&["*.txt"]),
        &["a.txt", ".txt"],
        &["dir/a.txt", "a.txt.bak"],
    );
    // `*` matches every top-level entry, so everything below goes too.
    check(&patterns(&["*"]), &["a", "a/b/c", ".hidden"], &[]);
    check(
        &patterns(&["*/b"]),
        &["a/b", "x/b/c"],
        &["b", "a/x/b", "a/bb"],
    );
    check(&patterns(&["?"]), &["a", "a/long"], &["ab", "/"]);
}

#[test]
fn double_star_at_start() {
    check(
        &patterns(&["**/foo"]),
        &["foo", "a/foo", "a/b/foo", "a/foo/bar"],
        &["xfoo", "a/xfoo", "foo.txt"],
    );
    // Followed by plain text without a slash, it is a suffix test.
    check(
        &patterns(&["**foo"]),
        &["foo", "xfoo", "a/bfoo"],
        &["foox", "a/foo.txt"],
    );
    check(&patterns(&["**"]), &["a", "a/b", ".x"], &[""]);
    check(
        &patterns(&["**/*.log"]),
        &["x.log", "a/b/x.log", "logs.log/inner"],
        &["x.log.1"],
    );
}

#[test]
fn double_star_in_the_middle() {
    check(
        &patterns(&["a/**/b"]),
        &["a/b", "a/x/b", "a/x/y/b", "a/b/c"],
        &["ab", "a/xb", "x/a/b", "a/x/bc"],
    );
    check(&patterns(&["a**b"]), &["ab", "ax/b", "a/x/b"], &["axb"]);
    check(
        &patterns(&["src/**/test/*.rs"]),
        &["src/test/a.rs", "src/x/y/test/a.rs"],
        &["src/test/sub/a.rs", "test/a.rs"],
    );
}

#[test]
fn double_star_at_the_end() {
    check(
        &patterns(&["a/**"]),
        &["a/x", "a/x/y"],
        &["a", "ab", "b/a/x"],
    );
    check(&patterns(&["a**"]), &["a", "abc", "a/b", "ab/c"], &["ba"]);
    check(
        &patterns(&["a*/**"]),
        &["a/x", "ab/x", "ab/x/y"],
        &["ab", "a", "b/x"],
    );
    check(&patterns(&["a/**/"]), &["a/x"], &["a"]);
}

#[test]
fn character_classes() {
    check(
        &patterns(&["file[0-9].txt"]),
        &["file1.txt", "file9.txt"],
        &["filea.txt", "file10.txt"],
    );
    check(&patterns(&["[^a]*"]), &["b", "bcd", "_"], &["a", "abc"]);
    check(&patterns(&["[!a]"]), &["!", "a"], &["b"]);
    check(
        &patterns(&["x[ab-d]y"]),
        &["xay", "xcy", "xdy"],
        &["xey", "x-y"],
    );
    check(&patterns(&["x[\\]]y"]), &["x]y"], &["xy"]);
    // A class may match the separator.
    check(&patterns(&["a[/]b"]), &["a/b"], &["ab"]);
    check(&patterns(&["a[^x]b"]), &["a/b", "acb"], &["axb"]);
    check(&patterns(&["[한]"]), &["한"], &["a"]);
}

#[test]
fn escaped_characters_are_literal() {
    check(&patterns(&["\\*.txt"]), &["*.txt"], &["a.txt"]);
    check(&patterns(&["a\\?"]), &["a?"], &["ab"]);
    check(&patterns(&["\\[x\\]"]), &["[x]"], &["x"]);
    check(
        &patterns(&["\\!important"]),
        &["!important"],
        &["important"],
    );
    assert!(!patterns(&["\\!important"]).has_exceptions());
}

#[test]
fn regex_characters_are_plain() {
    check(
        &patterns(&["a.b+c(d)|{e}$^"]),
        &["a.b+c(d)|{e}$^"],
        &["axb+c(d)|{e}$^"],
    );
    check(&patterns(&["*.b+c"]), &["x.b+c"], &["x.bbc", "xxb+c"]);
}

#[test]
fn patterns_are_cleaned_and_made_relative() {
    for pattern in ["/foo", "./foo", "foo/", "foo//", "/./foo/.", "bar/../foo"] {
        check(
            &patterns(&[pattern]),
            &["foo", "foo/x"],
            &["bar", "bar/foo"],
        );
    }
    check(&patterns(&["a//b"]), &["a/b"], &["a"]);
}

#[test]
fn parent_relative_patterns_never_match() {
    let ignore = patterns(&["../foo", "../*", "..", "/.."]);
    check(&ignore, &[], &["foo", "x", "a/foo"]);
    // `/..` cleans to `/`, which matches no relative path.
    check(&patterns(&["/"]), &[], &["a", "x/y"]);
}

#[test]
fn paths_are_normalised() {
    let ignore = patterns(&["dir/file"]);
    check(
        &ignore,
        &[
            "./dir/file",
            "dir//file",
            "dir/file/",
            "/dir/file",
            "x/../dir/file",
        ],
        &[".", "", "./dir"],
    );
    check(&patterns(&["*"]), &["./a"], &[".", "./", "/"]);
}

#[test]
fn file_syntax() {
    let content =
        "\u{feff}# comment\r\n  spaced  \r\n\n #not-a-comment\n! kept\n\t\n!  /also-kept\n";
    let ignore = IgnorePatterns::parse(content).unwrap();
    check(
        &ignore,
        &["spaced", "#not-a-comment"],
        &["comment", "# comment", "kept", "also-kept", " spaced"],
    );
    assert!(ignore.has_exceptions());
    assert!(IgnorePatterns::parse("# only a comment\n\n")
        .unwrap()
        .is_empty());
    assert!(IgnorePatterns::parse("").unwrap().is_empty());
    assert!(!IgnorePatterns::parse("x").unwrap().has_exceptions());
}

#[test]
fn invalid_patterns() {
    let err = IgnorePatterns::parse("ok\n!\n").unwrap_err();
    assert_eq!(err.line, Some(2));
    assert_eq!(err.kind, PatternErrorKind::EmptyException);
    assert!(err.to_string().contains("line 2"), "{err}");

    for (pattern, kind) in [
        ("[", SyntaxError::UnterminatedClass),
        ("a[bc", SyntaxError::UnterminatedClass),
        ("[a-", SyntaxError::UnterminatedClass),
        ("[]", SyntaxError::BadClass),
        ("[]a]", SyntaxError::BadClass),
        ("[^]", SyntaxError::BadClass),
        ("[a-]", SyntaxError::BadClass),
        ("[-a]", SyntaxError::BadClass),
        ("[\\", SyntaxError::UnterminatedClass),
        ("a\\", SyntaxError::TrailingEscape),
        ("!x[", SyntaxError::UnterminatedClass),
    ] {
        let err = IgnorePatterns::from_patterns([pattern]).unwrap_err();
        assert_eq!(err.kind, PatternErrorKind::Syntax(kind), "{pattern}");
        assert_eq!(err.line, None);
    }
}

#[test]
fn may_include_under_literal_and_prefix_exceptions() {
    let ignore = patterns(&["*", "!src/main.rs", "!docs/**"]);
    assert!(ignore.may_include_under("src"));
    assert!(ignore.may_include_under("docs"));
    assert!(ignore.may_include_under("docs/api"));
    assert!(!ignore.may_include_under("target"));
    assert!(!ignore.may_include_under("src/main.rs"));
    assert!(!ignore.may_include_under("sr"));
    assert!(ignore.may_include_under(""));

    let ignore = patterns(&["*", "!do**"]);
    assert!(ignore.may_include_under("docs"));
    assert!(!ignore.may_include_under("dx"));

    // Without exceptions nothing can come back.
    assert!(!patterns(&["*"]).may_include_under("src"));
}

#[test]
fn may_include_under_wildcard_exceptions() {
    let ignore = patterns(&["*", "!src/*.rs", "!**/keep", "![a-c]*/x"]);
    assert!(ignore.may_include_under("src"));
    assert!(ignore.may_include_under("anything/deep"));
    assert!(ignore.may_include_under("bin"));

    let ignore = patterns(&["*", "!src/*.rs"]);
    assert!(ignore.may_include_under("src"));
    assert!(!ignore.may_include_under("src/sub"));
    assert!(!ignore.may_include_under("lib"));

    let ignore = patterns(&["*", "!a/**/b/*.c"]);
    assert!(ignore.may_include_under("a"));
    assert!(ignore.may_include_under("a/x/y"));
    assert!(!ignore.may_include_under("b"));
}

/// Pruning a directory for which `may_include_under` is false must never
/// drop a path that `is_excluded` would keep.
#[test]
fn pruning_agrees_with_is_excluded() {
    let tree = [
        "a",
        "a/b",
        "a/b/c.go",
        "a/b/keep",
        "a/keep",
        "a/x.md",
        "b",
        "b/a",
        "b/a/b",
        "b/a/b/c.go",
        "docs",
        "docs/README.md",
        "docs/api",
        "docs/api/x.md",
        "src",
        "src/main.rs",
        "src/sub",
        "src/sub/lib.rs",
        "keep",
        "keep/inner",
    ];
    let sets: &[&[&str]] = &[
        &["*", "!keep"],
        &["*", "!**/keep"],
        &["a", "b", "!a/b"],
        &["**/*.go", "!a/**"],
        &["*", "!src/*.rs"],
        &["*", "!*/README.md"],
        &["docs", "!docs/api/**", "docs/api/x.md"],
        &["a/**", "!a/b/c.go"],
        &["*", "![ab]/b/*"],
        &["*", "!a**b"],
        &["src", "!src/sub", "src/sub/lib.rs", "!**/lib.rs"],
    ];
    for set in sets {
        let ignore = patterns(set);
        for dir in tree {
            if !ignore.is_excluded(dir) || ignore.may_include_under(dir) {
                continue;
            }
            let prefix = format!("{dir}/");
            for path in tree.iter().filter(|p| p.starts_with(&prefix)) {
                assert!(
                    ignore.is_excluded(path),
                    "{set:?}: pruning {dir} would drop kept {path}"
                );
            }
        }
    }
}

#[test]
fn glob_clean() {
    for (input, want) in [
        ("", "."),
        (".", "."),
        ("a/b/", "a/b"),
        ("a//b", "a/b"),
        ("./a/./b", "a/b"),
        ("a/../..", ".."),
        ("../../a", "../../a"),
        ("/../a", "/a"),
        ("/", "/"),
        ("a/b/../../c", "c"),
    ] {
        assert_eq!(glob::clean(input), want, "{input}");
    }
}
