//! Runs the shell-lexer conformance corpus in `tests/data/buildkit-shell`
//! (its README describes both file formats) against `rbuild_frontend::shell`.
//! Each test reports every failing case at once and checks that enough cases
//! ran, so an empty or misread file cannot pass.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rbuild_frontend::shell::Lexer;

fn corpus(name: &str) -> String {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "data",
        "buildkit-shell",
        name,
    ]
    .iter()
    .collect();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn report(file: &str, ran: usize, min_cases: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {ran} {file} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        ran > min_cases,
        "only {ran} {file} cases ran, expected more than {min_cases}"
    );
}

#[test]
fn shell_env_var_test_corpus() {
    let vars: BTreeMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lexer = Lexer::new('\\');
    let mut ran = 0;
    let mut failures = Vec::new();

    for (index, line) in corpus("envVarTest").lines().enumerate() {
        let lineno = index + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        let [platform, source, expected] = fields[..] else {
            failures.push(format!("line {lineno}: malformed line {line:?}"));
            continue;
        };
        match platform {
            "A" | "U" => {}
            "W" => continue,
            other => {
                failures.push(format!("line {lineno}: unknown platform {other:?}"));
                continue;
            }
        }
        ran += 1;
        let result = lexer.process_word(source, &vars).map(|e| e.value);
        let ok = match (&result, expected) {
            (Err(_), "error") => true,
            (Ok(got), want) => want != "error" && got == want,
            (Err(_), _) => false,
        };
        if !ok {
            failures.push(format!(
                "line {lineno}: {source:?}: expected {expected:?}, got {result:?}"
            ));
        }
    }
    report("envVarTest", ran, 100, &failures);
}

#[test]
fn shell_words_test_corpus() {
    // Later assignments shadow earlier ones, like successive ENV lines.
    let mut env: Vec<(String, String)> = Vec::new();
    let lexer = Lexer::new('\\');
    let mut ran = 0;
    let mut failures = Vec::new();

    for (index, line) in corpus("wordsTest").lines().enumerate() {
        let lineno = index + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let assignment = rest.trim_start_matches(' ');
            let (name, value) = assignment.split_once('=').unwrap_or((assignment, ""));
            env.push((name.to_string(), value.to_string()));
            continue;
        }
        let Some((input, expected)) = line.split_once('|').filter(|(_, e)| !e.contains('|')) else {
            failures.push(format!("line {lineno}: malformed line {line:?}"));
            continue;
        };
        ran += 1;
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let got = match lexer.process_words(input, &env) {
            Ok(expanded) => expanded.value,
            Err(_) => vec!["error".to_string()],
        };
        if got != expected {
            failures.push(format!(
                "line {lineno}: {input:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    report("wordsTest", ran, 20, &failures);
}
