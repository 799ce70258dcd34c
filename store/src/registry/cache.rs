//! The registry side of rbuild's build cache (`cache_manifest` is its format):
//! fetching a cache's manifest and config (never its layers, which are fetched
//! one by one, and only when a build needs their bytes), fetching one blob, and
//! pushing a cache's blobs and manifest the way an image is pushed (`push`).

use super::error::Action;
use super::push::{PushEvent, Pushed};
use super::{oci_reference, BlobDownload, Registry, RegistryError};
use crate::content::layer::Layer;
use crate::digest::Digest;
use crate::manifest;
use crate::reference::Reference;
use crate::store::Store;

impl Registry {
    /// The manifest `reference` names and the blob its config descriptor names
    /// (digests checked), or `None` when the registry has no such manifest.
    /// `config_of` reads the manifest and says which blob is the config, or why
    /// the manifest is not one the caller can use.
    pub fn fetch_manifest_and_config<E>(
        &self,
        store: &Store,
        reference: &Reference,
        config_of: impl FnOnce(&[u8]) -> Result<(Digest, u64), E>,
    ) -> Result<crate::cache_manifest::FetchedCache<E>, RegistryError> {
        let connection = self.connection(reference.domain())?;
        let context = self.pull_context(reference, &connection);
        let job = self.pull_job(store, reference, &connection, &context);
        let top = oci_reference(reference, None);
        self.runtime.block_on(async {
            let manifest = match job.fetch_manifest(&top, reference.digest()).await {
                Ok((bytes, _)) => bytes,
                Err(RegistryError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let (digest, size) = match config_of(&manifest) {
                Ok(found) => found,
                Err(e) => return Ok(Some((manifest, Err(e)))),
            };
            if !store.has_blob(&digest) {
                let descriptor = descriptor(String::new(), &digest, size);
                job.download_small(&top, &descriptor, &digest).await?;
            }
            let config = store.read_blob(&digest).map_err(|e| job.store_error(e))?;
            Ok(Some((manifest, Ok(config))))
        })
    }

    /// Downloads `layer`'s blob from `repository` into `store` (verified as it is
    /// written) and records that the blob is in that repository.
    pub fn fetch_blob(
        &self,
        store: &Store,
        repository: &Reference,
        layer: &Layer,
    ) -> Result<(), RegistryError> {
        if store.has_blob(&layer.digest) {
            return Ok(());
        }
        let connection = self.connection(repository.domain())?;
        let context = self.pull_context(repository, &connection);
        let job = self.pull_job(store, repository, &connection, &context);
        let target = oci_reference(repository, None);
        self.runtime.block_on(async {
            job.refresh_access().await?;
            let descriptor = descriptor(layer.media_type.clone(), &layer.digest, layer.size);
            let download = BlobDownload {
                client: connection.client.clone(),
                reference: target,
                descriptor: super::oci_descriptor(&descriptor),
                digest: layer.digest.clone(),
                store: store.clone(),
            };
            download
                .run()
                .await
                .map(|_| ())
                .map_err(|failure| failure.into_error(&job))
        })?;
        let source = format!("{}/{}", repository.domain(), repository.path());
        store
            .record_blob_source(&layer.digest, &source)
            .map_err(|e| job_store_error(repository, e))
    }

    /// Pushes `blobs` (digest, size; each in the store, or at the registry
    /// already, or mountable from a recorded source) and then `manifest` as
    /// `destination`; records the pushed blobs' new source.
    pub fn push_manifest(
        &self,
        store: &Store,
        blobs: Vec<(Digest, u64)>,
        manifest: Vec<u8>,
        destination: &Reference,
        on_event: &mut dyn FnMut(PushEvent),
    ) -> Result<Pushed, RegistryError> {
        let connection = self.connection(destination.domain())?;
        let job = self.push_job(store, destination, None, &connection);
        let digests: Vec<Digest> = blobs.iter().map(|(d, _)| d.clone()).collect();
        let pushed = self.runtime.block_on(job.run(blobs, manifest, on_event))?;
        let repository = format!("{}/{}", destination.domain(), destination.path());
        for blob in &digests {
            store
                .record_blob_source(blob, &repository)
                .map_err(|e| job_store_error(destination, e))?;
        }
        Ok(pushed)
    }
}

fn job_store_error(reference: &Reference, source: crate::error::StoreError) -> RegistryError {
    RegistryError::Store {
        action: Action::Pulling,
        reference: reference.familiar(),
        source,
    }
}

fn descriptor(media_type: String, digest: &Digest, size: u64) -> manifest::Descriptor {
    manifest::Descriptor {
        media_type,
        digest: digest.to_string(),
        size: size as i64,
        platform: None,
        annotations: Default::default(),
        urls: Vec::new(),
    }
}
