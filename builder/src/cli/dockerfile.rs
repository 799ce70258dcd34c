//! Reading the Dockerfile named on the command line (`-f`, `-f -` or the context's).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::failure::Failure;

/// A Dockerfile as read: where from, the name errors call it by, its text.
pub struct DockerfileSource {
    /// `None` when it came from stdin.
    pub path: Option<PathBuf>,
    pub name: String,
    pub text: String,
}

/// Reads the Dockerfile: `-f -` from stdin, `-f PATH`, or `CONTEXT/Dockerfile`.
/// A `-f` file that is not there (or is no file) is a command-line mistake.
pub fn read_dockerfile(file: Option<&str>, context: &Path) -> Result<DockerfileSource, Failure> {
    match file {
        Some("-") => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .context("reading the Dockerfile from stdin")?;
            Ok(DockerfileSource { path: None, name: "Dockerfile".into(), text })
        }
        _ => {
            let path = file.map(PathBuf::from).unwrap_or_else(|| context.join("Dockerfile"));
            let text = match (fs::read_to_string(&path), file) {
                (Ok(text), _) => text,
                (Err(e), Some(file)) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::IsADirectory) => {
                    return Err(Failure::Usage(format!(
                        "the Dockerfile given with -f, {file:?}, does not exist or is not a file"
                    )))
                }
                (Err(e), _) => return Err(anyhow::Error::new(e).context(format!("reading the Dockerfile {}", path.display())).into()),
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "Dockerfile".into());
            Ok(DockerfileSource { path: Some(path), name, text })
        }
    }
}

