//! A debug shell (`rbuild debug`, `rbuild build --on-error=shell`) opened on rbuild's
//! terminal, or on its standard streams, and its exit status as rbuild's.

use std::io::IsTerminal;

use rbuild_sandbox::ExitKind;
use rbuild_store::Store;

use crate::cli::failure::Failure;
use crate::cli::terminal::with_shell_stdio;
use crate::engine::debug_shell::{DebugShell, ShellTarget};

/// Opens the shell over `target` on rbuild's terminal (or stdio) and waits for it; a shell
/// that exits non-zero is [`Failure::Status`] with its status.
pub fn open_shell(store: &Store, target: &ShellTarget, command: Option<Vec<String>>) -> Result<(), Failure> {
    let shell = DebugShell::open(store, target, command).map_err(|e| Failure::Build(e.into()))?;
    for note in &shell.notes {
        eprintln!("note: {note}");
    }
    if std::io::stdin().is_terminal() {
        eprintln!("rbuild: a shell in {}; exit it to return", shell.description);
    }
    let exit = with_shell_stdio(|stdio| shell.run(stdio))
        .map_err(|e| Failure::Build(anyhow::Error::new(e).context("setting up the shell's terminal")))?
        .map_err(|e| Failure::Build(e.into()))?;
    match exit {
        ExitKind::Code(0) => Ok(()),
        ExitKind::Code(code) => Err(Failure::Status(code.clamp(1, 255) as u8)),
        ExitKind::Signal(signal) => Err(Failure::Status((128 + signal).clamp(1, 255) as u8)),
    }
}
