//! What each kaniko flag means in rbuild: kaniko's options become an `rbuild build` argument
//! list, parsed afterwards by the same clap definitions as `rbuild build` itself, so that the
//! executor has no build settings of its own. What has no `rbuild build` flag (the digest files,
//! the store location of `--cache-dir`) is returned beside the list; flags rbuild has no use for
//! become notes.

use std::path::{Path, PathBuf};

use rbuild_store::Reference;

use super::flags::Given;
use super::ExecutorError;

/// kaniko's default `--context`.
const DEFAULT_CONTEXT: &str = "/workspace/";
/// The tag of the registry cache in its repository: buildx's usual name for one.
const CACHE_TAG: &str = "buildcache";

/// kaniko's options, as given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KanikoOptions {
    pub context: Option<String>,
    pub context_sub_path: Option<String>,
    pub dockerfile: Option<String>,
    pub destinations: Vec<String>,
    pub no_push: bool,
    pub no_push_cache: bool,
    pub tar_path: Option<PathBuf>,
    pub digest_file: Option<PathBuf>,
    pub image_name_digest_file: Option<PathBuf>,
    pub image_name_tag_digest_file: Option<PathBuf>,
    pub build_args: Vec<String>,
    pub target: Option<String>,
    pub labels: Vec<String>,
    pub cache: bool,
    pub cache_repo: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub reproducible: bool,
    pub insecure: bool,
    pub insecure_registries: Vec<String>,
    pub skip_tls_verify: bool,
    pub skip_tls_verify_pull: bool,
    pub skip_tls_verify_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    pub custom_platform: Option<String>,
    pub verbosity: Option<String>,
    /// What rbuild says about flags it accepts but does not need, one line each.
    pub notes: Vec<String>,
}

impl KanikoOptions {
    /// Takes the flags in order; a later single-valued flag wins, as in kaniko.
    pub fn from_flags(given: Vec<Given>) -> Result<KanikoOptions, ExecutorError> {
        let mut o = KanikoOptions::default();
        for Given { name, value } in given {
            let on = value == "true";
            match name {
                "context" => o.context = Some(value),
                "context-sub-path" => o.context_sub_path = Some(value),
                "dockerfile" => o.dockerfile = Some(value),
                "destination" => o.destinations.push(value),
                "no-push" => o.no_push = on,
                "no-push-cache" => o.no_push_cache = on,
                "tar-path" => o.tar_path = Some(value.into()),
                "digest-file" => o.digest_file = Some(value.into()),
                "image-name-with-digest-file" => o.image_name_digest_file = Some(value.into()),
                "image-name-tag-with-digest-file" => o.image_name_tag_digest_file = Some(value.into()),
                "build-arg" => o.build_args.push(value),
                "target" => o.target = Some(value),
                "label" => o.labels.push(value),
                "cache" => o.cache = on,
                "cache-repo" => o.cache_repo = Some(value),
                "cache-dir" => o.cache_dir = Some(value.into()),
                "cache-ttl" => {
                    go_duration(&value).map_err(|reason| ExecutorError::Invalid { flag: "--cache-ttl", value: value.clone(), reason })?;
                    o.note("--cache-ttl", "the registry cache has no age limit: an entry is used as long as the cache holds it");
                }
                "reproducible" => o.reproducible = on,
                "insecure" => o.insecure = on,
                "insecure-registry" => o.insecure_registries.push(value),
                "skip-tls-verify" => o.skip_tls_verify = on,
                "skip-tls-verify-pull" => o.skip_tls_verify_pull = on,
                "skip-tls-verify-registry" => o.skip_tls_verify_registries.push(value),
                "registry-mirror" => o.registry_mirrors.push(value),
                "custom-platform" => o.custom_platform = Some(value),
                "verbosity" => o.verbosity = Some(value),
                _ if value == "false" => {}
                _ => o.note_unneeded(name),
            }
        }
        Ok(o)
    }

    fn note(&mut self, flag: &str, why: &str) {
        self.notes.push(format!("{flag}: {why}"));
    }

    /// The one-line note for a kaniko flag rbuild accepts and has no use for.
    fn note_unneeded(&mut self, name: &str) {
        let why = match name {
            "snapshot-mode" | "use-new-run" => "not needed: rbuild takes each RUN's changes from its overlay (or chroot copy), not from a snapshot of the whole filesystem",
            "compressed-caching" => "not needed: rbuild keeps cached layers uncompressed and compresses once, for the registry",
            "kaniko-dir" => "not needed: rbuild keeps its state in its store (--cache-dir or RBUILD_ROOT)",
            "cleanup" => "not needed: rbuild never unpacks images over the container's own filesystem, so there is nothing to clean",
            "insecure-pull" => "rbuild reaches loopback registries over plain HTTP; name any other with --insecure-registry HOST",
            "single-snapshot" => "not supported yet: each step stays a layer of its own",
            "cache-copy-layers" | "cache-run-layers" => "not needed: the registry cache keeps every step (mode=max)",
            "log-format" | "log-timestamp" => "not needed: rbuild's progress is plain text in CI logs",
            "force" => "not needed: rbuild builds safely inside or outside a container",
            "skip-unused-stages" => "not needed: rbuild only builds the stages the target needs",
            "push-retry" => "not needed: rbuild retries transient push failures itself",
            "ignore-var-run" => "not needed: RUN steps never see the container's /var/run",
            other => unreachable!("flag --{other} has no meaning and no note"),
        };
        self.note(&format!("--{name}"), why);
    }

    /// Where the context comes from.
    pub fn context_source(&self) -> Result<ContextSource, ExecutorError> {
        let text = self.context.as_deref().unwrap_or(DEFAULT_CONTEXT);
        let source = if text == "tar://stdin" {
            ContextSource::TarStdin
        } else if let Some(path) = text.strip_prefix("tar://") {
            ContextSource::TarFile(path.into())
        } else if let Some(path) = text.strip_prefix("dir://") {
            ContextSource::Dir(path.into())
        } else if let Some((scheme, _)) = text.split_once("://") {
            return Err(ExecutorError::UnsupportedContext { context: text.to_string(), scheme: scheme.to_string() });
        } else if [".tar.gz", ".tgz", ".tar"].iter().any(|end| text.ends_with(end)) && Path::new(text).is_file() {
            ContextSource::TarFile(text.into())
        } else {
            ContextSource::Dir(text.into())
        };
        Ok(source)
    }

    /// The `rbuild build` arguments (program name first) for a build of `context` with the
    /// Dockerfile `dockerfile`, writing its result to `metadata_file`.
    pub fn build_args(&self, context: &Path, dockerfile: &Path, metadata_file: &Path) -> Result<Vec<String>, ExecutorError> {
        let destinations = self.destinations()?;
        if destinations.is_empty() && !self.no_push {
            return Err(ExecutorError::NoDestination);
        }
        if destinations.is_empty() && (self.image_name_digest_file.is_some() || self.image_name_tag_digest_file.is_some()) {
            return Err(ExecutorError::NameFileWithoutDestination);
        }
        let mut args = vec!["rbuild build".to_string()];
        let mut flag = |name: &str, value: &str| {
            args.push(name.to_string());
            args.push(value.to_string());
        };
        flag("--file", &dockerfile.to_string_lossy());
        for destination in &self.destinations {
            flag("--tag", destination);
        }
        for build_arg in &self.build_args {
            flag("--build-arg", &kaniko_build_arg(build_arg));
        }
        let epoch_given = self.build_args.iter().any(|a| a.split('=').next() == Some("SOURCE_DATE_EPOCH"));
        if self.reproducible && !epoch_given {
            // kaniko's --reproducible sets every time in the image to 0: what
            // SOURCE_DATE_EPOCH=0 does to rbuild's image times and clamped file times.
            flag("--build-arg", "SOURCE_DATE_EPOCH=0");
        }
        if let Some(target) = &self.target {
            flag("--target", target);
        }
        for label in &self.labels {
            flag("--label", label);
        }
        if let Some(platform) = &self.custom_platform {
            flag("--platform", platform);
        }
        if let Some(path) = &self.tar_path {
            flag("--output", &format!("type=docker,dest={}", path.display()));
        }
        flag("--metadata-file", &metadata_file.to_string_lossy());
        flag("--progress", self.progress()?);
        for registry in self.pushed_hosts(&self.insecure_registries, self.insecure, &destinations)? {
            flag("--insecure-registry", &registry);
        }
        for registry in self.pushed_hosts(&self.skip_tls_verify_registries, self.skip_tls_verify, &destinations)? {
            flag("--skip-tls-verify", &registry);
        }
        for (name, value) in self.cache_flags(&destinations)? {
            flag(name, &value);
        }
        for mirror in &self.registry_mirrors {
            flag("--registry-mirror", mirror);
        }
        if self.skip_tls_verify_pull {
            args.push("--skip-tls-verify-pull".to_string());
        }
        if !self.no_push {
            args.push("--push".to_string());
        }
        args.push(context.to_string_lossy().into_owned());
        Ok(args)
    }

    /// `--destination`s, each checked as an image reference.
    pub fn destinations(&self) -> Result<Vec<Reference>, ExecutorError> {
        self.destinations
            .iter()
            .map(|d| Reference::parse(d).map_err(|e| ExecutorError::Invalid { flag: "--destination", value: d.clone(), reason: e.to_string() }))
            .collect()
    }

    /// kaniko's log levels: info and below show every step, warn and above only the result.
    fn progress(&self) -> Result<&'static str, ExecutorError> {
        match self.verbosity.as_deref().unwrap_or("info") {
            "trace" | "debug" | "info" => Ok("plain"),
            "warn" | "error" | "fatal" | "panic" => Ok("quiet"),
            other => Err(ExecutorError::Invalid {
                flag: "--verbosity",
                value: other.to_string(),
                reason: "expected trace, debug, info, warn, error, fatal or panic".into(),
            }),
        }
    }

    /// The registries `named`, and with `pushing` the registries pushed to (the destinations'
    /// and the cache's): what kaniko's `--insecure` and `--skip-tls-verify` add to their
    /// per-registry flags.
    fn pushed_hosts(&self, named: &[String], pushing: bool, destinations: &[Reference]) -> Result<Vec<String>, ExecutorError> {
        let mut hosts = named.to_vec();
        if pushing {
            hosts.extend(destinations.iter().map(|d| d.domain().to_string()));
            if let Some(cache) = self.cache_ref(destinations)? {
                hosts.push(cache.domain().to_string());
            }
        }
        hosts.sort();
        hosts.dedup();
        Ok(hosts)
    }

    /// The registry cache's reference with `--cache=true`: `--cache-repo`, else the first
    /// destination's repository with `/cache` added (kaniko's default), tagged `buildcache`
    /// unless the repository names a tag.
    pub fn cache_ref(&self, destinations: &[Reference]) -> Result<Option<Reference>, ExecutorError> {
        if !self.cache {
            return Ok(None);
        }
        let repository = match (&self.cache_repo, destinations.first()) {
            (Some(repo), _) => repo.clone(),
            (None, Some(first)) if !self.no_push => format!("{}/cache", first.repository()),
            _ => return Err(ExecutorError::CacheRepoNeeded),
        };
        let invalid = |reason: String| ExecutorError::Invalid { flag: "--cache-repo", value: repository.clone(), reason };
        let parsed = Reference::parse(&repository).map_err(|e| invalid(e.to_string()))?;
        let tagged = if repository_has_tag(&repository) { parsed } else { parsed.with_tag(CACHE_TAG).map_err(|e| invalid(e.to_string()))? };
        Ok(Some(tagged))
    }

    /// `--cache=true` as rbuild's registry cache: read it, and write every step to it
    /// (kaniko caches each RUN layer; a failed cache upload is a warning, as in kaniko, and
    /// a missing cache is a warning too).
    fn cache_flags(&self, destinations: &[Reference]) -> Result<Vec<(&'static str, String)>, ExecutorError> {
        let Some(cache) = self.cache_ref(destinations)? else {
            return Ok(Vec::new());
        };
        let reference = cache.full();
        let mut flags = vec![("--cache-from", format!("type=registry,ref={reference}"))];
        if !self.no_push_cache {
            flags.push(("--cache-to", format!("type=registry,ref={reference},mode=max,ignore-error=true")));
        }
        Ok(flags)
    }
}

/// A kaniko build arg: `K` alone takes `K`'s value from the environment, empty when unset.
fn kaniko_build_arg(arg: &str) -> String {
    match arg.contains('=') {
        true => arg.to_string(),
        false => format!("{arg}={}", std::env::var(arg).unwrap_or_default()),
    }
}

/// Whether a repository reference ends in `:TAG` (a colon after the last slash).
fn repository_has_tag(repository: &str) -> bool {
    let last = repository.rsplit('/').next().unwrap_or(repository);
    last.contains(':') || repository.contains('@')
}

/// Checks a Go duration (`336h`, `1h30m`, `90s`): kaniko's `--cache-ttl` format.
fn go_duration(text: &str) -> Result<(), String> {
    let mut rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    if rest == "0" {
        return Ok(());
    }
    if rest.is_empty() {
        return Err("expected a duration such as 336h or 90m".into());
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let unit_end = rest[number_end..].find(|c: char| c.is_ascii_digit() || c == '.').map_or(rest.len(), |i| number_end + i);
        let (number, unit) = (&rest[..number_end], &rest[number_end..unit_end]);
        if number.is_empty() || number.parse::<f64>().is_err() || !["ns", "us", "µs", "ms", "s", "m", "h"].contains(&unit) {
            return Err("expected a duration such as 336h or 90m".into());
        }
        rest = &rest[unit_end..];
    }
    Ok(())
}

/// Where kaniko's `--context` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// A directory (a plain path or `dir://PATH`).
    Dir(PathBuf),
    /// A tar (gzip-compressed or not) of the context: `tar://PATH` or a `PATH.tar.gz`.
    TarFile(PathBuf),
    /// `tar://stdin`: the tar on standard input.
    TarStdin,
}

#[cfg(test)]
mod tests {
    use super::super::flags::{read, CommandLine};
    use super::*;

    fn options(args: &[&str]) -> KanikoOptions {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let CommandLine::Flags(given) = read(&args).unwrap() else { panic!("help") };
        KanikoOptions::from_flags(given).unwrap()
    }

    fn build_args(args: &[&str]) -> Result<Vec<String>, ExecutorError> {
        options(args).build_args(Path::new("/ctx"), Path::new("/ctx/Dockerfile"), Path::new("/tmp/meta.json"))
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2).filter(|w| w[0] == flag).map(|w| w[1].as_str()).collect()
    }

    #[test]
    fn gitlab_invocation() {
        let args = build_args(&[
            "--context",
            "/builds/group/app",
            "--dockerfile",
            "/builds/group/app/Dockerfile",
            "--destination",
            "registry.example.com/group/app:1.0",
            "--destination=registry.example.com/group/app:latest",
        ])
        .unwrap();
        assert_eq!(value_of(&args, "--tag"), ["registry.example.com/group/app:1.0", "registry.example.com/group/app:latest"]);
        assert_eq!(value_of(&args, "--progress"), ["plain"]);
        assert!(args.contains(&"--push".to_string()));
        assert_eq!(args.last().unwrap(), "/ctx");
    }

    #[test]
    fn no_push_with_tar_and_reproducible() {
        let args = build_args(&["--no-push", "--tar-path=/out/image.tar", "--reproducible", "--build-arg", "V=1", "--label=a=b", "--target", "t"]).unwrap();
        assert!(!args.contains(&"--push".to_string()));
        assert_eq!(value_of(&args, "--output"), ["type=docker,dest=/out/image.tar"]);
        assert_eq!(value_of(&args, "--build-arg"), ["V=1", "SOURCE_DATE_EPOCH=0"]);
        assert_eq!(value_of(&args, "--label"), ["a=b"]);
        assert_eq!(value_of(&args, "--target"), ["t"]);
        // An epoch of the user's own is kept.
        let args = build_args(&["--no-push", "--reproducible", "--build-arg=SOURCE_DATE_EPOCH=5"]).unwrap();
        assert_eq!(value_of(&args, "--build-arg"), ["SOURCE_DATE_EPOCH=5"]);
    }

    #[test]
    fn cache_maps_to_the_registry_cache() {
        let args = build_args(&["--destination", "reg:5000/team/app:1", "--cache=true"]).unwrap();
        assert_eq!(value_of(&args, "--cache-from"), ["type=registry,ref=reg:5000/team/app/cache:buildcache"]);
        assert_eq!(value_of(&args, "--cache-to"), ["type=registry,ref=reg:5000/team/app/cache:buildcache,mode=max,ignore-error=true"]);
        let args = build_args(&["-d", "reg:5000/app:1", "--cache", "--cache-repo", "reg:5000/ci/cache", "--no-push-cache"]).unwrap();
        assert_eq!(value_of(&args, "--cache-from"), ["type=registry,ref=reg:5000/ci/cache:buildcache"]);
        assert!(value_of(&args, "--cache-to").is_empty());
        let args = build_args(&["-d", "reg:5000/app:1", "--cache", "--cache-repo=reg:5000/ci/cache:main"]).unwrap();
        assert_eq!(value_of(&args, "--cache-from"), ["type=registry,ref=reg:5000/ci/cache:main"]);
        // Without a destination to infer it from, the cache repository must be named.
        assert!(matches!(build_args(&["--no-push", "--cache"]), Err(ExecutorError::CacheRepoNeeded)));
        assert!(build_args(&["--no-push", "--cache"]).unwrap_err().to_string().contains("--cache-repo"));
        // No cache flags without --cache.
        assert!(value_of(&build_args(&["-d", "reg:5000/app:1"]).unwrap(), "--cache-from").is_empty());
    }

    #[test]
    fn insecure_names_the_registries_pushed_to() {
        let args = build_args(&["-d", "plain.example:5000/app:1", "--insecure", "--cache", "--cache-repo", "cache.example/c", "--insecure-registry", "pull.example"]).unwrap();
        assert_eq!(value_of(&args, "--insecure-registry"), ["cache.example", "plain.example:5000", "pull.example"]);
    }

    #[test]
    fn skip_tls_verify_names_the_registries_pushed_to() {
        let args = build_args(&["-d", "self-signed.example/app:1", "--skip-tls-verify", "--cache", "--skip-tls-verify-registry=mirror.example:8443"]).unwrap();
        assert_eq!(value_of(&args, "--skip-tls-verify"), ["mirror.example:8443", "self-signed.example"]);
        assert!(value_of(&args, "--insecure-registry").is_empty());
        assert!(!args.contains(&"--skip-tls-verify-pull".to_string()));
        // Per registry only, and pulls everywhere.
        let args = build_args(&["-d", "verified.example/app:1", "--skip-tls-verify-registry", "pull.example", "--skip-tls-verify-pull"]).unwrap();
        assert_eq!(value_of(&args, "--skip-tls-verify"), ["pull.example"]);
        assert!(args.contains(&"--skip-tls-verify-pull".to_string()));
        // Mirrors keep their order.
        let args = build_args(&["--no-push", "--registry-mirror", "m1.example", "--registry-mirror=m2.example/hub"]).unwrap();
        assert_eq!(value_of(&args, "--registry-mirror"), ["m1.example", "m2.example/hub"]);
        // A false boolean asks for nothing.
        assert!(value_of(&build_args(&["-d", "r.example/a:1", "--skip-tls-verify=false"]).unwrap(), "--skip-tls-verify").is_empty());
    }

    #[test]
    fn destinations_are_required_unless_no_push() {
        assert!(matches!(build_args(&["--context", "/c"]), Err(ExecutorError::NoDestination)));
        assert!(matches!(build_args(&["--no-push", "--image-name-with-digest-file=/f"]), Err(ExecutorError::NameFileWithoutDestination)));
        assert!(matches!(build_args(&["-d", "app::1"]), Err(ExecutorError::Invalid { flag: "--destination", .. })));
    }

    #[test]
    fn verbosity_levels() {
        assert_eq!(value_of(&build_args(&["--no-push", "-v", "debug"]).unwrap(), "--progress"), ["plain"]);
        assert_eq!(value_of(&build_args(&["--no-push", "--verbosity=error"]).unwrap(), "--progress"), ["quiet"]);
        assert!(build_args(&["--no-push", "--verbosity=loud"]).is_err());
    }

    #[test]
    fn unneeded_flags_become_notes() {
        let o = options(&["--snapshot-mode=redo", "--use-new-run", "--compressed-caching=false", "--kaniko-dir", "/k", "--cleanup"]);
        let flags: Vec<&str> = o.notes.iter().map(|n| n.split(':').next().unwrap()).collect();
        // A boolean set to false asks for nothing and gets no note.
        assert_eq!(flags, ["--snapshot-mode", "--use-new-run", "--kaniko-dir", "--cleanup"]);
    }

    #[test]
    fn contexts() {
        let source = |s: &str| options(&["--context", s]).context_source().unwrap();
        assert_eq!(source("dir:///src"), ContextSource::Dir("/src".into()));
        assert_eq!(source("/src"), ContextSource::Dir("/src".into()));
        assert_eq!(source("tar://stdin"), ContextSource::TarStdin);
        assert_eq!(source("tar:///in/ctx.tar.gz"), ContextSource::TarFile("/in/ctx.tar.gz".into()));
        assert_eq!(options(&[]).context_source().unwrap(), ContextSource::Dir("/workspace/".into()));
        let s3 = options(&["--context", "s3://bucket/ctx.tar.gz"]).context_source();
        assert!(matches!(s3, Err(ExecutorError::UnsupportedContext { .. })));
    }

    #[test]
    fn cache_ttl_is_a_go_duration() {
        for good in ["336h", "1h30m", "90s", "0", "1.5h"] {
            assert!(go_duration(good).is_ok(), "{good}");
        }
        for bad in ["", "2w", "h", "10"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
        let args: Vec<String> = ["--cache-ttl", "2w"].iter().map(|s| s.to_string()).collect();
        let CommandLine::Flags(given) = read(&args).unwrap() else { panic!() };
        assert!(KanikoOptions::from_flags(given).is_err());
    }

    #[test]
    fn build_args_without_a_value_read_the_environment() {
        std::env::set_var("RBUILD_EXECUTOR_TEST_ARG", "from-env");
        assert_eq!(kaniko_build_arg("RBUILD_EXECUTOR_TEST_ARG"), "RBUILD_EXECUTOR_TEST_ARG=from-env");
        assert_eq!(kaniko_build_arg("RBUILD_EXECUTOR_TEST_UNSET"), "RBUILD_EXECUTOR_TEST_UNSET=");
    }
}
