//! Pushing a stored image to a registry (the OCI distribution protocol).
//!
//! The layers are first compressed as asked, a conversion the store
//! remembers (`convert`), so a second push or export compresses nothing.
//! Then every blob (layers and config, several at once) is asked for with
//! `HEAD` and skipped when the registry has it; one the store knows to be in
//! another repository of the same registry (pulled from or pushed to there,
//! see `metadata::sources`) is mounted from it, and uploaded when the
//! registry declines the mount (`202`); the rest are uploaded (`upload`: in
//! one `PUT` each, or in chunks when the registry asks or a blob is large). The manifest goes last, once every blob is there: an interrupted
//! push names nothing missing, and a rerun uploads only what is missing.
//! Each request is tried again, with a growing wait, on 408, 429, 5xx and
//! broken connections.
//!
//! On a registry with bearer tokens, the push asks for one token for all of
//! it: `pull,push` on the destination and `pull` on each repository a blob is
//! mounted from (without the latter the registry declines the mount), by
//! password, or by identity token through the token exchange (`oauth`). Nothing in the store changes but the conversions and
//! the blob sources.

use std::time::Duration;

use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use reqwest::header::HeaderValue;

use super::error::Action;
use super::oauth::{bearer_token, pull_scope, Access, ExchangeError};
use super::oci_errors::{describe_exchange_error, describe_oci_error, ErrorContext};
use super::retry::{is_transient, transient_reason, ATTEMPTS, FIRST_BACKOFF};
use super::upload::Upload;
use super::{oci_reference, Connection, Registry, RegistryError};
use crate::compress::Codec;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::manifest::{OCI_INDEX, OCI_MANIFEST};
use crate::metadata::image::StoredImage;
use crate::reference::Reference;
use crate::store::Store;

/// Blobs pushed at the same time, Docker's default `max-concurrent-uploads`.
const CONCURRENT_UPLOADS: usize = 5;
/// How long the push's token is used before it is asked for again: less than
/// the 60 seconds every registry token lasts at least (the distribution
/// spec's minimum), so no blob starts, and no manifest goes, with an expired one.
const REAUTHORIZE: Duration = Duration::from_secs(45);

/// What a push reports while it works, for progress output.
#[derive(Clone, Debug)]
pub enum PushEvent {
    /// The registry has this blob already.
    Exists { digest: Digest },
    /// The registry mounted this blob from another of its repositories.
    Mounted { digest: Digest, from: String },
    /// A blob is at the registry.
    Uploaded { digest: Digest, size: u64 },
    /// A request failed in a way worth trying again, and will be.
    Retrying { step: String, attempt: u32, reason: String },
}

/// A finished push.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// The digest of the manifest pushed: what `name@digest` pulls.
    pub digest: Digest,
    pub uploaded: usize,
    pub mounted: usize,
    pub existing: usize,
}

impl Registry {
    /// A push to `destination` over `connection`: of the manifest `digest` names (by
    /// digest), or of the tag's.
    pub(super) fn push_job<'a>(
        &self,
        store: &'a Store,
        destination: &'a Reference,
        digest: Option<&Digest>,
        connection: &'a Connection,
    ) -> PushJob<'a> {
        PushJob {
            store,
            destination,
            target: oci_reference(destination, digest),
            connection,
            looked: self.options.credentials.describe(),
        }
    }

    /// Pushes `image` from `store` to `destination` (a tag; `latest` if it
    /// names none), its layers compressed with `compression` (at its level).
    pub fn push(
        &self,
        store: &Store,
        image: &StoredImage,
        destination: &Reference,
        compression: Codec,
        on_event: &mut dyn FnMut(PushEvent),
    ) -> Result<Pushed, RegistryError> {
        refuse_digest(destination)?;
        let connection = self.connection(destination.domain())?;
        let (_, pushed) = self.push_image(store, image, destination, false, compression, &connection, on_event)?;
        Ok(pushed)
    }

    /// Pushes one image's blobs and manifest over `connection`, under the tag of
    /// `destination` or, `by_digest`, under the manifest's digest; records the
    /// repository as its blobs' source. Returns the image as pushed (its layers
    /// converted to `compression`).
    #[allow(clippy::too_many_arguments)]
    fn push_image(
        &self,
        store: &Store,
        image: &StoredImage,
        destination: &Reference,
        by_digest: bool,
        compression: Codec,
        connection: &Connection,
        on_event: &mut dyn FnMut(PushEvent),
    ) -> Result<(StoredImage, Pushed), RegistryError> {
        let store_error = |source| RegistryError::Store { action: Action::Pushing, reference: destination.familiar(), source };
        let image = store.convert_image(image, compression).map_err(store_error)?;
        let manifest = store.read_blob(&image.manifest_digest).map_err(store_error)?;
        let job = self.push_job(store, destination, by_digest.then_some(&image.manifest_digest), connection);
        let blobs = image_blobs(store, &image).map_err(store_error)?;
        let pushed = self.runtime.block_on(job.run(blobs, manifest, on_event))?;
        record_sources(store, &image, destination).map_err(store_error)?;
        Ok((image, pushed))
    }

    /// Pushes the multi-platform image `images` (one per platform) as
    /// `destination`: each image's blobs and manifest (by digest, so the tag
    /// never names a single platform), then the OCI index of them all under
    /// the tag. The index's digest is what `name@digest` pulls.
    pub fn push_index(
        &self,
        store: &Store,
        images: &[StoredImage],
        destination: &Reference,
        compression: Codec,
        on_event: &mut dyn FnMut(PushEvent),
    ) -> Result<Pushed, RegistryError> {
        let store_error = |source| RegistryError::Store { action: Action::Pushing, reference: destination.familiar(), source };
        refuse_digest(destination)?;
        let connection = self.connection(destination.domain())?;
        let mut total = Pushed { digest: Digest::of_bytes(b""), uploaded: 0, mounted: 0, existing: 0 };
        let mut pushed_images = Vec::with_capacity(images.len());
        for image in images {
            let (image, pushed) = self.push_image(store, image, destination, true, compression, &connection, on_event)?;
            total.uploaded += pushed.uploaded;
            total.mounted += pushed.mounted;
            total.existing += pushed.existing;
            pushed_images.push(image);
        }
        let index_digest = store.put_index(&pushed_images).map_err(store_error)?;
        let index = store.read_blob(&index_digest).map_err(store_error)?;
        let job = self.push_job(store, destination, None, &connection);
        self.runtime.block_on(async {
            // Authorizes the client for the tag (the images were pushed by digest).
            job.authorize(&[]).await?;
            job.put_manifest(index, HeaderValue::from_static(OCI_INDEX), on_event).await
        })?;
        total.digest = index_digest;
        Ok(total)
    }
}

/// A push names a tag: the registry computes the digest.
fn refuse_digest(destination: &Reference) -> Result<(), RegistryError> {
    match destination.digest() {
        Some(_) => Err(RegistryError::Unsupported {
            reference: destination.familiar(),
            reason: "a push names a tag, not a digest (the registry computes the digest)".to_string(),
        }),
        None => Ok(()),
    }
}

/// Remembers that `image`'s blobs are in `destination`'s repository: a later
/// push to another repository of this registry mounts them.
/// The blobs an image's manifest names, each once: its layers, then its config.
fn image_blobs(store: &Store, image: &StoredImage) -> Result<Vec<(Digest, u64)>, StoreError> {
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for (digest, size) in image.layers.iter().map(|l| (&l.digest, l.size)) {
        if !blobs.iter().any(|(d, _)| d == digest) {
            blobs.push((digest.clone(), size));
        }
    }
    let config_size = store.read_blob(&image.config_digest)?.len() as u64;
    blobs.push((image.config_digest.clone(), config_size));
    Ok(blobs)
}

fn record_sources(store: &Store, image: &StoredImage, destination: &Reference) -> Result<(), StoreError> {
    let repository = format!("{}/{}", destination.domain(), destination.path());
    for blob in image.layers.iter().map(|l| &l.digest).chain([&image.config_digest]) {
        store.record_blob_source(blob, &repository)?;
    }
    Ok(())
}

/// One push, run on the registry's runtime.
pub(super) struct PushJob<'a> {
    pub(super) store: &'a Store,
    pub(super) destination: &'a Reference,
    pub(super) target: oci_client::Reference,
    pub(super) connection: &'a Connection,
    pub(super) looked: String,
}

/// How a blob got to the registry.
enum Outcome {
    Existed,
    Mounted(String),
    Uploaded,
}

/// Why a blob push failed, and at which step, carried out of its task.
struct BlobFailure {
    step: String,
    error: OciDistributionError,
}

impl PushJob<'_> {
    /// Gets `blobs` (digest, size) to the registry, then `manifest`, which lists them. A blob
    /// the store lacks (a layer a remote cache holds, see `metadata::sources`) is fine as long
    /// as the registry has it or mounts it; else the push fails naming it.
    pub(super) async fn run(
        &self,
        blobs: Vec<(Digest, u64)>,
        manifest: Vec<u8>,
        on_event: &mut dyn FnMut(PushEvent),
    ) -> Result<Pushed, RegistryError> {
        let destination = format!("{}/{}", self.destination.domain(), self.destination.path());
        let mut planned = Vec::new();
        for (digest, size) in blobs {
            let mount_from = self
                .store
                .blob_source(&digest, self.destination.domain())
                .map_err(|e| self.store_error(e))?
                .filter(|source| *source != destination);
            planned.push((digest, size, mount_from));
        }
        let mut sources: Vec<String> = planned.iter().filter_map(|(_, _, from)| from.clone()).collect();
        sources.sort_unstable();
        sources.dedup();
        let mut auth = self.authorize(&sources).await?;
        let mut authorized = std::time::Instant::now();
        let mut counts = Pushed { digest: Digest::of_bytes(&manifest), uploaded: 0, mounted: 0, existing: 0 };

        let mut queue = planned.into_iter();
        // Dropping the set (on an error) aborts the pushes still running.
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < CONCURRENT_UPLOADS {
                let Some((digest, size, mount_from)) = queue.next() else { break };
                if authorized.elapsed() > REAUTHORIZE {
                    (auth, authorized) = (self.authorize(&sources).await?, std::time::Instant::now());
                }
                let blob = BlobPush {
                    client: self.connection.client.clone(),
                    http: self.connection.http.clone(),
                    base_url: self.connection.base_url.clone(),
                    auth: auth.clone(),
                    target: self.target.clone(),
                    path: self.store.blob_path(&digest),
                    digest,
                    size,
                    mount_from,
                };
                running.spawn(blob.run());
            }
            let Some(joined) = running.join_next().await else { break };
            let (digest, size, outcome, retries) = joined.map_err(|e| {
                describe_oci_error(OciDistributionError::GenericError(Some(format!("a push task failed: {e}"))), &self.context("pushing blobs"))
            })?.map_err(|failure| self.failure(failure))?;
            for (step, attempt, reason) in retries {
                on_event(PushEvent::Retrying { step, attempt, reason });
            }
            match outcome {
                Outcome::Existed => {
                    counts.existing += 1;
                    on_event(PushEvent::Exists { digest });
                }
                Outcome::Mounted(from) => {
                    counts.mounted += 1;
                    on_event(PushEvent::Mounted { digest, from });
                }
                Outcome::Uploaded => {
                    counts.uploaded += 1;
                    on_event(PushEvent::Uploaded { digest, size });
                }
            }
        }

        if authorized.elapsed() > REAUTHORIZE {
            self.authorize(&sources).await?;
        }
        // The manifest's own media type: rbuild writes OCI manifests.
        let content_type = serde_json::from_slice::<serde_json::Value>(&manifest)
            .ok()
            .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).and_then(|m| HeaderValue::from_str(m).ok()))
            .unwrap_or(HeaderValue::from_static(OCI_MANIFEST));
        self.put_manifest(manifest, content_type, on_event).await?;
        Ok(counts)
    }

    /// Puts the manifest (or index) `manifest` at the job's target, once its
    /// blobs are there.
    async fn put_manifest(
        &self,
        manifest: Vec<u8>,
        content_type: HeaderValue,
        on_event: &mut dyn FnMut(PushEvent),
    ) -> Result<(), RegistryError> {
        let step = format!("pushing manifest {}", Digest::of_bytes(&manifest));
        let mut retries = Vec::new();
        let result = with_retries(&step, &mut retries, || {
            self.connection.client.push_manifest_raw(&self.target, manifest.clone(), content_type.clone())
        })
        .await;
        for (step, attempt, reason) in retries {
            on_event(PushEvent::Retrying { step, attempt, reason });
        }
        result.map_err(|e| describe_oci_error(e, &self.context(&step)))?;
        Ok(())
    }

    /// Gives the client a token for the whole push, `pull,push` on the
    /// destination and `pull` on each of `sources` (`registry/path`), or the
    /// password of a registry without tokens; returns what the uploads send.
    async fn authorize(&self, sources: &[String]) -> Result<RegistryAuth, RegistryError> {
        let context = self.context("authenticating");
        let mut scopes = vec![format!("repository:{}:pull,push", self.destination.path())];
        scopes.extend(sources.iter().map(|source| pull_scope(source.split_once('/').map_or(source.as_str(), |(_, path)| path))));
        let token = match &self.connection.exchange {
            Some(exchange) => match exchange.access(&scopes).await.map_err(|e| describe_exchange_error(e, &context))? {
                Access::Anonymous => None,
                Access::Token { token, .. } => Some(token),
            },
            // oci-client asks the token server for one repository's scope, and
            // a token without `pull` on a mount's source gets the mount declined.
            None => {
                let basic = match &self.connection.auth {
                    RegistryAuth::Basic(user, password) => Some((user.as_str(), password.as_str())),
                    _ => None,
                };
                match bearer_token(&self.connection.http, &self.connection.base_url, &scopes, basic).await {
                    Ok(token) => token,
                    // Basic auth: oci-client sends the password as it is.
                    Err(ExchangeError::NotBearer(_)) => None,
                    Err(e) => return Err(describe_exchange_error(e, &context)),
                }
            }
        };
        let auth = token.map_or_else(|| self.connection.auth.clone(), RegistryAuth::Bearer);
        // Both operations: `HEAD` is a pull, uploads and the manifest are pushes.
        for operation in [RegistryOperation::Pull, RegistryOperation::Push] {
            self.connection.client.auth(&self.target, &auth, operation).await.map_err(|e| describe_oci_error(e, &context))?;
        }
        Ok(auth)
    }

    /// What an error message says: pushing `destination` (`step`).
    fn context(&self, step: &str) -> ErrorContext {
        ErrorContext {
            action: Action::Pushing,
            registry: self.destination.domain().to_string(),
            reference: format!("{} ({step})", self.destination.familiar()),
            scheme: self.connection.scheme,
            sent: self.connection.sent.clone(),
            looked: self.looked.clone(),
        }
    }

    fn failure(&self, failure: BlobFailure) -> RegistryError {
        describe_oci_error(failure.error, &self.context(&failure.step))
    }

    fn store_error(&self, source: StoreError) -> RegistryError {
        RegistryError::Store { action: Action::Pushing, reference: self.destination.familiar(), source }
    }
}

/// One blob to get to the registry.
struct BlobPush {
    client: Client,
    /// For the uploads, which rbuild makes itself (see `upload`).
    http: reqwest::Client,
    base_url: String,
    auth: RegistryAuth,
    target: oci_client::Reference,
    path: std::path::PathBuf,
    digest: Digest,
    size: u64,
    /// A repository of the same registry the blob is known to be in.
    mount_from: Option<String>,
}

/// Retries of one blob: (step, attempt, reason).
type Retries = Vec<(String, u32, String)>;

impl BlobPush {
    async fn run(self) -> Result<(Digest, u64, Outcome, Retries), BlobFailure> {
        let mut retries = Vec::new();
        let digest = self.digest.to_string();
        let fail = |step: &str| {
            let step = step.to_string();
            move |error| BlobFailure { step, error }
        };
        let step = format!("checking blob {digest}");
        let exists = with_retries(&step, &mut retries, || self.client.blob_exists(&self.target, &digest))
            .await
            .map_err(fail(&step))?;
        if exists {
            return Ok((self.digest, self.size, Outcome::Existed, retries));
        }
        if let Some(from) = &self.mount_from {
            let (domain, path) = from.split_once('/').unwrap_or((from, ""));
            let source = oci_client::Reference::with_tag(domain.to_string(), path.to_string(), "latest".to_string());
            // oci-client takes the registry's `202` (it declines, and opens an
            // upload instead) for an error: any failure falls back to an upload.
            if self.client.mount_blob(&self.target, &source, &digest).await.is_ok() {
                return Ok((self.digest, self.size, Outcome::Mounted(from.clone()), retries));
            }
        }
        let step = format!("uploading blob {digest}");
        if !self.path.exists() {
            let reason = "it is not in the store (a layer known only by its descriptor, from a remote cache) and the registry neither has it nor mounts it";
            return Err(BlobFailure { step, error: OciDistributionError::GenericError(Some(reason.to_string())) });
        }
        let upload = Upload {
            http: &self.http,
            base_url: &self.base_url,
            repository: self.target.repository(),
            auth: &self.auth,
            path: &self.path,
            digest: &digest,
            size: self.size,
        };
        // A chunk sent again is a retry too; noted apart, as `with_retries`
        // holds `retries` meanwhile.
        let resumed = std::sync::Mutex::new(Vec::new());
        let (upload, resumed_ref, chunk_step) = (&upload, &resumed, format!("{step} (a chunk)"));
        let chunk_step = &chunk_step;
        // Each try is a new upload session: a broken upload starts again.
        let result = with_retries(&step, &mut retries, || async move {
            upload
                .run(&mut |attempt, reason| {
                    resumed_ref.lock().unwrap_or_else(|e| e.into_inner()).push((chunk_step.clone(), attempt, reason))
                })
                .await
        })
        .await;
        retries.extend(resumed.into_inner().unwrap_or_else(|e| e.into_inner()));
        result.map_err(fail(&step))?;
        Ok((self.digest, self.size, Outcome::Uploaded, retries))
    }
}

/// Runs `request` until it succeeds, fails in a way a retry cannot help, or
/// has been tried [`ATTEMPTS`] times; notes each retry in `retries`.
async fn with_retries<T, F, Fut>(step: &str, retries: &mut Retries, mut request: F) -> Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
{
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match request().await.map_err(with_status) {
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                retries.push((step.to_string(), attempt, transient_reason(&e)));
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// oci-client's `HEAD` reports a refusal as reqwest's status error: made the
/// `ServerError` other requests give, so that it is judged by its status.
fn with_status(error: OciDistributionError) -> OciDistributionError {
    match error {
        OciDistributionError::RequestError(e) if e.status().is_some() => OciDistributionError::ServerError {
            code: e.status().map_or(0, |s| s.as_u16()),
            url: e.url().map(|u| u.to_string()).unwrap_or_default(),
            message: String::new(),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError { code, url: "http://127.0.0.1/v2/".into(), message: String::new() }
    }

    #[test]
    fn busy_and_failing_registries_are_retried_refusals_are_not() {
        for code in [408, 429, 500, 502, 503] {
            assert!(is_transient(&server_error(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 413] {
            assert!(!is_transient(&server_error(code)), "{code}");
        }
        assert!(is_transient(&OciDistributionError::IoError(std::io::Error::other("broken pipe"))));
    }

    #[test]
    fn retries_stop_at_success_or_the_last_attempt() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let mut calls = 0;
        let mut retries = Vec::new();
        let result: Result<u32, _> = runtime.block_on(with_retries("step", &mut retries, || {
            calls += 1;
            let answer = if calls < 3 { Err(server_error(500)) } else { Ok(calls) };
            async move { answer }
        }));
        assert_eq!(result.unwrap(), 3);
        assert_eq!(retries.len(), 2);

        let mut calls = 0;
        let mut retries = Vec::new();
        let result: Result<(), _> = runtime.block_on(with_retries("step", &mut retries, || {
            calls += 1;
            async { Err(server_error(503)) }
        }));
        assert!(result.is_err());
        assert_eq!(calls, ATTEMPTS);

        let mut calls = 0;
        let result: Result<(), _> = runtime.block_on(with_retries("step", &mut Vec::new(), || {
            calls += 1;
            async { Err(server_error(403)) }
        }));
        assert!(result.is_err());
        assert_eq!(calls, 1, "a refusal is not retried");
    }
}
