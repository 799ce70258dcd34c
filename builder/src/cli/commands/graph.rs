//! `rbuild graph [OPTIONS] PATH`: the graph a build with the same arguments
//! would execute, as Graphviz DOT or SVG, optionally coloured by the timings of
//! the last build of the Dockerfile.

use std::cell::RefCell;
use std::io::{self, Write as _};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context as _};
use clap::{Parser, ValueEnum};
use rbuild_frontend::graph::{ImageMeta, Platform};
use rbuild_frontend::lower::{ImageResolver, LowerOptions};
use rbuild_store::Store;

use crate::cli::args::DockerfileArgs;
use crate::cli::failure::Failure;
use crate::engine::named_contexts::{ContextSource, NamedContexts};
use crate::engine::plan::plan_build;
use crate::engine::timings::read_timings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT text
    Dot,
    /// An SVG picture, drawn by graphviz's `dot`
    Svg,
}

/// Print the build graph of a Dockerfile: stages, steps, `--from` and context edges.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild graph",
    override_usage = "rbuild graph [OPTIONS] PATH",
    after_help = "Examples:\n  rbuild graph . | dot -Tpng > graph.png\n  rbuild graph --format svg --timings . > graph.svg"
)]
pub struct GraphArgs {
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,

    /// Output format
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,

    /// Colour the steps by how long the last build of this Dockerfile ran them, and mark cached ones
    #[arg(long)]
    pub timings: bool,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let args = match GraphArgs::try_parse_from(args) {
        Ok(args) => args,
        Err(error) => return Failure::from_clap(error).map_or(Ok(()), Err),
    };
    let input = args.dockerfile.read()?;
    let source = &input.dockerfile;
    if args.timings && source.path.is_none() {
        return Err(Failure::Usage(
            "--timings needs the Dockerfile as a file: builds of a Dockerfile read from stdin record no timings".into(),
        ));
    }

    let store = Store::open(Store::default_root()).context("opening rbuild's store")?;
    let resolver = LenientResolver { store: &store, contexts: &input.named_contexts, missing: RefCell::new(Vec::new()) };
    let options = LowerOptions { build_args: input.build_args.clone(), target: args.dockerfile.target.clone(), platform: Platform::host() };
    let mut warn = |message: &str| eprintln!("WARNING: {message}");
    let graph = plan_build(&source.name, &source.text, &options, &resolver, &mut warn).and_then(|plan| plan.graph).map_err(|error| Failure::located(error, &source.text))?;
    for reference in resolver.missing.borrow().iter() {
        warn(&format!(
            "base image {reference:?} is not in rbuild's store: drawn without its config (ONBUILD triggers, ENV)"
        ));
    }

    let timings = match &source.path {
        Some(path) if args.timings => Some(read_timings(store.root(), path)?),
        _ => None,
    };
    let title = source.path.as_ref().map_or_else(|| "Dockerfile (stdin)".to_string(), |p| p.display().to_string());
    let dot = crate::cli::dot::render(&graph, &title, timings.as_ref());
    let output = match args.format {
        GraphFormat::Dot => dot.into_bytes(),
        GraphFormat::Svg => render_svg(&dot)?,
    };
    let mut stdout = io::stdout().lock();
    stdout.write_all(&output).and_then(|()| stdout.flush()).context("writing the graph to stdout")?;
    Ok(())
}

/// Base images from the store and `--build-context`s, like a build; one that is not there
/// yet (never built or loaded, or in an archive or layout a build would import) is drawn
/// anyway with an empty config, because the graph's shape only depends on its ONBUILD
/// triggers, which are rare.
struct LenientResolver<'a> {
    store: &'a Store,
    contexts: &'a NamedContexts,
    missing: RefCell<Vec<String>>,
}

impl ImageResolver for LenientResolver<'_> {
    fn resolve(&self, reference: &str, _: &Platform) -> Result<ImageMeta, String> {
        let image = match self.contexts.find(reference).map(|c| &c.source) {
            Some(ContextSource::Image(image)) => image.full(),
            Some(_) => return Ok(self.not_stored(reference)),
            None => reference.to_string(),
        };
        match self.store.lookup(&image) {
            Ok(Some(image)) => Ok(image.config.meta()),
            Ok(None) => Ok(self.not_stored(reference)),
            Err(e) => Err(format!("looking up image {reference:?}: {e}")),
        }
    }

    fn is_named_directory(&self, name: &str) -> bool {
        matches!(self.contexts.find(name).map(|c| &c.source), Some(ContextSource::Directory(_)))
    }
}

impl LenientResolver<'_> {
    /// An empty config for an image the store does not have, noted for a warning.
    fn not_stored(&self, reference: &str) -> ImageMeta {
        let mut missing = self.missing.borrow_mut();
        if !missing.iter().any(|m| m == reference) {
            missing.push(reference.to_string());
        }
        ImageMeta::empty()
    }
}

/// Runs graphviz's `dot -Tsvg` on `dot`.
fn render_svg(dot: &str) -> anyhow::Result<Vec<u8>> {
    let mut child = match Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(anyhow!(
                "--format svg runs graphviz's `dot`, which is not on PATH: install the graphviz package \
                 (apt-get install graphviz), or print DOT with --format dot"
            ))
        }
        Err(e) => return Err(e).context("starting graphviz's `dot`"),
    };
    // Written from a thread: `dot` may fill its output pipe before it has read all of its input.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let text = dot.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let output = child.wait_with_output().context("running graphviz's `dot`")?;
    let written = writer.join().map_err(|_| anyhow!("writing to graphviz's `dot` panicked"))?;
    if !output.status.success() {
        return Err(anyhow!(
            "graphviz's `dot -Tsvg` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    written.context("writing the graph to graphviz's `dot`")?;
    Ok(output.stdout)
}
