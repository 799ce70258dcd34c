//! `rbuild build`: from command-line arguments to a stored, exported image.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use rbuild_frontend::graph::Platform;
use rbuild_sandbox::{Isolation, NetworkMode};
use rbuild_store::registry::RegistryAccess;
use rbuild_store::{Compression, Reference, Store};

use crate::cli::args::{key_values, BuildArgs, IsolationArg, NetworkArg, OnErrorArg, ProgressMode};
use crate::cli::dockerfile::DockerfileInput;
pub use crate::cli::failure::Failure;
use crate::cli::progress::{finding_text, Finding, PlainProgress, Progress, QuietProgress, RawJsonProgress};
use crate::cli::progress_tty::TtyProgress;
use crate::engine::debug_shell::ShellTarget;
use crate::engine::execute::SharedProgress;
use crate::engine::output::{parse_output, Destination, OutputSpec};
use crate::engine::remote_cache::{parse_cache_from, parse_cache_to};
use crate::engine::pulling::{insecure_registries, registry_mirrors, unverified_tls_registries};
use crate::engine::secrets::{Secrets, SshAgents};
use crate::engine::settings::{default_jobs, source_date_epoch, BuildSettings, CachePolicy, Limits};

/// Runs `rbuild build` from an argument list (the first item names the command), parsed by
/// the same definitions as the command line: the way other commands build (`rbuild executor`
/// from kaniko's flags, `rbuild debug --target`).
pub fn run_argv(argv: Vec<String>) -> Result<(), Failure> {
    use clap::{CommandFactory, FromArgMatches};
    let parsed = BuildArgs::command()
        .try_get_matches_from(argv)
        .and_then(|m| BuildArgs::from_arg_matches(&m))
        .map_err(|e| Failure::from_clap(e).unwrap_or(Failure::Usage(String::new())))?;
    run(parsed)
}

pub fn run(args: BuildArgs) -> Result<(), Failure> {
    let settings = Arc::new(settings_from_args(&args)?);
    let result = build(&args, &settings);
    match (&result, args.on_error) {
        (Err(failure), OnErrorArg::Shell) => match failure.kept_failure() {
            Some(id) if io::stderr().is_terminal() => {
                // The error first, as without a shell; then the shell. The build failed
                // whatever the shell does.
                failure.report();
                let store = Store::open(Store::default_root()).context("opening rbuild's store")?;
                let target = ShellTarget::Failure { id: id.to_string(), initial: false };
                match crate::cli::shell::open_shell(&store, &target, None) {
                    Ok(()) | Err(Failure::Status(_)) => {}
                    Err(other) => other.report(),
                }
                Err(Failure::Status(1))
            }
            Some(_) => {
                eprintln!("note: --on-error=shell needs a terminal on stderr; the failed step is kept instead");
                result
            }
            None => result,
        },
        _ => result,
    }
}

fn build(args: &BuildArgs, settings: &Arc<BuildSettings>) -> Result<(), Failure> {
    let quiet = args.quiet || args.progress == ProgressMode::Quiet;
    // stderr is not held locked: the signal handler thread writes to it too.
    let progress: Box<dyn Progress + Send> = match (quiet, args.progress) {
        (true, _) => Box::new(QuietProgress::new(io::stderr())),
        (false, ProgressMode::Rawjson) => Box::new(RawJsonProgress::new(io::stderr())),
        (false, ProgressMode::Tty) => Box::new(TtyProgress::new()),
        (false, ProgressMode::Auto) if io::stderr().is_terminal() => Box::new(TtyProgress::new()),
        _ => Box::new(PlainProgress::new(io::stderr())),
    };
    let started = std::time::Instant::now();

    let store = Store::open(Store::default_root()).context("opening rbuild's store")?;
    clean_up_on_signals(&store)?;
    let progress: SharedProgress = Arc::new(Mutex::new(progress));
    let result = if args.check {
        crate::engine::plan::check(settings, &store, &progress)
            .map_err(|error| Failure::located(error, &settings.dockerfile.text))
            .and_then(|(findings, error)| {
                let reported = report_findings(args, settings, &progress, &findings);
                error.map_or(reported, |error| Err(Failure::located(error, &settings.dockerfile.text)))
            })
    } else {
        crate::engine::build::build(settings, &store, &progress, &mut io::stdout())
            .map_err(|error| Failure::located(error, &settings.dockerfile.text))
            .and_then(|image| finish(args, settings, &image))
    };
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
        Err(Failure::Status(_)) => {}
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

/// What the command line does with a built image: `--iidfile`, `--metadata-file`, the
/// rawjson result event, and the id on stdout with `-q`.
fn finish(args: &BuildArgs, settings: &BuildSettings, image: &crate::engine::events::BuiltImage) -> Result<(), Failure> {
    if let Some(path) = &args.iidfile {
        fs::write(path, &image.id).with_context(|| format!("writing --iidfile {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        let text = serde_json::to_string_pretty(&image.metadata()).expect("JSON values serialise");
        fs::write(path, text + "\n").with_context(|| format!("writing --metadata-file {}", path.display()))?;
    }
    let quiet = args.quiet || args.progress == ProgressMode::Quiet;
    if quiet && !settings.outputs.iter().any(OutputSpec::writes_stdout) {
        println!("{}", image.id);
    }
    Ok(())
}

/// What `--check` does with the findings: rawjson gives each as a `check` event, the
/// other modes print them on stdout, each with its fix. Any finding fails (exit 1).
fn report_findings(args: &BuildArgs, settings: &BuildSettings, progress: &SharedProgress, findings: &[Finding]) -> Result<(), Failure> {
    let file = &settings.dockerfile.name;
    if args.progress == ProgressMode::Rawjson && !args.quiet {
        let mut shown = progress.lock().unwrap_or_else(|p| p.into_inner());
        for finding in findings {
            shown.check(file, finding);
        }
    } else {
        let mut out = io::stdout().lock();
        for finding in findings {
            let _ = writeln!(out, "{}\n  fix: {}", finding_text(file, finding), finding.fix());
        }
    }
    match findings.len() {
        0 => Ok(()),
        n => Err(Failure::Build(anyhow::anyhow!("the build checks found {n} problem(s) in {file}"))),
    }
}

/// Resolves the command line into the build's settings, or says what is wrong with it.
fn settings_from_args(args: &BuildArgs) -> Result<BuildSettings, Failure> {
    let usage = |m: String| Failure::Usage(m);
    let DockerfileInput { context, dockerfile, build_args, named_contexts } = args.dockerfile.read()?;
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t).map_err(|e| usage(format!("invalid tag {t:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let labels = key_values(&args.labels, false, "--label").map_err(usage)?;
    let mut outputs = args
        .outputs
        .iter()
        .map(|o| parse_output(o).map_err(|e| usage(format!("invalid --output {o:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if args.push {
        outputs.push(OutputSpec::Registry { names: Vec::new(), compression: Compression::Gzip.into() });
    }
    let unnamed_push = |o: &OutputSpec| matches!(o, OutputSpec::Registry { names, .. } if names.is_empty());
    if tags.is_empty() && outputs.iter().any(unnamed_push) {
        return Err(usage("a push needs a name to push as: -t REGISTRY/REPOSITORY:TAG or name=".into()));
    }
    if outputs.iter().filter(|o| o.writes_stdout()).count() > 1 {
        return Err(usage("only one --output can write to stdout".into()));
    }
    let platforms = match &args.platform {
        None => vec![Platform::host()],
        Some(text) => parse_platforms(text).map_err(usage)?,
    };
    let one_image_to_stdout = |o: &OutputSpec| {
        matches!(o, OutputSpec::Docker { dest: Destination::Stdout, .. } | OutputSpec::RootfsTar { dest: Destination::Stdout })
    };
    if platforms.len() > 1 && outputs.iter().any(one_image_to_stdout) {
        return Err(usage(
            "a build for several platforms writes one docker (or tar) archive per platform, which cannot go to stdout: \
             give dest=FILE (FILE-linux-amd64.tar, … are written) or use -o type=oci for one archive with them all"
                .into(),
        ));
    }
    if platforms.len() > 1 && !(args.cache_to.is_empty() && args.cache_from.is_empty()) {
        // The shared cache is read and written per build graph; a multi-platform build has one
        // per platform, which the cache format does not tell apart yet.
        return Err(usage(
            "--cache-to and --cache-from work with one platform: build each platform with its own --platform and cache ref".into(),
        ));
    }
    let source_date_epoch = source_date_epoch(&build_args).map_err(usage)?;
    let cache_policy = if args.no_cache {
        CachePolicy::Ignore
    } else if !args.no_cache_filter.is_empty() {
        CachePolicy::IgnoreStages(args.no_cache_filter.iter().map(|s| s.to_ascii_lowercase()).collect())
    } else {
        CachePolicy::Use
    };
    let (isolation, isolation_reason) = match args.isolation {
        IsolationArg::Namespaces => (Isolation::Namespaces, None),
        IsolationArg::Chroot => (Isolation::Chroot, None),
        IsolationArg::Auto => {
            let choice = rbuild_sandbox::strongest_isolation().context("finding the isolation this environment allows")?;
            (choice.isolation, Some(choice.reason))
        }
    };
    Ok(BuildSettings {
        context,
        dockerfile,
        tags,
        build_args,
        target: args.dockerfile.target.clone(),
        labels,
        outputs,
        platforms,
        source_date_epoch,
        cache_policy,
        explain_cache: args.explain_cache,
        always_pull: args.pull,
        registry_access: RegistryAccess {
            insecure: insecure_registries(&args.insecure_registries).map_err(Failure::Usage)?,
            unverified_tls: unverified_tls_registries(&args.skip_tls_verify).map_err(Failure::Usage)?,
            unverified_tls_everywhere: false,
        },
        skip_tls_verify_pull: args.skip_tls_verify_pull,
        registry_mirrors: registry_mirrors(&args.registry_mirrors).map_err(Failure::Usage)?,
        named_contexts,
        network: match args.network {
            NetworkArg::None => NetworkMode::None,
            NetworkArg::Default | NetworkArg::Host => NetworkMode::Host,
        },
        isolation,
        limits: Limits { jobs: args.jobs, cpu: args.jobs.unwrap_or_else(default_jobs) },
        secrets: Secrets::parse(&args.secrets).map_err(usage)?,
        ssh: SshAgents::parse(&args.ssh).map_err(usage)?,
        cache_mount_dir: args.cache_mount_dir.clone(),
        keep_failures: args.on_error != OnErrorArg::Discard,
        isolation_reason,
        cache_to: args
            .cache_to
            .iter()
            .map(|spec| parse_cache_to(spec).map_err(|e| usage(format!("invalid --cache-to {spec:?}: {e}"))))
            .collect::<Result<_, _>>()?,
        cache_from: args
            .cache_from
            .iter()
            .map(|spec| parse_cache_from(spec).map_err(|e| usage(format!("invalid --cache-from {spec:?}: {e}"))))
            .collect::<Result<_, _>>()?,
    })
}


/// `--platform linux/amd64,linux/arm64`: the platforms, normalised, each once.
fn parse_platforms(text: &str) -> Result<Vec<Platform>, String> {
    let mut platforms: Vec<Platform> = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("invalid --platform {text:?}: an empty platform in the list"));
        }
        let platform = Platform::parse(part)?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    Ok(platforms)
}
