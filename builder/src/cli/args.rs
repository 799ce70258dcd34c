//! The `rbuild` command line, shaped like `docker build`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum};

pub const AFTER_HELP: &str = "\
Examples:
  rbuild -t app:1.0 .                      build ./Dockerfile, keep the image in rbuild's store
  rbuild -t app:1.0 -o app.tar .           also write a `docker load` archive
  rbuild -t app:1.0 -o - . | docker load   stream the archive into Docker
  rbuild -f build/Dockerfile --target test --build-arg VERSION=2 .
  rbuild -o type=oci,dest=app.oci.tar,compression=zstd .
  rbuild -o type=local,dest=rootfs/ .      write the final filesystem to a directory

Environment:
  RBUILD_ROOT          the store (default $XDG_DATA_HOME/rbuild or ~/.local/share/rbuild, where
                       writable, else /tmp/rbuild-UID)
  SOURCE_DATE_EPOCH    image and history times; newer file times are clamped to it
  DOCKER_CONFIG        where registry credentials are read (config.json; default ~/.docker)
  RBUILD_INSECURE_REGISTRIES  more plain-HTTP registries, comma-separated
  RBUILD_MAX_EXPANSION_RATIO, RBUILD_MAX_EXPANDED_SIZE, RBUILD_MAX_ARCHIVE_ENTRIES
                       limits on what a layer or ADD archive may expand to (0: none)

Exit status: 0 built, 1 the build failed, 2 the command line was wrong.";

/// The network RUN steps get unless they say otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// The host's network (a private network with outside access cannot be made rootless)
    Default,
    /// A private network namespace with only loopback
    None,
    /// The host's network
    Host,
}

/// How RUN steps are isolated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationArg {
    /// The strongest the environment allows: namespaces where the kernel gives them, else chroot
    Auto,
    /// User, mount, pid, ipc and uts namespaces over overlayfs
    Namespaces,
    /// chroot over a copied filesystem, for root inside an unprivileged container
    Chroot,
}

/// What a build does with a RUN that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnErrorArg {
    /// Keep it in the store and print how to open a shell there (`rbuild debug`)
    Keep,
    /// Keep it and open the shell right away when stderr is a terminal
    Shell,
    /// Keep nothing
    Discard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Plain,
    Tty,
    Rawjson,
    Quiet,
}

/// What a Dockerfile is built from: the arguments `rbuild build` and `rbuild graph` share,
/// so that the graph drawn is the graph a build with the same arguments runs.
#[derive(Debug, Args)]
pub struct DockerfileArgs {
    /// Build context directory
    #[arg(value_name = "PATH")]
    pub context: PathBuf,

    /// The Dockerfile (default: PATH/Dockerfile; `-` reads it from stdin)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,

    /// Set a build-time variable (K=V, or K to take it from the environment)
    #[arg(long = "build-arg", value_name = "K[=V]")]
    pub build_args: Vec<String>,

    /// The stage to build, with what it needs, instead of the last stage
    #[arg(long)]
    pub target: Option<String>,

    /// An extra context for FROM/COPY --from=NAME: DIR, docker-image://REF, docker-archive:PATH or oci-layout:PATH[:TAG|@DIGEST]
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
}

/// Build a container image from a Dockerfile, without a daemon.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild",
    version,
    about = "Build container images from Dockerfiles, daemonless and rootless",
    override_usage = "rbuild [build] [OPTIONS] PATH"
)]
pub struct BuildArgs {
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,

    /// Name and optionally a tag (name:tag); repeatable
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,

    /// Add a label to the image
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,

    /// Write the image id to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Write the build's result as JSON to this file (buildx's keys: containerimage.digest, containerimage.config.digest, image.name)
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// Print only the image id
    #[arg(short, long)]
    pub quiet: bool,

    /// Target platform(s), comma-separated: linux/arm64, linux/amd64,linux/arm64 (another
    /// architecture's RUN steps run under QEMU user emulation through binfmt_misc)
    #[arg(long, value_name = "OS/ARCH[/VARIANT],…")]
    pub platform: Option<String>,

    /// Do not use the build cache
    #[arg(long)]
    pub no_cache: bool,

    /// Do not use the build cache for these stages (names or indexes; repeatable)
    #[arg(long, value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,

    /// Run the build checks on the Dockerfile and build nothing: print each finding with its fix,
    /// exit 1 when there is any
    #[arg(long)]
    pub check: bool,

    /// Say, for every step that missed the cache, what differs from its closest earlier build
    #[arg(long)]
    pub explain_cache: bool,

    /// Resolve base image tags at their registries again, even when the store has them
    #[arg(long)]
    pub pull: bool,

    /// A secret for RUN --mount=type=secret: id=NAME,src=FILE or id=NAME,env=VAR; repeatable
    #[arg(long = "secret", value_name = "id=NAME,src=FILE|env=VAR")]
    pub secrets: Vec<String>,

    /// An ssh agent for RUN --mount=type=ssh: default (your SSH_AUTH_SOCK), or ID=SOCKET|KEY[,KEY]; repeatable
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEY]")]
    pub ssh: Vec<String>,

    /// Keep cache mounts (RUN --mount=type=cache) in DIR instead of the store, for a CI cache to carry between runners
    #[arg(long, value_name = "DIR", env = "RBUILD_CACHE_MOUNT_DIR")]
    pub cache_mount_dir: Option<PathBuf>,

    /// Export the build cache: type=registry,ref=REG/REPO:TAG or type=local,dest=DIR [,mode=min|max][,ignore-error=true|false][,compression=gzip|zstd][,compression-level=N][,mounts=true]; repeatable
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,

    /// Use a shared build cache: type=registry,ref=REF, type=local,src=DIR, or REF; repeatable
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,

    /// Reach this registry over plain HTTP (loopback registries always are); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,

    /// Reach this registry over HTTPS without verifying its certificate (self-signed or expired ones pass); repeatable
    #[arg(long = "skip-tls-verify", value_name = "HOST[:PORT]")]
    pub skip_tls_verify: Vec<String>,

    /// Pull base images without verifying any registry's certificate
    #[arg(long = "skip-tls-verify-pull")]
    pub skip_tls_verify_pull: bool,

    /// Look for Docker Hub base images at this registry (HOST[:PORT][/PATH]) first, then at Docker Hub; repeatable, tried in order
    #[arg(long = "registry-mirror", value_name = "HOST[/PATH]")]
    pub registry_mirrors: Vec<String>,

    /// Network for RUN steps that do not set --network themselves
    #[arg(long, value_enum, default_value_t = NetworkArg::Default)]
    pub network: NetworkArg,

    /// How many steps may run at once (default: one COPY/ADD per CPU, RUN steps unlimited)
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(usize))]
    pub jobs: Option<usize>,

    /// Isolation of RUN steps
    #[arg(long, value_enum, default_value_t = IsolationArg::Auto)]
    pub isolation: IsolationArg,

    /// Progress output
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// When a RUN fails: keep it for `rbuild debug`, open a shell there at once, or keep nothing
    #[arg(long, value_enum, default_value_t = OnErrorArg::Keep)]
    pub on_error: OnErrorArg,

    /// Push the image to its registry as each -t name (short for -o type=registry)
    #[arg(long)]
    pub push: bool,

    /// Output: FILE.tar, FILE.tar.gz, - (stdout), type=docker|oci|tar|local,dest=PATH[,compression=gzip|zstd], or type=registry,name=REG/REPO:TAG[,name=…]
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    pub outputs: Vec<String>,
}

/// Splits `--build-arg`/`--label` values; `K` alone reads the environment for build args.
pub fn key_values(items: &[String], from_env: bool, flag: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                map.insert(k.to_string(), v.to_string());
            }
            None if from_env && !item.is_empty() => {
                // As in docker: a variable missing from the environment is left unset.
                if let Ok(v) = std::env::var(item) {
                    map.insert(item.clone(), v);
                }
            }
            _ => return Err(format!("invalid {flag} {item:?}: expected KEY=VALUE")),
        }
    }
    Ok(map)
}

/// `rbuild build …` and `rbuild …` are the same command; the binary started as `executor`
/// (a symlink, where kaniko's entrypoint was) is `rbuild executor …`.
pub fn normalise_args(mut args: Vec<String>) -> Vec<String> {
    let program = args.first().map(|a| std::path::Path::new(a).file_name().unwrap_or_default().to_string_lossy().into_owned());
    if program.as_deref() == Some("executor") {
        args.insert(1, "executor".to_string());
        return args;
    }
    if args.get(1).map(String::as_str) == Some("build") {
        args.remove(1);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_subcommand_is_optional() {
        let a = normalise_args(vec!["rbuild".into(), "build".into(), "-t".into(), "x".into(), ".".into()]);
        let b = normalise_args(vec!["rbuild".into(), "-t".into(), "x".into(), ".".into()]);
        assert_eq!(a, b);
        let parsed = BuildArgs::try_parse_from(a).unwrap();
        assert_eq!(parsed.tags, vec!["x"]);
        assert_eq!(parsed.dockerfile.context, PathBuf::from("."));
    }

    #[test]
    fn started_as_executor() {
        let args = normalise_args(vec!["/kaniko/executor".into(), "--no-push".into()]);
        assert_eq!(args, ["/kaniko/executor", "executor", "--no-push"]);
        // kaniko's flags are not rbuild build's: `build` is not dropped there.
        let args = normalise_args(vec!["executor".into(), "build".into()]);
        assert_eq!(args, ["executor", "executor", "build"]);
        let args = normalise_args(vec!["/usr/bin/rbuild".into(), "executor".into()]);
        assert_eq!(args, ["/usr/bin/rbuild", "executor"]);
    }

    #[test]
    fn build_args_from_flags_and_environment() {
        std::env::set_var("RBUILD_TEST_FROM_ENV", "env-value");
        let map = key_values(
            &["A=1".into(), "B=".into(), "RBUILD_TEST_FROM_ENV".into(), "RBUILD_TEST_UNSET_X".into()],
            true,
            "--build-arg",
        )
        .unwrap();
        assert_eq!(map["A"], "1");
        assert_eq!(map["B"], "");
        assert_eq!(map["RBUILD_TEST_FROM_ENV"], "env-value");
        assert!(!map.contains_key("RBUILD_TEST_UNSET_X"));
        assert!(key_values(&["nolabel".into()], false, "--label").is_err());
        assert!(key_values(&["=v".into()], true, "--build-arg").is_err());
    }
}
