//! `rbuild debug`: a shell where a RUN failed (a kept failure, see
//! [`kept_failure`](crate::engine::kept_failure)) or in a stored image, and `--list` of the
//! kept failures. The shell's exit status is rbuild's.


use clap::Parser;
use rbuild_sandbox::Isolation;
use rbuild_store::Store;

use super::common::{open_store, parse_args};
use super::human;
use super::table::Table;
use crate::cli::args::IsolationArg;
use crate::cli::failure::Failure;
use crate::cli::shell::open_shell;
use crate::engine::debug_shell::ShellTarget;
use crate::engine::kept_failure;

/// Open a shell where a RUN failed, or in an image of the store.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild debug",
    override_usage = "rbuild debug [BUILD|last] [--initial] [-- CMD…]\n       rbuild debug --image IMAGE [-- CMD…]\n       rbuild debug --target STAGE [-f FILE] [--build-arg K=V…] [PATH] [-- CMD…]\n       rbuild debug --list"
)]
pub struct DebugArgs {
    /// The kept failure: its id (or the start of it), or `last`, the newest; with --target,
    /// the build context (default `.`)
    #[arg(value_name = "BUILD")]
    pub failure: Option<String>,

    /// Open the shell over the step's parent, before its command ran
    #[arg(long)]
    pub initial: bool,

    /// Open the shell in this image of the store instead (name, or id)
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["failure", "initial", "list"])]
    pub image: Option<String>,

    /// Build the context's Dockerfile up to this stage, then open the shell in the result
    /// (buildx's --invoke)
    #[arg(long, value_name = "STAGE", conflicts_with_all = ["image", "initial", "list"])]
    pub target: Option<String>,

    /// With --target: the Dockerfile (as `rbuild build -f`)
    #[arg(short = 'f', long = "file", value_name = "FILE", requires = "target")]
    pub file: Option<String>,

    /// With --target: a build argument (as `rbuild build --build-arg`)
    #[arg(long = "build-arg", value_name = "K[=V]", requires = "target")]
    pub build_args: Vec<String>,

    /// Isolation of the shell in --image or --target (a kept failure's shell runs as its step did)
    #[arg(long, value_enum)]
    pub isolation: Option<IsolationArg>,

    /// List the kept failures: id, when, step, Dockerfile:line, command
    #[arg(long, conflicts_with_all = ["failure", "initial"])]
    pub list: bool,

    /// The command to run instead of /bin/sh
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<DebugArgs>(args)? else {
        return Ok(());
    };
    if args.isolation.is_some() && args.image.is_none() && args.target.is_none() {
        return Err(Failure::Usage("--isolation needs --image or --target (a kept failure's shell runs as its step did)".into()));
    }
    let isolation = match args.isolation {
        Some(IsolationArg::Chroot) => Isolation::Chroot,
        _ => Isolation::Namespaces,
    };
    let image = match &args.target {
        Some(stage) => Some(build_stage(stage, &args)?),
        None => args.image.clone(),
    };
    let store = open_store()?;
    if args.list {
        return list(&store);
    }
    let target = match image {
        Some(reference) => ShellTarget::Image { reference, isolation },
        None => ShellTarget::Failure { id: args.failure.unwrap_or_else(|| "last".into()), initial: args.initial },
    };
    open_shell(&store, &target, (!args.command.is_empty()).then_some(args.command))
}

/// `--target STAGE`: builds the stage as `rbuild build --target STAGE` would (same flags, same
/// cache, progress on stderr) and returns the built image's id, which the shell opens.
fn build_stage(stage: &str, args: &DebugArgs) -> Result<String, Failure> {
    let iidfile = tempfile::NamedTempFile::new().map_err(|e| Failure::Build(anyhow::Error::new(e).context("creating the build's image id file")))?;
    let mut argv = vec!["rbuild build".to_string(), "--target".into(), stage.into(), "--iidfile".into()];
    argv.push(iidfile.path().display().to_string());
    if let Some(file) = &args.file {
        argv.extend(["--file".into(), file.clone()]);
    }
    for build_arg in &args.build_args {
        argv.extend(["--build-arg".into(), build_arg.clone()]);
    }
    if let Some(IsolationArg::Chroot) = args.isolation {
        argv.extend(["--isolation".into(), "chroot".into()]);
    }
    argv.push(args.failure.clone().unwrap_or_else(|| ".".into()));
    crate::cli::build::run_argv(argv)?;
    let id = std::fs::read_to_string(iidfile.path()).map_err(|e| Failure::Build(anyhow::Error::new(e).context("reading the built image's id")))?;
    Ok(id.trim().to_string())
}


fn list(store: &Store) -> Result<(), Failure> {
    let kept = kept_failure::list(store).map_err(|e| Failure::Build(e.into()))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let mut table = Table::new(&["ID", "CREATED", "STEP", "EXIT", "COMMAND"]);
    for failure in &kept {
        let created = format!("{} ago", human::duration(now - failure.record.created));
        let (step, exit, command) = match &failure.run {
            Some(run) => (format!("{}:{}", run.file, run.line), run.exit.clone(), rbuild_frontend::excerpt::excerpt(&run.instruction).into_owned()),
            None => ("?".into(), "?".into(), "(recorded by another version of rbuild)".into()),
        };
        table.row(vec![failure.record.id.clone(), created, step, exit, command]);
    }
    print!("{}", table.render());
    Ok(())
}
