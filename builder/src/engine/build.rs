//! One build from settings to a stored, named and exported image: plan the Dockerfile,
//! execute the graph, tag the result and write every `-o` output.

use std::io::Write;
use std::sync::Arc;

use rbuild_frontend::graph::BuildGraph;
use rbuild_store::registry::RegistryError;
use rbuild_store::{Platform, Reference, Store, StoredImage};

use crate::engine::error::BuildError;
use crate::engine::events::BuiltImage;
use crate::engine::events::CacheExportDone;
use crate::engine::execute::{Built, Executor, SharedProgress};
use crate::engine::finish::{export, record_timings};
use crate::engine::output::OutputSpec;
use crate::engine::plan::plan_checked;
use crate::engine::pulling::{open_registry, push_logged};
use crate::engine::remote_cache::{cache_mount_ids, export_caches, mount_layers, ExportTarget};
use crate::engine::settings::BuildSettings;

/// Builds what `settings` asks for in `store`, reporting to `progress`. An output that
/// goes to standard output is written to `stdout`.
pub fn build(
    settings: &Arc<BuildSettings>,
    store: &Store,
    progress: &SharedProgress,
    stdout: &mut dyn Write,
) -> Result<BuiltImage, BuildError> {
    let shown = || progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(reason) = &settings.isolation_reason {
        let name = match settings.isolation {
            rbuild_sandbox::Isolation::Namespaces => "namespaces",
            rbuild_sandbox::Isolation::Chroot => "chroot",
        };
        shown().isolation_chosen(name, reason);
    }
    if settings.is_multi_platform() {
        return crate::engine::platforms::build_platforms(settings, store, progress, stdout);
    }
    let (graph, named_directories) = plan_checked(settings, store, progress, &settings.platforms[0])?;
    let graph = Arc::new(graph);
    let executor = Executor {
        settings: settings.clone(),
        store: store.clone(),
        graph: graph.clone(),
        progress: progress.clone(),
        named_directories,
    };
    let built = executor.run()?;
    record_timings(store, &graph, settings, &built.timings, &mut |w| shown().warning(w));
    let image_id = built.image.config_digest.to_string();
    shown().info(&format!("writing image {image_id} done"));
    for tag in &settings.tags {
        store.tag(tag, &built.image.manifest_digest).map_err(|e| BuildError::Finish {
            action: format!("tagging the image as {}", tag.familiar()),
            source: e.into(),
        })?;
        shown().info(&format!("naming to {} done", tag.full()));
    }
    // What `--metadata-file` describes: the image as pushed, if it was (its layers
    // compressed as the push asked), else as stored.
    let mut described = built.image.clone();
    let log = |line: &str| shown().info(line);
    for output in &settings.outputs {
        if let OutputSpec::Registry { names, compression } = output {
            let names = if names.is_empty() { &settings.tags[..] } else { names };
            for name in names {
                fetch_for_push(store, &built, name, *compression)?;
            }
            described = push(store, &built.image, settings, names, *compression, &log)?;
        } else {
            fetch_for_export(store, &built, output)?;
            export(store, &built.image, &built.state, settings, output, stdout)?;
        }
    }
    export_cache(store, settings, &graph, &built, progress)?;
    let image = built_image(store, &described, &settings.tags)?;
    shown().image_built(&image);
    Ok(image)
}

/// What the build made, for `--metadata-file` and the rawjson progress.
fn built_image(store: &Store, image: &StoredImage, tags: &[Reference]) -> Result<BuiltImage, BuildError> {
    let manifest = &image.manifest_digest;
    let bytes = store.read_blob(manifest)?;
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

/// Pushes `image` as each of `names` (the build's tags when there are none); returns the
/// image as pushed.
fn push(
    store: &Store,
    image: &StoredImage,
    settings: &BuildSettings,
    names: &[Reference],
    compression: rbuild_store::Codec,
    log: &dyn Fn(&str),
) -> Result<StoredImage, BuildError> {
    let names = if names.is_empty() { &settings.tags[..] } else { names };
    let failed = |action: String| move |e: RegistryError| BuildError::Finish { action, source: e.into() };
    if names.is_empty() {
        return Err(BuildError::Finish {
            action: "pushing the image".into(),
            source: "no name to push it as: name one with -t or name=".into(),
        });
    }
    let registry = open_registry(Platform::host(), settings.registry_access.clone())
        .map_err(failed("pushing the image".into()))?;
    for name in names {
        push_logged(&registry, store, image, name, compression, &mut |line| log(&line))
            .map_err(failed(format!("the image was built, but pushing it as {} failed", name.full())))?;
    }
    // The conversion is remembered: this costs a lookup.
    store.convert_image(image, compression).map_err(BuildError::from)
}

/// Fetches the layers a push of the image as `name` cannot do without: those only
/// an imported cache holds that the destination's registry neither has nor can
/// mount (no source recorded there), and those the push must recompress. A fully
/// cached build pushed to the cache's registry fetches nothing.
fn fetch_for_push(store: &Store, built: &Built, name: &Reference, compression: rbuild_store::Codec) -> Result<(), BuildError> {
    let Some(remote) = &built.remote else { return Ok(()) };
    for layer in built.image.layers.iter().filter(|l| !store.has_blob(&l.digest)) {
        let reachable = store.blob_source(&layer.digest, name.domain())?.is_some();
        if !reachable || layer.compression() != Some(compression.compression) {
            remote.ensure_blob(layer)?;
        }
    }
    Ok(())
}

/// Fetches what an archive or filesystem output reads: every layer's blob, and
/// for a filesystem its snapshot.
fn fetch_for_export(store: &Store, built: &Built, output: &OutputSpec) -> Result<(), BuildError> {
    let Some(remote) = &built.remote else { return Ok(()) };
    let filesystem = matches!(output, OutputSpec::RootfsTar { .. } | OutputSpec::Local { .. });
    for layer in &built.state.layers {
        let present = store.has_blob(&layer.layer.digest) || (filesystem && store.has_snapshot(&layer.layer.diff_id));
        if !present {
            remote.ensure_blob(&layer.layer)?;
        }
        if filesystem && !store.has_snapshot(&layer.layer.diff_id) {
            store.ensure_snapshot(&layer.layer)?;
        }
    }
    Ok(())
}

/// Runs every `--cache-to`, each on its own progress line with its time. A failed
/// export is a warning unless it says `ignore-error=false`.
fn export_cache(store: &Store, settings: &BuildSettings, graph: &BuildGraph, built: &Built, progress: &SharedProgress) -> Result<(), BuildError> {
    if settings.cache_to.is_empty() {
        return Ok(());
    }
    let shown = || progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mounts = settings.cache_mounts(store.root());
    let ids = cache_mount_ids(graph);
    let mount_layers = |compression| mount_layers(store, &mounts, &ids, compression);
    let target = ExportTarget {
        store,
        remote: built.remote.as_deref(),
        platform: Platform::host(),
        registry_access: settings.registry_access.clone(),
        mount_layers: &mount_layers,
    };
    let started = std::time::Instant::now();
    let results = export_caches(&target, &settings.cache_to, &built.exported, &mut |line| shown().info(&line));
    for (export, result) in settings.cache_to.iter().zip(results) {
        let done = match &result {
            Ok(report) => CacheExportDone {
                location: report.location.clone(),
                steps: report.steps,
                layers: report.layers,
                sent: report.sent,
                elapsed: report.elapsed,
                error: None,
            },
            Err(e) => CacheExportDone {
                location: export.location.to_string(),
                steps: 0,
                layers: 0,
                sent: 0,
                elapsed: started.elapsed(),
                error: Some(error_chain(e)),
            },
        };
        shown().cache_exported(&done);
        if let Err(e) = result {
            if !export.ignore_error {
                return Err(e.into());
            }
            shown().warning(&format!("exporting the cache to {} failed (ignore-error=true): {}", export.location, error_chain(&e)));
        }
    }
    Ok(())
}

/// An error with its sources, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}
