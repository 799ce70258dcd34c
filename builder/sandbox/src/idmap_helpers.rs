//! Entering a user namespace with ranged id maps: newuidmap and newgidmap (setuid helpers)
//! must write the maps from outside the new namespace, so a child stays behind in the
//! current one and runs them once this process has unshared. The policy (which maps, what a
//! refusal means) is `userns`'s; this is the process choreography, behind the `Syscall` seam.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::error::SandboxError;
use super::idmap::{map_args, IdMapLine};
use super::process::{self, Forked};

/// Ranged mapping through the setuid helpers, run from a child that stayed
/// in the original namespace while this process unshares.
pub(crate) fn map_through_helpers(
    newuidmap: PathBuf,
    newgidmap: PathBuf,
    uid_map: &[IdMapLine],
    gid_map: &[IdMapLine],
    unshare: &dyn Fn() -> Result<(), SandboxError>,
) -> Result<(), SandboxError> {
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let go = process::pipe()?;
    let result = process::pipe()?;
    let jobs = [
        (newuidmap, map_args(uid_map)),
        (newgidmap, map_args(gid_map)),
    ];

    match process::fork().map_err(|e| SandboxError::sys("fork the id-mapping helper", e))? {
        Forked::Child => {
            drop(go.write);
            drop(result.read);
            process::die_with_parent(Some(me), None);
            let mut byte = [0u8; 1];
            let mut go_read = fs::File::from(go.read);
            if go_read.read(&mut byte).unwrap_or(0) == 0 {
                // The parent could not unshare and has already said why.
                process::exit_child(1);
            }
            let mut failure = String::new();
            for (tool, args) in &jobs {
                let outcome = Command::new(tool)
                    .arg(me.to_string())
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output();
                let (status, stderr) = match outcome {
                    Ok(out) if out.status.success() => continue,
                    Ok(out) => (
                        out.status.to_string(),
                        String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    ),
                    Err(e) => ("not started".to_string(), e.to_string()),
                };
                failure = [
                    tool.display().to_string(),
                    format!("{me} {}", args.join(" ")),
                    status,
                    stderr,
                ]
                .join("\0");
                break;
            }
            let mut out = fs::File::from(result.write);
            let _ = out.write_all(failure.as_bytes());
            process::exit_child(0)
        }
        Forked::Parent(helper) => {
            drop(go.read);
            drop(result.write);
            let unshared = unshare();
            if unshared.is_ok() {
                let mut go_write = fs::File::from(go.write);
                let _ = go_write.write_all(b"g");
            } else {
                // End-of-file tells the helper there is nothing to map.
                drop(go.write);
            }
            let mut failure = String::new();
            let _ = fs::File::from(result.read).read_to_string(&mut failure);
            let _ = process::wait_for(helper);
            unshared?;
            if !failure.is_empty() {
                let mut parts = failure.splitn(4, '\0').map(str::to_string);
                let mut next = || parts.next().unwrap_or_default();
                return Err(SandboxError::IdMapTool {
                    tool: next(),
                    args: next(),
                    status: next(),
                    stderr: next(),
                });
            }
            Ok(())
        }
    }
}
