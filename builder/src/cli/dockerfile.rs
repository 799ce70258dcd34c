//! What a Dockerfile is built from, as the command line gives it: the context directory,
//! the Dockerfile (`-f`, `-f -` or the context's), build args and named contexts. `rbuild
//! build` and `rbuild graph` both read it here, so they agree on every mistake.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::args::{key_values, DockerfileArgs};
use crate::cli::failure::Failure;
use crate::engine::named_contexts::NamedContexts;
use crate::engine::settings::DockerfileSource;

/// The checked inputs of a build or a graph.
pub struct DockerfileInput {
    pub context: PathBuf,
    pub dockerfile: DockerfileSource,
    pub build_args: std::collections::BTreeMap<String, String>,
    pub named_contexts: NamedContexts,
}

impl DockerfileArgs {
    /// Checks the context, reads the Dockerfile, and parses build args and named contexts.
    /// Each mistake is a usage error (exit 2), as in `docker build`.
    pub fn read(&self) -> Result<DockerfileInput, Failure> {
        let usage = |m: String| Failure::Usage(m);
        let context = self.context.clone();
        if context.as_os_str() == "-" {
            return Err(usage("a build context on stdin is not supported: give a directory".into()));
        }
        // A context that is not there is a mistake on the command line, whichever way it
        // is missing.
        if !context.exists() {
            return Err(usage(format!("unable to prepare context: path {:?} does not exist", context.display().to_string())));
        }
        if !context.is_dir() {
            return Err(usage(format!("unable to prepare context: {:?} is not a directory", context.display().to_string())));
        }
        let dockerfile = read_dockerfile(self.file.as_deref(), &context)?;
        let build_args = key_values(&self.build_args, true, "--build-arg").map_err(usage)?;
        let named_contexts = NamedContexts::parse(&self.build_contexts).map_err(usage)?;
        Ok(DockerfileInput { context, dockerfile, build_args, named_contexts })
    }
}

/// Reads the Dockerfile: `-f -` from stdin, `-f PATH`, or `CONTEXT/Dockerfile`.
/// A `-f` file that is not there (or is no file) is a command-line mistake.
fn read_dockerfile(file: Option<&str>, context: &Path) -> Result<DockerfileSource, Failure> {
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

