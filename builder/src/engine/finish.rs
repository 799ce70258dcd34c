//! What a build does once its steps ran: record how long each took, and write an
//! image or its filesystem to an `-o` destination. Shared by the single-platform
//! build and the per-platform builds of a multi-platform one.

use std::io::Write;

use rbuild_frontend::graph::BuildGraph;
use rbuild_store::{write_archive, ArchiveFormat, Reference, Store, StoredImage};

use crate::engine::error::BuildError;
use crate::engine::execute::{FsState, StepTiming};
use crate::engine::output::{write_output, Destination, OutputSpec};
use crate::engine::settings::BuildSettings;

/// Records how long each step took, for `rbuild graph --timings`. A failure to record is
/// only a warning: the image is built.
pub fn record_timings(
    store: &Store,
    graph: &BuildGraph,
    settings: &BuildSettings,
    timings: &[StepTiming],
    warn: &mut dyn FnMut(&str),
) {
    let Some(path) = &settings.dockerfile.path else { return };
    let steps = timings
        .iter()
        .map(|t| crate::engine::timings::StepTiming::new(graph.step(t.step), t.cached, t.seconds))
        .collect();
    if let Err(e) = crate::engine::timings::write_timings(store.root(), path, steps) {
        warn(&format!("could not record the build's timings: {e}"));
    }
}

/// Writes `image` (or, for a filesystem output, `state`) as `output` says.
pub fn export(
    store: &Store,
    image: &StoredImage,
    state: &FsState,
    settings: &BuildSettings,
    output: &OutputSpec,
    stdout: &mut dyn Write,
) -> Result<(), BuildError> {
    let archive = |format: ArchiveFormat, names: &[Reference]| {
        let images = [(image.clone(), settings.archive_names(names))];
        move |w: &mut dyn Write| write_archive(store, &images, &format, w).map_err(BuildError::from)
    };
    fn writing(dest: &Destination) -> impl FnOnce(BuildError) -> BuildError + '_ {
        move |e| BuildError::Finish { action: format!("writing {dest}"), source: e.into() }
    }
    match output {
        OutputSpec::Docker { dest, gzip, names, compression } => {
            write_output(dest, *gzip, stdout, archive(ArchiveFormat::Docker { compression: *compression }, names))
                .map_err(writing(dest))
        }
        OutputSpec::Oci { dest, compression, names } => {
            write_output(dest, false, stdout, archive(ArchiveFormat::Oci { compression: *compression }, names))
                .map_err(writing(dest))
        }
        OutputSpec::RootfsTar { dest } => {
            let staging = store.tempdir()?;
            materialize(state, staging.path(), "assembling the image's filesystem".into())?;
            write_output(dest, false, stdout, |w| {
                rbuild_store::write_layer_tar(staging.path(), settings.source_date_epoch, w)
                    .map(|_| ())
                    .map_err(BuildError::from)
            })
            .map_err(writing(dest))
        }
        // Pushed by `push`, which `build` calls for it.
        OutputSpec::Registry { .. } => Ok(()),
        OutputSpec::Local { dir } => {
            std::fs::create_dir_all(dir).map_err(|e| BuildError::Finish {
                action: format!("creating {}", dir.display()),
                source: e.into(),
            })?;
            materialize(state, dir, format!("writing the image's filesystem to {}", dir.display()))
        }
    }
}

/// Writes the image's final filesystem into `dir`; `action` says what for, in an error.
fn materialize(state: &FsState, dir: &std::path::Path, action: String) -> Result<(), BuildError> {
    state.rootfs().materialize(dir).map_err(|e| BuildError::Finish { action, source: e.into() })
}

