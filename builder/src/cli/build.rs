//! `rbuild build`: from command-line arguments to a stored, exported image.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _, Result};
use rbuild_frontend::graph::Platform;
use rbuild_frontend::lower::LowerOptions;
use rbuild_store::writeback::EarlyWriteback;
use rbuild_store::{write_archive, ArchiveFormat, Compression, Reference, Store};

use crate::cli::args::{key_values, BuildArgs, IsolationArg, NetworkArg, ProgressMode};
use rbuild_sandbox::{Isolation, NetworkMode};
use crate::engine::error::BuildError;
pub use crate::cli::failure::Failure;
use crate::engine::execute::{CachePolicy, Executor, FsState, Limits, SharedProgress};
use crate::engine::output::{parse_output, Destination, OutputSpec};
use crate::cli::dockerfile::read_dockerfile;
use crate::engine::plan::plan_build;
use crate::cli::progress::{BuiltImage, PlainProgress, Progress, QuietProgress};
use crate::cli::progress_tty::TtyProgress;
use crate::engine::resolver::{BaseImageOptions, BaseImageResolver};
use crate::cli::snippet::snippet;

/// Everything about the request that can be checked before building.
struct Request {
    context: PathBuf,
    dockerfile_path: Option<PathBuf>,
    dockerfile_name: String,
    dockerfile_text: String,
    tags: Vec<Reference>,
    build_args: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    outputs: Vec<OutputSpec>,
    platform: Platform,
    source_date_epoch: Option<i64>,
}

pub fn run(args: BuildArgs) -> Result<(), Failure> {
    let request = check_request(&args)?;
    build(&args, &request).map_err(|failure| match failure {
        Failure::Build(error) => match error.downcast::<BuildError>() {
            Ok(error) => locate(error, &request.dockerfile_text),
            Err(error) => Failure::Build(error),
        },
        other => other,
    })
}

/// Attaches the Dockerfile lines an error points at.
fn locate(error: BuildError, dockerfile: &str) -> Failure {
    let lines = match &error {
        BuildError::Dockerfile { error, .. } => Some((error.line, error.line)),
        BuildError::Step { location, .. } => Some((location.start_line, location.end_line)),
        _ => None,
    };
    match lines {
        Some((start, end)) => Failure::Located { snippet: snippet(dockerfile, start, end), error },
        None => Failure::Build(error.into()),
    }
}

fn build(args: &BuildArgs, request: &Request) -> Result<(), Failure> {
    let quiet = args.quiet || args.progress == ProgressMode::Quiet;
    // stderr is not held locked: the signal handler thread writes to it too.
    let progress: Box<dyn Progress + Send> = match (quiet, args.progress) {
        (true, _) => Box::new(QuietProgress::new(io::stderr())),
        (false, ProgressMode::Rawjson) => Box::new(crate::cli::progress::RawJsonProgress::new(io::stderr())),
        (false, ProgressMode::Tty) => Box::new(TtyProgress::new()),
        (false, ProgressMode::Auto) if io::stderr().is_terminal() => Box::new(TtyProgress::new()),
        _ => Box::new(PlainProgress::new(io::stderr())),
    };
    let started = std::time::Instant::now();

    let store = Store::open(Store::default_root()).context("opening rbuild's store")?;
    clean_up_on_signals(&store)?;
    let progress: SharedProgress = Arc::new(Mutex::new(progress));
    let result = build_in_store(args, request, &store, &progress);
    if result.is_err() && INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        // The signal thread is cleaning up and will exit the process.
        loop {
            std::thread::park();
        }
    }
    let mut shown = progress.lock().unwrap_or_else(|p| p.into_inner());
    match &result {
        Ok(()) => shown.finished(started.elapsed()),
        Err(Failure::Build(error)) => shown.error(&format!("{error:#}")),
        Err(Failure::Located { error, .. }) => shown.error(&error.to_string()),
        Err(Failure::Usage(message)) => shown.error(message),
    }
    drop(shown);
    // Temp files of this build are dropped by now; the empty area goes too.
    let _ = store.remove_own_temp();
    result
}

/// Set once SIGINT or SIGTERM arrived: the build's own error is then only a
/// consequence of the interruption and is not reported.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// On SIGINT or SIGTERM: end the running RUN step, remove this process's
/// temp files, and exit as a process killed by that signal would (128 + n).
fn clean_up_on_signals(store: &Store) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT/SIGTERM handler")?;
    let store = store.clone();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("rbuild: interrupted, cleaning up");
            rbuild_sandbox::kill_running_sandboxes();
            let _ = store.remove_own_temp();
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

fn build_in_store(args: &BuildArgs, request: &Request, store: &Store, shared: &SharedProgress) -> Result<(), Failure> {
    let store = store.clone();
    let progress = || shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let options = LowerOptions {
        build_args: request.build_args.clone(),
        target: args.target.clone(),
        platform: request.platform.clone(),
    };
    let log = |line: &str| progress().info(line);
    let resolver = BaseImageResolver::new(&store, base_image_options(args, request)?, &log);
    let graph = plan_build(&request.dockerfile_name, &request.dockerfile_text, &options, &resolver, &mut |warning| {
        progress().warning(warning)
    })?;
    let named_contexts = resolver.named_directories();
    drop(resolver);

    let cache_policy = if args.no_cache {
        CachePolicy::Ignore
    } else if !args.no_cache_filter.is_empty() {
        CachePolicy::IgnoreStages(args.no_cache_filter.iter().map(|s| s.to_ascii_lowercase()).collect())
    } else {
        CachePolicy::Use
    };
    let graph = Arc::new(graph);
    let executor = Executor {
        cache_policy,
        explain_cache: args.explain_cache,
        dockerfile_identity: dockerfile_identity(request),
        store: store.clone(),
        graph: graph.clone(),
        context_dir: request.context.clone(),
        dockerfile_path: request.dockerfile_path.clone(),
        dockerfile_name: request.dockerfile_name.clone(),
        source_date_epoch: request.source_date_epoch,
        layer_compression: layer_compression(&request.outputs),
        default_network: match args.network {
            NetworkArg::None => NetworkMode::None,
            NetworkArg::Default | NetworkArg::Host => NetworkMode::Host,
        },
        isolation: match args.isolation {
            IsolationArg::Namespaces => Isolation::Namespaces,
            IsolationArg::Chroot => Isolation::Chroot,
        },
        limits: Limits { jobs: args.jobs, cpu: args.jobs.unwrap_or_else(default_jobs) },
        progress: shared.clone(),
        named_contexts,
    };
    let built = executor.run(&request.labels)?;
    record_timings(&store, &graph, request, &built.timings, &mut |w| progress().warning(w));
    let image_id = built.image.config_digest.to_string();
    progress().info(&format!("writing image {image_id} done"));
    for tag in &request.tags {
        store
            .tag(tag, &built.image.manifest_digest)
            .with_context(|| format!("tagging the image as {}", tag.familiar()))?;
        progress().info(&format!("naming to {} done", tag.full()));
    }
    for output in &request.outputs {
        export(&store, &built.image, &built.state, request, output)?;
    }
    if let Some(path) = &args.iidfile {
        fs::write(path, &image_id).with_context(|| format!("writing --iidfile {}", path.display()))?;
    }
    let result = built_image(&store, &built.image, &request.tags)?;
    if let Some(path) = &args.metadata_file {
        let text = serde_json::to_string_pretty(&result.metadata()).expect("JSON values serialise");
        fs::write(path, text + "\n").with_context(|| format!("writing --metadata-file {}", path.display()))?;
    }
    progress().image_built(&result);
    let quiet = args.quiet || args.progress == ProgressMode::Quiet;
    if quiet && !request.outputs.iter().any(OutputSpec::writes_stdout) {
        println!("{image_id}");
    }
    Ok(())
}

/// What the build made, for `--metadata-file` and the rawjson progress.
fn built_image(store: &Store, image: &rbuild_store::StoredImage, tags: &[Reference]) -> Result<BuiltImage> {
    let manifest = &image.manifest_digest;
    let bytes = store.read_blob(manifest).with_context(|| format!("reading the manifest {manifest}"))?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|m| m["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| rbuild_store::manifest::OCI_MANIFEST.to_string());
    Ok(BuiltImage {
        id: image.config_digest.to_string(),
        manifest_digest: manifest.to_string(),
        manifest_media_type: media_type,
        manifest_size: bytes.len() as u64,
        tags: tags.iter().map(|t| t.full()).collect(),
    })
}

/// Where base images come from: `--pull`, `--build-context`, `--insecure-registry`.
fn base_image_options(args: &BuildArgs, request: &Request) -> Result<BaseImageOptions, Failure> {
    Ok(BaseImageOptions {
        platform: request.platform.clone(),
        always_pull: args.pull,
        insecure_registries: crate::engine::pulling::insecure_registries(&args.insecure_registries).map_err(Failure::Usage)?,
        contexts: crate::engine::named_contexts::NamedContexts::parse(&args.build_contexts).map_err(Failure::Usage)?,
    })
}

fn check_request(args: &BuildArgs) -> Result<Request, Failure> {
    let usage = |m: String| Failure::Usage(m);
    let context = args.context.clone();
    if args.context.as_os_str() == "-" {
        return Err(usage("a build context on stdin is not supported: give a directory".into()));
    }
    // A context that is not there is a mistake on the command line, as in
    // `docker build` (exit 2), whichever way it is missing.
    if !context.exists() {
        return Err(usage(format!("unable to prepare context: path {:?} does not exist", context.display().to_string())));
    }
    if !context.is_dir() {
        return Err(usage(format!("unable to prepare context: {:?} is not a directory", context.display().to_string())));
    }
    let dockerfile = read_dockerfile(args.file.as_deref(), &context)?;
    let (dockerfile_path, dockerfile_name, dockerfile_text) = (dockerfile.path, dockerfile.name, dockerfile.text);
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t).map_err(|e| usage(format!("invalid tag {t:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let build_args = key_values(&args.build_args, true, "--build-arg").map_err(usage)?;
    let labels = key_values(&args.labels, false, "--label").map_err(usage)?;
    let outputs = args
        .outputs
        .iter()
        .map(|o| parse_output(o).map_err(|e| usage(format!("invalid --output {o:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if outputs.iter().filter(|o| o.writes_stdout()).count() > 1 {
        return Err(usage("only one --output can write to stdout".into()));
    }
    let platform = match &args.platform {
        None => Platform::host(),
        Some(text) => {
            let wanted = Platform::parse(text).map_err(usage)?;
            if !wanted.matches(&Platform::host()) {
                return Err(usage(format!(
                    "platform {text} is not supported yet: rbuild builds for the host platform ({}) only",
                    Platform::host()
                )));
            }
            Platform::host()
        }
    };
    let source_date_epoch = source_date_epoch(&build_args).map_err(usage)?;
    Ok(Request {
        context,
        dockerfile_path,
        dockerfile_name,
        dockerfile_text,
        tags,
        build_args,
        labels,
        outputs,
        platform,
        source_date_epoch,
    })
}

/// Records how long each step took, for `rbuild graph --timings`. A failure
/// to record is only a warning: the image is built.
fn record_timings(
    store: &Store,
    graph: &rbuild_frontend::graph::BuildGraph,
    request: &Request,
    timings: &[crate::engine::execute::StepTiming],
    warn: &mut dyn FnMut(&str),
) {
    let Some(path) = &request.dockerfile_path else { return };
    let steps = timings
        .iter()
        .map(|t| crate::engine::timings::StepTiming::new(graph.step(t.step), t.cached, t.seconds))
        .collect();
    if let Err(e) = crate::engine::timings::write_timings(store.root(), path, steps) {
        warn(&format!("could not record the build's timings: {e}"));
    }
}

/// How the step cache names the Dockerfile when it compares builds: its path
/// inside the context when it is there, so clones in other directories share
/// explanations; else its full path.
fn dockerfile_identity(request: &Request) -> String {
    let Some(path) = &request.dockerfile_path else { return "-".to_string() };
    let context = request.context.canonicalize().unwrap_or_else(|_| request.context.clone());
    let path = path.canonicalize().unwrap_or_else(|_| path.clone());
    path.strip_prefix(&context).unwrap_or(&path).display().to_string()
}

/// One step per CPU, as BuildKit runs as many steps as it can.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// `SOURCE_DATE_EPOCH` from `--build-arg` (as BuildKit takes it) or the environment.
/// The compression of the archive this build writes, if it writes one: its
/// layers are then stored that way, ready to be written as they are.
fn layer_compression(outputs: &[OutputSpec]) -> Compression {
    outputs
        .iter()
        .find_map(|output| match output {
            OutputSpec::Docker { .. } => Some(Compression::Gzip),
            OutputSpec::Oci { compression, .. } => Some(*compression),
            OutputSpec::RootfsTar { .. } | OutputSpec::Local { .. } => None,
        })
        .unwrap_or(Compression::None)
}

fn source_date_epoch(build_args: &BTreeMap<String, String>) -> Result<Option<i64>, String> {
    let value = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .filter(|v| !v.is_empty());
    value
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))
        })
        .transpose()
}

/// The names an image archive gives the image: the build's tags, then the
/// output's own `name=`s.
fn archive_names(request: &Request, names: &[Reference]) -> Vec<Reference> {
    let mut all = request.tags.clone();
    all.extend(names.iter().filter(|n| !request.tags.contains(n)).cloned());
    all
}

fn export(store: &Store, image: &rbuild_store::StoredImage, state: &FsState, request: &Request, output: &OutputSpec) -> Result<()> {
    match output {
        OutputSpec::Docker { dest, gzip, names } => write_to(dest, *gzip, |w| {
            write_archive(store, &[(image.clone(), archive_names(request, names))], &ArchiveFormat::Docker, w)
                .map_err(Into::into)
        }),
        OutputSpec::Oci { dest, compression, names } => write_to(dest, false, |w| {
            let format = ArchiveFormat::Oci { compression: *compression };
            write_archive(store, &[(image.clone(), archive_names(request, names))], &format, w).map_err(Into::into)
        }),
        OutputSpec::RootfsTar { dest } => {
            let staging = store.tempdir()?;
            state
                .rootfs()
                .materialize(staging.path())
                .context("assembling the image's filesystem")?;
            write_to(dest, false, |w| {
                rbuild_store::write_layer_tar(staging.path(), request.source_date_epoch, w)
                    .map(|_| ())
                    .map_err(Into::into)
            })
        }
        OutputSpec::Local { dir } => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            state
                .rootfs()
                .materialize(dir)
                .with_context(|| format!("writing the image's filesystem to {}", dir.display()))
        }
    }
}

/// Writes an output to stdout or atomically to a file (a temp file renamed
/// into place, so a failed build never leaves half an archive).
fn write_to(dest: &Destination, gzip: bool, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let wrap = |out: &mut dyn Write| -> Result<()> {
        if gzip {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            write(&mut encoder)?;
            encoder.finish()?;
            Ok(())
        } else {
            write(out)
        }
    };
    match dest {
        Destination::Stdout => {
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            wrap(&mut out)?;
            out.flush().context("writing to stdout")?;
            Ok(())
        }
        Destination::File(path) => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut file = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
            {
                let mut out = BufWriter::new(EarlyWriteback::new(file.as_file_mut()));
                wrap(&mut out)?;
                out.flush()?;
            }
            // A temp file is created 0600; an output is an ordinary file.
            use std::os::unix::fs::PermissionsExt;
            file.as_file().set_permissions(fs::Permissions::from_mode(0o644))?;
            file.as_file().sync_all()?;
            file.persist(path).map_err(|e| anyhow!("writing {}: {}", path.display(), e.error))?;
            Ok(())
        }
    }
}
