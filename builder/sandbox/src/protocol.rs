//! Messages the sandbox's child processes send back to rbuild over the report
//! pipe: why setup failed, which mount points they had to create, warnings,
//! and finally how the command ended.
//!
//! The pipe is close-on-exec, so the command never holds it: rbuild knows the
//! command started when the process that was going to exec it stops writing,
//! and learns the exit status from the intermediate process that waited for
//! it. Messages are `tag, u32 length, payload`.

use std::os::fd::RawFd;

/// What kind of failure a child reports; rbuild turns it into the matching
/// [`super::SandboxError`] variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Setup = 1,
    User = 2,
    Exec = 3,
    Overlay = 4,
    /// A run mount (`RUN --mount`) failed; the step is its target.
    Mount = 5,
}

/// A failure inside a child, before the command ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChildError {
    pub kind: FailureKind,
    pub step: String,
    pub message: String,
}

impl ChildError {
    pub fn setup(step: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ChildError {
            kind: FailureKind::Setup,
            step: step.into(),
            message: message.to_string(),
        }
    }

    pub fn of(kind: FailureKind, step: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ChildError {
            kind,
            step: step.into(),
            message: message.to_string(),
        }
    }
}

/// A path the sandbox created in the root filesystem only to mount on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stub {
    /// Relative to the root, without a leading `/`.
    pub rel: Vec<u8>,
    pub dir: bool,
}

/// A directory that existed in the layers below a stub, with the metadata it
/// had there: creating the stub copies it up, and if nothing else changes in
/// it, it is dropped from the diff again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ancestor {
    pub rel: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Report {
    Failure(ChildError),
    Stub(Stub),
    Ancestor(Ancestor),
    Warning(String),
    /// The raw `waitpid` status of the command.
    Status(i32),
}

const TAG_FAILURE: u8 = b'F';
const TAG_STUB: u8 = b'M';
const TAG_ANCESTOR: u8 = b'A';
const TAG_WARNING: u8 = b'W';
const TAG_STATUS: u8 = b'S';

impl Report {
    pub fn encode(&self) -> Vec<u8> {
        let (tag, payload) = match self {
            Report::Failure(e) => {
                let step = e.step.as_bytes();
                let step_len = step.len().min(u16::MAX as usize);
                let mut p = vec![e.kind as u8];
                p.extend_from_slice(&(step_len as u16).to_le_bytes());
                p.extend_from_slice(&step[..step_len]);
                p.extend_from_slice(e.message.as_bytes());
                (TAG_FAILURE, p)
            }
            Report::Stub(s) => {
                let mut p = vec![s.dir as u8];
                p.extend_from_slice(&s.rel);
                (TAG_STUB, p)
            }
            Report::Ancestor(a) => {
                let mut p = Vec::with_capacity(12 + a.rel.len());
                p.extend_from_slice(&a.mode.to_le_bytes());
                p.extend_from_slice(&a.uid.to_le_bytes());
                p.extend_from_slice(&a.gid.to_le_bytes());
                p.extend_from_slice(&a.rel);
                (TAG_ANCESTOR, p)
            }
            Report::Warning(w) => (TAG_WARNING, w.as_bytes().to_vec()),
            Report::Status(s) => (TAG_STATUS, s.to_le_bytes().to_vec()),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(tag);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Decodes everything a child wrote. The second value is false when the
    /// stream ends inside a message or holds an unknown one (a child killed
    /// while writing).
    pub fn decode_all(mut bytes: &[u8]) -> (Vec<Report>, bool) {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            if bytes.len() < 5 {
                return (out, false);
            }
            let tag = bytes[0];
            let len = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            if bytes.len() < 5 + len {
                return (out, false);
            }
            let p = &bytes[5..5 + len];
            bytes = &bytes[5 + len..];
            let report = match tag {
                TAG_FAILURE if p.len() >= 3 => {
                    let kind = match p[0] {
                        1 => FailureKind::Setup,
                        2 => FailureKind::User,
                        3 => FailureKind::Exec,
                        4 => FailureKind::Overlay,
                        5 => FailureKind::Mount,
                        _ => return (out, false),
                    };
                    let step_len = u16::from_le_bytes([p[1], p[2]]) as usize;
                    if p.len() < 3 + step_len {
                        return (out, false);
                    }
                    Report::Failure(ChildError {
                        kind,
                        step: String::from_utf8_lossy(&p[3..3 + step_len]).into_owned(),
                        message: String::from_utf8_lossy(&p[3 + step_len..]).into_owned(),
                    })
                }
                TAG_STUB if !p.is_empty() => Report::Stub(Stub {
                    dir: p[0] != 0,
                    rel: p[1..].to_vec(),
                }),
                TAG_ANCESTOR if p.len() >= 12 => {
                    let word = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
                    Report::Ancestor(Ancestor {
                        mode: word(0),
                        uid: word(4),
                        gid: word(8),
                        rel: p[12..].to_vec(),
                    })
                }
                TAG_WARNING => Report::Warning(String::from_utf8_lossy(p).into_owned()),
                TAG_STATUS if p.len() == 4 => {
                    Report::Status(i32::from_le_bytes([p[0], p[1], p[2], p[3]]))
                }
                _ => return (out, false),
            };
            out.push(report);
        }
        (out, true)
    }
}

/// The writing end of the report pipe, as a child holds it. Writes are raw
/// `write(2)` calls: children of a multi-threaded rbuild must not take locks
/// another thread may have held when it forked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reporter {
    pub fd: RawFd,
}

impl Reporter {
    pub fn send(&self, report: &Report) {
        let bytes = report.encode();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            // SAFETY: writes from a live buffer to a descriptor this process owns.
            let n = unsafe { libc::write(self.fd, rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                // rbuild is gone or closed the pipe: nobody is left to tell.
                return;
            }
            rest = &rest[n as usize..];
        }
    }

    /// Reports `error` and ends this child process.
    pub fn fail(&self, error: ChildError) -> ! {
        self.send(&Report::Failure(error));
        super::process::exit_child(super::process::SETUP_FAILED_STATUS)
    }
}
