//! Conformance of rbuild's Dockerfile parser with the reference parser's test
//! corpus (`tests/data/buildkit-parser`, see its README): positive cases must
//! dump exactly as their `result` file, negative cases must fail, and the
//! line-number file must give the documented ranges.

use std::fs;
use std::path::{Path, PathBuf};

use rbuild_frontend::parser::parse;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/buildkit-parser")
}

/// The case directories under `dir`, sorted by name.
fn cases(dir: &str) -> Vec<(String, PathBuf)> {
    let dir = corpus().join(dir);
    let mut cases: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
            )
        })
        .collect();
    cases.sort();
    cases
}

fn read_text(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()))
}

/// Checks one positive case, describing any mismatch.
fn check_positive(dir: &Path) -> Result<(), String> {
    let source = read_text(&dir.join("Dockerfile"));
    let expected = read_text(&dir.join("result")).replace("\r\n", "\n");
    let file = parse(&source).map_err(|e| format!("parse failed: {e}"))?;
    let actual = file.dump() + "\n";
    if actual == expected {
        return Ok(());
    }
    let first_difference = expected
        .lines()
        .zip(actual.lines())
        .find(|(e, a)| e != a)
        .map(|(e, a)| format!("\n  expected: {e}\n  actual:   {a}"))
        .unwrap_or_else(|| {
            format!(
                "\n  line counts differ: expected {}, actual {}",
                expected.lines().count(),
                actual.lines().count()
            )
        });
    Err(format!("dump differs{first_difference}"))
}

#[test]
fn parser_corpus_cases_dump_as_reference() {
    let positive = cases("testfiles");
    let negative = cases("testfiles-negative");
    assert!(
        positive.len() + negative.len() > 30,
        "only {} positive and {} negative cases found",
        positive.len(),
        negative.len()
    );

    let mut failures = Vec::new();
    for (name, dir) in &positive {
        if let Err(why) = check_positive(dir) {
            failures.push(format!("testfiles/{name}: {why}"));
        }
    }
    for (name, dir) in &negative {
        if let Ok(file) = parse(&read_text(&dir.join("Dockerfile"))) {
            failures.push(format!(
                "testfiles-negative/{name}: parsed without error:\n{}",
                file.dump()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        positive.len() + negative.len(),
        failures.join("\n")
    );
}

#[test]
fn parser_corpus_line_ranges() {
    let file = parse(&read_text(&corpus().join("testfile-line/Dockerfile"))).expect("parses");
    assert_eq!((file.start_line, file.end_line), (5, 31));
    let ranges: Vec<(usize, usize)> = file
        .children
        .iter()
        .map(|node| (node.start_line, node.end_line))
        .collect();
    assert_eq!(ranges, [(5, 5), (11, 12), (17, 31)]);
    assert_eq!(file.directives.escape, Some('\\'));
}
