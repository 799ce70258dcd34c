//! One build for several platforms (`--platform linux/amd64,linux/arm64`): the
//! Dockerfile is planned once per platform, the platforms' graphs run at the
//! same time, each on its own scheduler, over one shared step cache, and the
//! result is one multi-platform image: the OCI image index of the
//! per-platform images, which the tags name, `-o type=oci` writes and a push
//! sends after the images it lists.
//!
//! What the platforms have in common is done once: the shared step cache's
//! in-flight locks make a step two platforms share (a `FROM
//! --platform=$BUILDPLATFORM` stage has the same keys in both) run once, the
//! other platform waiting for it and reusing its result, and its stat caches
//! hash the build context once.
//!
//! Outputs that cannot hold an index take one file per platform: the docker
//! archive (Docker 20.10 cannot load an index), `type=tar`, and `type=local`
//! (a directory per platform, as BuildKit writes it).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbuild_frontend::graph::{BuildGraph, Platform};
use rbuild_store::{write_platforms_archive, Reference, Store, StoredImage};

use crate::engine::finish::{export, record_timings};
use crate::engine::plan::plan_checked;
use crate::engine::error::BuildError;
use crate::engine::events::{BuiltImage, EmulatedRun, Finding, Progress};
use crate::engine::execute::{step_cache, Built, Executor, SharedProgress};
use crate::engine::output::{write_output, Destination, OutputSpec};
use crate::engine::pulling::{open_registry, push_index_logged};
use crate::engine::settings::BuildSettings;

/// One platform's image and the graph it was built from.
type PlatformBuilt = (Built, Arc<BuildGraph>);

/// Builds `settings` for each of its platforms and names the index of the images.
pub fn build_platforms(
    settings: &Arc<BuildSettings>,
    store: &Store,
    progress: &SharedProgress,
    stdout: &mut dyn Write,
) -> Result<BuiltImage, BuildError> {
    let shown = || progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Planning resolves base images (pulls, imports): one platform after the other.
    let mut planned = Vec::new();
    for platform in &settings.platforms {
        planned.push((platform.clone(), plan_checked(settings, store, progress, platform)?));
    }
    let cache = Arc::new(step_cache(settings, store, &settings.platforms[0], progress)?);
    let numbers = Arc::new(Mutex::new(StepNumbers::default()));
    let results: Vec<(Platform, Result<PlatformBuilt, BuildError>)> =
        std::thread::scope(|scope| {
            let running: Vec<_> = planned
                .into_iter()
                .map(|(platform, (graph, named_directories))| {
                    let graph = Arc::new(graph);
                    let shared: Box<dyn Progress + Send> = Box::new(PlatformProgress {
                        inner: progress.clone(),
                        platform: platform.to_string(),
                        numbers: numbers.clone(),
                    });
                    let executor = Executor {
                        settings: settings.clone(),
                        store: store.clone(),
                        graph: graph.clone(),
                        progress: Arc::new(Mutex::new(shared)),
                        named_directories,
                    };
                    let cache = cache.clone();
                    (platform, scope.spawn(move || executor.run_with_cache(cache).map(|built| (built, graph))))
                })
                .collect();
            running
                .into_iter()
                .map(|(platform, handle)| {
                    let result = handle
                        .join()
                        .unwrap_or_else(|_| Err(BuildError::Internal(format!("the build for {platform} panicked"))));
                    (platform, result)
                })
                .collect()
        });
    let mut builds = Vec::new();
    for (platform, result) in results {
        let (built, graph) = result?;
        record_timings(store, &graph, settings, &built.timings, &mut |w| shown().warning(w));
        builds.push((platform, built));
    }
    let images: Vec<StoredImage> = builds.iter().map(|(_, built)| built.image.clone()).collect();
    let index = store.put_index(&images)?;
    shown().info(&format!("writing image index {index} ({} platforms) done", images.len()));
    for tag in &settings.tags {
        store.tag(tag, &index).map_err(|e| BuildError::Finish {
            action: format!("tagging the image index as {}", tag.familiar()),
            source: e.into(),
        })?;
        shown().info(&format!("naming to {} done", tag.full()));
    }
    let mut described = index.clone();
    for output in &settings.outputs {
        described = write_platforms_output(store, settings, output, &builds, stdout, &|line| shown().info(line))?.unwrap_or(described);
    }
    let image = index_built_image(store, &described, &settings.tags)?;
    shown().image_built(&image);
    Ok(image)
}

/// Writes one output of a multi-platform build; returns the index digest a push gave.
fn write_platforms_output(
    store: &Store,
    settings: &BuildSettings,
    output: &OutputSpec,
    builds: &[(Platform, Built)],
    stdout: &mut dyn Write,
    log: &dyn Fn(&str),
) -> Result<Option<rbuild_store::Digest>, BuildError> {
    let images: Vec<StoredImage> = builds.iter().map(|(_, b)| b.image.clone()).collect();
    let writing = |dest: &dyn std::fmt::Display| {
        let action = format!("writing {dest}");
        move |e: BuildError| BuildError::Finish { action, source: e.into() }
    };
    match output {
        OutputSpec::Oci { dest, compression, names } => {
            let names = settings.archive_names(names);
            write_output(dest, false, stdout, |w| {
                write_platforms_archive(store, &images, &names, *compression, w).map_err(BuildError::from)
            })
            .map_err(writing(dest))?;
            Ok(None)
        }
        OutputSpec::Registry { names, compression } => {
            let names = if names.is_empty() { &settings.tags[..] } else { &names[..] };
            if names.is_empty() {
                return Err(BuildError::Finish {
                    action: "pushing the image".into(),
                    source: "no name to push it as: name one with -t or name=".into(),
                });
            }
            let registry = open_registry(Platform::host(), settings.registry_access.clone())
                .map_err(|e| BuildError::Finish { action: "pushing the image".into(), source: e.into() })?;
            let mut digest = None;
            for name in names {
                let pushed = push_index_logged(&registry, store, &images, name, *compression, &mut |line| log(&line))
                    .map_err(|e| BuildError::Finish {
                        action: format!("the image was built, but pushing it as {} failed", name.full()),
                        source: e.into(),
                    })?;
                digest = Some(pushed.digest);
            }
            Ok(digest)
        }
        // One per platform: these forms hold one image (or filesystem) each.
        OutputSpec::Docker { dest, .. } | OutputSpec::RootfsTar { dest } => {
            let Destination::File(path) = dest else {
                return Err(BuildError::Finish {
                    action: format!("writing the {} platforms' images to stdout", builds.len()),
                    source: "this output holds one platform's image: write it to a file (one per platform is written) or use -o type=oci".into(),
                });
            };
            for (platform, built) in builds {
                let file = platform_file(path, platform);
                let single = match output {
                    OutputSpec::Docker { gzip, names, compression, .. } => OutputSpec::Docker {
                        dest: Destination::File(file.clone()),
                        gzip: *gzip,
                        names: names.clone(),
                        compression: *compression,
                    },
                    _ => OutputSpec::RootfsTar { dest: Destination::File(file.clone()) },
                };
                export(store, &built.image, &built.state, settings, &single, stdout)?;
                log(&format!("wrote {} ({platform})", file.display()));
            }
            Ok(None)
        }
        OutputSpec::Local { dir } => {
            for (platform, built) in builds {
                let single = OutputSpec::Local { dir: dir.join(platform_key(platform, '_')) };
                export(store, &built.image, &built.state, settings, &single, stdout)?;
            }
            Ok(None)
        }
    }
}

/// What `--metadata-file` and the rawjson progress say of a multi-platform
/// build: the index (its digest is the image's, as BuildKit reports it).
fn index_built_image(store: &Store, index: &rbuild_store::Digest, tags: &[Reference]) -> Result<BuiltImage, BuildError> {
    let size = store.read_blob(index)?.len() as u64;
    Ok(BuiltImage {
        id: index.to_string(),
        manifest_digest: index.to_string(),
        manifest_media_type: rbuild_store::manifest::OCI_INDEX.to_string(),
        manifest_size: size,
        tags: tags.iter().map(|t| t.full()).collect(),
    })
}

/// `linux-amd64`, `linux-arm64`, `linux-arm-v7`: a platform in a file name,
/// its default variant (arm64's v8) left out as people write it.
pub fn platform_key(platform: &Platform, separator: char) -> String {
    let mut parts = vec![platform.os.as_str(), platform.architecture.as_str()];
    match platform.variant.as_deref() {
        Some("v8") if platform.architecture == "arm64" => {}
        Some(variant) => parts.push(variant),
        None => {}
    }
    parts.join(&separator.to_string())
}

/// `app.tar` for `linux/arm64` is `app-linux-arm64.tar` (`.tar.gz`, `.tgz`
/// and `.tar` stay at the end; other names get the platform appended).
pub fn platform_file(path: &Path, platform: &Platform) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let key = platform_key(platform, '-');
    for extension in [".tar.gz", ".tgz", ".tar"] {
        if let Some(stem) = name.strip_suffix(extension) {
            return path.with_file_name(format!("{stem}-{key}{extension}"));
        }
    }
    path.with_file_name(format!("{name}-{key}"))
}

/// Step numbers unique across the platforms of one build: each platform's
/// scheduler numbers its own steps from 1.
#[derive(Default)]
struct StepNumbers {
    next: usize,
    given: HashMap<(String, usize), usize>,
}

impl StepNumbers {
    fn number(&mut self, platform: &str, own: usize) -> usize {
        let next = &mut self.next;
        *self.given.entry((platform.to_string(), own)).or_insert_with(|| {
            *next += 1;
            *next
        })
    }
}

/// One platform's view of the build's progress: its steps get numbers unique
/// across the platforms, and their labels name the platform, as BuildKit's
/// `[linux/arm64 stage 2/3]` does.
struct PlatformProgress {
    inner: SharedProgress,
    platform: String,
    numbers: Arc<Mutex<StepNumbers>>,
}

impl PlatformProgress {
    fn number(&self, own: usize) -> usize {
        self.numbers.lock().unwrap_or_else(|p| p.into_inner()).number(&self.platform, own)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Box<dyn Progress + Send>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Progress for PlatformProgress {
    fn shows_config_steps(&self) -> bool {
        self.inner().shows_config_steps()
    }
    fn step_started(&mut self, number: usize, label: &str) {
        let number = self.number(number);
        let label = format!("[{}] {label}", self.platform);
        self.inner().step_started(number, &label);
    }
    fn step_done(&mut self, number: usize, elapsed: Duration) {
        let number = self.number(number);
        self.inner().step_done(number, elapsed);
    }
    fn warning(&mut self, message: &str) {
        self.inner().warning(message);
    }
    fn emulated_run(&mut self, run: &EmulatedRun) {
        let run = EmulatedRun { number: run.number.map(|n| self.number(n)), ..run.clone() };
        self.inner().emulated_run(&run);
    }
    fn check(&mut self, file: &str, finding: &Finding) {
        self.inner().check(file, finding);
    }
    fn info(&mut self, message: &str) {
        self.inner().info(message);
    }
    fn output(&mut self, number: usize, bytes: &[u8]) {
        let number = self.number(number);
        self.inner().output(number, bytes);
    }
    fn step_cached(&mut self, number: usize) {
        let number = self.number(number);
        self.inner().step_cached(number);
    }
    fn explain(&mut self, number: usize, explanation: &str) {
        let number = self.number(number);
        self.inner().explain(number, explanation);
    }
    // error, image_built and finished are the whole build's: `build_platforms` and the
    // command line report them once, on the shared progress.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_platform_files_keep_their_extension() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let armv7 = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(platform_file(Path::new("out/app.tar"), &arm64), Path::new("out/app-linux-arm64.tar"));
        assert_eq!(platform_file(Path::new("app.tar.gz"), &armv7), Path::new("app-linux-arm-v7.tar.gz"));
        assert_eq!(platform_file(Path::new("image"), &arm64), Path::new("image-linux-arm64"));
        assert_eq!(platform_key(&Platform::parse("linux/amd64").unwrap(), '_'), "linux_amd64");
    }

    #[test]
    fn step_numbers_are_unique_across_platforms_and_stable_within_one() {
        let mut numbers = StepNumbers::default();
        assert_eq!(numbers.number("linux/amd64", 1), 1);
        assert_eq!(numbers.number("linux/arm64/v8", 1), 2);
        assert_eq!(numbers.number("linux/amd64", 1), 1);
        assert_eq!(numbers.number("linux/amd64", 2), 3);
    }
}
