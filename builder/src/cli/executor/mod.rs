//! `rbuild executor`: kaniko's command line, so that pipelines written for
//! `/kaniko/executor --context … --destination …` switch to rbuild by changing the image
//! name. The same binary started as `executor` (a symlink, as in rbuild's own image) runs
//! this command.
//!
//! `flags` reads kaniko's syntax, `translate` turns kaniko's options into an `rbuild build`
//! argument list, which `rbuild build`'s own clap definitions then parse: a kaniko build is
//! an rbuild build, with no settings of its own. What stays here is what kaniko does around a
//! build: unpacking a tar context, finding the Dockerfile the way kaniko does, the store
//! location of `--cache-dir`, and the digest files written from the build's result.

mod flags;
mod translate;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};


use crate::cli::build as build_command;
use crate::cli::failure::Failure;
use flags::{CommandLine, FlagError};
use translate::{ContextSource, KanikoOptions};

/// A kaniko command line rbuild cannot carry out.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error("invalid argument {value:?} for {flag}: {reason}")]
    Invalid { flag: &'static str, value: String, reason: String },
    #[error("you must provide --destination, or use --no-push")]
    NoDestination,
    #[error("--image-name-with-digest-file and --image-name-tag-with-digest-file need a --destination to name")]
    NameFileWithoutDestination,
    #[error("--cache with --no-push needs the cache's repository: --cache-repo REGISTRY/REPOSITORY")]
    CacheRepoNeeded,
    #[error("--context {context:?}: {scheme}:// contexts are not supported; give a directory, dir://DIR, tar://FILE.tar.gz or tar://stdin")]
    UnsupportedContext { context: String, scheme: String },
    #[error("--context {0:?} is not a directory")]
    ContextNotDirectory(PathBuf),
    #[error("please provide a valid path to a Dockerfile within the build context with --dockerfile: {0:?} is in neither the working directory nor the context")]
    DockerfileNotFound(String),
    #[error("unpacking the context {what}: {reason}")]
    Unpack { what: String, reason: String },
    #[error("writing {flag} {}: {source}", .path.display())]
    WriteFile {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the build reported no image digest for the digest files")]
    NoDigest,
}

impl ExecutorError {
    /// Exit 2 for a command-line mistake, as every rbuild command does; 1 for what failed
    /// while running.
    fn into_failure(self) -> Failure {
        match self {
            ExecutorError::Unpack { .. } | ExecutorError::WriteFile { .. } | ExecutorError::NoDigest => Failure::Build(self.into()),
            _ => Failure::Usage(self.to_string()),
        }
    }
}

/// Runs `rbuild executor ARGS…` (`args[0]` is the command's name).
pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let options = match flags::read(&args[1..]).map_err(|e| ExecutorError::from(e).into_failure())? {
        CommandLine::Help => {
            print!("{}", help());
            return Ok(());
        }
        CommandLine::Flags(given) => KanikoOptions::from_flags(given).map_err(ExecutorError::into_failure)?,
    };
    for note in &options.notes {
        eprintln!("rbuild executor: note: {note}");
    }
    if let (Some(dir), None) = (&options.cache_dir, std::env::var_os("RBUILD_ROOT")) {
        // kaniko's --cache-dir keeps base images between runs; rbuild's store keeps them
        // (and the step cache), so the store goes there. Nothing else has started yet.
        std::env::set_var("RBUILD_ROOT", dir);
    }
    let context = PreparedContext::prepare(&options).map_err(ExecutorError::into_failure)?;
    let dockerfile = find_dockerfile(options.dockerfile.as_deref().unwrap_or("Dockerfile"), context.dir())
        .map_err(ExecutorError::into_failure)?;
    let metadata = tempfile::NamedTempFile::new().map_err(|e| Failure::Build(anyhow::Error::new(e).context("creating the build's metadata file")))?;
    let build_args = options
        .build_args(context.dir(), &dockerfile, metadata.path())
        .map_err(ExecutorError::into_failure)?;
    build_command::run_argv(build_args)?;
    write_digest_files(&options, metadata.path()).map_err(ExecutorError::into_failure)
}

/// The context directory: the one given, or one in a temporary directory a tar was unpacked
/// into (removed when this is dropped).
enum PreparedContext {
    Given(PathBuf),
    Unpacked { _unpacked: tempfile::TempDir, dir: PathBuf },
}

impl PreparedContext {
    fn prepare(options: &KanikoOptions) -> Result<PreparedContext, ExecutorError> {
        let sub_path = |dir: &Path| options.context_sub_path.as_ref().map_or_else(|| dir.to_path_buf(), |sub| dir.join(sub));
        let prepared = match options.context_source()? {
            ContextSource::Dir(dir) => PreparedContext::Given(sub_path(&dir)),
            source => {
                let unpacked = match source {
                    ContextSource::TarFile(path) => {
                        let what = path.display().to_string();
                        unpack(fs::File::open(&path).map_err(|e| unpack_error(&what, e))?, &what)?
                    }
                    _ => unpack(io::stdin().lock(), "from stdin")?,
                };
                let dir = sub_path(unpacked.path());
                PreparedContext::Unpacked { _unpacked: unpacked, dir }
            }
        };
        if !prepared.dir().is_dir() {
            return Err(ExecutorError::ContextNotDirectory(prepared.dir().to_path_buf()));
        }
        Ok(prepared)
    }

    fn dir(&self) -> &Path {
        match self {
            PreparedContext::Given(dir) | PreparedContext::Unpacked { dir, .. } => dir,
        }
    }
}

/// Unpacks a (possibly compressed) tar of a context into a new temporary directory, confined
/// to it as the store confines a layer.
fn unpack(reader: impl Read, what: &str) -> Result<tempfile::TempDir, ExecutorError> {
    let dir = tempfile::Builder::new().prefix("rbuild-context-").tempdir().map_err(|e| unpack_error(what, e))?;
    let decoded = rbuild_store::compress::auto_decoder(reader).map_err(|e| unpack_error(what, e))?;
    rbuild_store::unpack_layer_tar(decoded, dir.path())
        .map_err(|e| ExecutorError::Unpack { what: what.to_string(), reason: e.to_string() })?;
    Ok(dir)
}

fn unpack_error(what: &str, e: io::Error) -> ExecutorError {
    ExecutorError::Unpack { what: what.to_string(), reason: e.to_string() }
}

/// kaniko's Dockerfile lookup: the path as given (absolute, or relative to the working
/// directory) when it exists, else relative to the context.
fn find_dockerfile(given: &str, context: &Path) -> Result<PathBuf, ExecutorError> {
    let candidates = [PathBuf::from(given), context.join(given)];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| std::path::absolute(&p).unwrap_or(p))
        .ok_or_else(|| ExecutorError::DockerfileNotFound(given.to_string()))
}

/// `--digest-file` (the digest), `--image-name-with-digest-file` (`REPOSITORY@DIGEST` a
/// line for each destination) and `--image-name-tag-with-digest-file`
/// (`REPOSITORY:TAG@DIGEST`), from the digest the build reported: the pushed manifest's.
fn write_digest_files(options: &KanikoOptions, metadata: &Path) -> Result<(), ExecutorError> {
    let wanted = [&options.digest_file, &options.image_name_digest_file, &options.image_name_tag_digest_file];
    if wanted.iter().all(|f| f.is_none()) {
        return Ok(());
    }
    let text = fs::read_to_string(metadata).map_err(|_| ExecutorError::NoDigest)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| ExecutorError::NoDigest)?;
    let digest = value["containerimage.digest"].as_str().ok_or(ExecutorError::NoDigest)?;
    let destinations = options.destinations()?;
    let write = |flag: &'static str, path: &Option<PathBuf>, text: String| match path {
        Some(path) => fs::write(path, text).map_err(|source| ExecutorError::WriteFile { flag, path: path.clone(), source }),
        None => Ok(()),
    };
    write("--digest-file", &options.digest_file, digest.to_string())?;
    let lines = |name: &dyn Fn(&rbuild_store::Reference) -> String| destinations.iter().map(|d| format!("{}@{digest}\n", name(d))).collect::<String>();
    write("--image-name-with-digest-file", &options.image_name_digest_file, lines(&|d| d.repository()))?;
    let with_tag = |d: &rbuild_store::Reference| format!("{}:{}", d.repository(), d.tag().unwrap_or("latest"));
    write("--image-name-tag-with-digest-file", &options.image_name_tag_digest_file, lines(&with_tag))
}

fn help() -> String {
    let mut text = String::from(
        "Usage: rbuild executor [FLAGS]   (or `executor [FLAGS]` through the symlink)\n\n\
         Builds like kaniko's executor: kaniko's flags, an rbuild build underneath.\n\
         `rbuild executor --context dir:///workspace --destination REGISTRY/APP:TAG`\n\nFlags:\n",
    );
    for name in flags::names() {
        text.push_str(&format!("  {name}\n"));
    }
    text.push_str("\nThe README's \"rbuild for kaniko users\" section says what each one does in rbuild.\n");
    text
}
