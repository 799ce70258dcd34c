//! `--chmod` values: an octal mode (`0755`, at most `07777`) or a symbolic mode
//! in the style of chmod(1) (`u+x`, `go-w`, `a=rX,u+s`), applied with a zero umask.

use super::error::{FileOpError, Result};

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

/// A parsed `--chmod` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ModeSpec {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One comma-separated part of a symbolic mode: who it affects and its actions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Clause {
    /// Mask of the classes affected (special bits included).
    who: u32,
    actions: Vec<Action>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Action {
    op: u8,
    perms: Perms,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Perms {
    /// Letters among `rwxXst`.
    Letters { bits: u32, cond_exec: bool },
    /// Copy the permissions of one class: `u`, `g` or `o`.
    CopyFrom(u8),
}

impl ModeSpec {
    pub(crate) fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| FileOpError::InvalidChmod {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
            let mode = u32::from_str_radix(spec, 8)
                .map_err(|_| bad("an octal mode uses the digits 0 to 7"))?;
            if mode > 0o7777 {
                return Err(bad("an octal mode is at most 07777"));
            }
            return Ok(ModeSpec::Octal(mode));
        }
        let clauses = spec
            .split(',')
            .map(|c| {
                parse_clause(c)
                    .ok_or_else(|| bad("expected an octal mode or clauses like u+x,go-w"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ModeSpec::Symbolic(clauses))
    }

    /// The mode an entry gets, from its own mode (`0o7777` bits).
    pub(crate) fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            ModeSpec::Octal(m) => *m,
            ModeSpec::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for clause in clauses {
                    for action in &clause.actions {
                        m = action.apply(m, clause.who, is_dir);
                    }
                }
                m
            }
        }
    }

    /// The mode of directories the copy has to create on the way to its
    /// destination: an octal `--chmod` applies to them too, a symbolic one does not.
    pub(crate) fn created_dir_mode(&self) -> u32 {
        match self {
            ModeSpec::Octal(m) => *m,
            ModeSpec::Symbolic(_) => 0o755,
        }
    }
}

impl Action {
    fn apply(&self, m: u32, who: u32, is_dir: bool) -> u32 {
        let bits = match self.perms {
            Perms::Letters { bits, cond_exec } => {
                // `X`: execute only for directories and files someone may execute.
                let x = if cond_exec && (is_dir || m & 0o111 != 0) {
                    0o111
                } else {
                    0
                };
                bits | x
            }
            Perms::CopyFrom(class) => {
                let rwx = match class {
                    b'u' => (m >> 6) & 7,
                    b'g' => (m >> 3) & 7,
                    _ => m & 7,
                };
                rwx * 0o111
            }
        };
        let bits = bits & who;
        match self.op {
            b'+' => m | bits,
            b'-' => m & !bits,
            // `=`: the classes' permissions are replaced.
            _ => (m & !who) | bits,
        }
    }
}

fn parse_clause(clause: &str) -> Option<Clause> {
    let bytes = clause.as_bytes();
    let mut i = 0;
    let mut who = 0;
    while i < bytes.len() && matches!(bytes[i], b'u' | b'g' | b'o' | b'a') {
        who |= match bytes[i] {
            b'u' => USER,
            b'g' => GROUP,
            b'o' => OTHER,
            _ => USER | GROUP | OTHER,
        };
        i += 1;
    }
    if who == 0 {
        // No class given: all of them (the umask is zero).
        who = USER | GROUP | OTHER;
    }
    let mut actions = Vec::new();
    while i < bytes.len() {
        let op = bytes[i];
        if !matches!(op, b'+' | b'-' | b'=') {
            return None;
        }
        i += 1;
        let perms = if i < bytes.len() && matches!(bytes[i], b'u' | b'g' | b'o') {
            i += 1;
            Perms::CopyFrom(bytes[i - 1])
        } else {
            let mut bits = 0;
            let mut cond_exec = false;
            while i < bytes.len() && matches!(bytes[i], b'r' | b'w' | b'x' | b'X' | b's' | b't') {
                match bytes[i] {
                    b'r' => bits |= 0o444,
                    b'w' => bits |= 0o222,
                    b'x' => bits |= 0o111,
                    b'X' => cond_exec = true,
                    b's' => bits |= 0o6000,
                    _ => bits |= 0o1000,
                }
                i += 1;
            }
            Perms::Letters { bits, cond_exec }
        };
        actions.push(Action { op, perms });
    }
    if actions.is_empty() {
        return None;
    }
    Some(Clause { who, actions })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(spec: &str, mode: u32, is_dir: bool) -> u32 {
        ModeSpec::parse(spec).unwrap().apply(mode, is_dir)
    }

    #[test]
    fn octal_replaces_the_mode() {
        assert_eq!(ModeSpec::parse("0755").unwrap(), ModeSpec::Octal(0o755));
        assert_eq!(ModeSpec::parse("4755").unwrap().apply(0o600, false), 0o4755);
        assert_eq!(ModeSpec::parse("640").unwrap().created_dir_mode(), 0o640);
        assert!(ModeSpec::parse("0778").is_err());
        assert!(ModeSpec::parse("17777").is_err());
    }

    #[test]
    fn symbolic_modes_follow_chmod() {
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(sym("a=r", 0o755, false), 0o444);
        assert_eq!(sym("u=rwx,g=rx,o=", 0o000, false), 0o750);
        assert_eq!(sym("g=u", 0o740, false), 0o770);
        assert_eq!(sym("u+s", 0o755, false), 0o4755);
        assert_eq!(sym("+t", 0o755, true), 0o1755);
        assert_eq!(ModeSpec::parse("u+x").unwrap().created_dir_mode(), 0o755);
    }

    #[test]
    fn capital_x_only_for_dirs_and_executables() {
        assert_eq!(sym("a+X", 0o644, false), 0o644);
        assert_eq!(sym("a+X", 0o744, false), 0o755);
        assert_eq!(sym("a+X", 0o600, true), 0o711);
    }

    #[test]
    fn invalid_values_are_rejected_with_the_value() {
        for bad in ["", "u", "u+x,", "z+x", "u+q", "rwx"] {
            let err = ModeSpec::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
