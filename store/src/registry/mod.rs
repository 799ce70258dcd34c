//! Pulling images from registries (the OCI distribution protocol) into the
//! store (pushing is `push`), with `oci-client` doing the HTTP, the `WWW-Authenticate` challenge
//! and, for user names and passwords, the bearer-token request to the realm
//! the challenge names (basic auth on a `GET`). Identity tokens are exchanged
//! for access tokens by `oauth`.
//!
//! A pull resolves the reference to a manifest (choosing the wanted platform
//! from an index or Docker manifest list), fetches the config and every layer
//! the store lacks (several at once, each streamed into a blob writer that
//! refuses content not matching its digest), stores the image over the
//! original config blob (so the image id is the registry's) with the layers'
//! own media types, pins the registry's digests to it (see `pins`) and tags it.
//! A digest the store already pinned downloads nothing.
//!
//! Plain HTTP is used only for loopback registries (as Docker does) and for
//! the ones [`RegistryAccess::insecure`] names; everything else is HTTPS with
//! the system's roots, unverified only for the registries
//! [`RegistryAccess::unverified_tls`] names.

mod auth;
mod cache;
mod error;
mod oauth;
mod oci_errors;
mod push;
mod retry;
mod upload;

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

pub use auth::{Credential, CredentialSource, TokenOrigin};
pub use error::{Action, RegistryError};
pub use push::{PushEvent, Pushed};

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::metadata::image::StoredImage;
use crate::content::layer::Layer;
use crate::manifest::{self, Document, ImageManifestDoc, ACCEPTED_MANIFESTS};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::Store;
use oauth::{Access, TokenExchange};
use oci_errors::{describe_exchange_error, describe_oci_error, ErrorContext};

/// Layers fetched at the same time, Docker's default `max-concurrent-downloads`.
const CONCURRENT_DOWNLOADS: usize = 3;
const USER_AGENT: &str = concat!("rbuild/", env!("CARGO_PKG_VERSION"));
/// How long a connection to a registry may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a registry may keep a response waiting between two reads.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// How pulls are made.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// The platform whose manifest is taken from an index.
    pub platform: Platform,
    pub access: RegistryAccess,
    pub credentials: CredentialSource,
}

/// The registries (`host` or `host:port`) reached other than by HTTPS with
/// verified certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryAccess {
    /// Reached over plain HTTP, besides loopback ones.
    pub insecure: Vec<String>,
    /// Reached over HTTPS without verifying their certificates (kaniko's
    /// `--skip-tls-verify`): self-signed or expired certificates are accepted.
    pub unverified_tls: Vec<String>,
    /// Every registry's certificate goes unverified (kaniko's
    /// `--skip-tls-verify-pull`, given to the client that pulls base images).
    pub unverified_tls_everywhere: bool,
}

impl PullOptions {
    /// Pulls for the host platform, with Docker's credentials and no extra
    /// insecure registries.
    pub fn for_host() -> PullOptions {
        PullOptions {
            platform: Platform::host(),
            access: RegistryAccess::default(),
            credentials: CredentialSource::from_env(),
        }
    }
}

/// What a pull reports while it works, for progress output.
#[derive(Clone, Debug)]
pub enum PullEvent {
    /// The reference named this manifest (or index) at the registry.
    Resolved { reference: String, digest: Digest },
    /// A blob download started.
    Downloading { digest: Digest, size: u64 },
    /// A blob is complete and verified in the store.
    Downloaded { digest: Digest, size: u64 },
    /// Something the user should know that does not stop the pull.
    Warning(String),
}

/// A finished pull.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub image: StoredImage,
    /// The digest the reference resolved to at the registry (an index's when
    /// it named one): what `name@digest` pins.
    pub digest: Digest,
    /// Layer blobs that had to be downloaded (0 when all were in the store).
    pub downloaded_layers: usize,
}

/// A registry client for pulls into one store. It owns a small tokio runtime,
/// so callers stay synchronous.
pub struct Registry {
    runtime: tokio::runtime::Runtime,
    options: PullOptions,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
}

/// A client for one registry, with the credentials found for it.
struct Connection {
    client: Client,
    /// What oci-client answers challenges with (anonymous for identity tokens:
    /// `exchange` gives the client its tokens).
    auth: RegistryAuth,
    /// Set for an identity token.
    exchange: Option<TokenExchange>,
    /// What was sent, for error messages ("the credentials of alice").
    sent: Option<String>,
    scheme: &'static str,
    /// `scheme://host[:port]` of the registry's API.
    base_url: String,
    /// For the requests a push makes itself: the token with several scopes,
    /// the uploads (see `push`).
    http: reqwest::Client,
}

impl Registry {
    pub fn new(options: PullOptions) -> Result<Registry, RegistryError> {
        // rustls needs a process-wide crypto provider; a second install (by
        // another Registry) fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rbuild-pull")
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Protocol {
                action: Action::Pulling,
                registry: String::new(),
                reference: String::new(),
                reason: format!("cannot start the network runtime: {e}"),
            })?;
        Ok(Registry { runtime, options, connections: Mutex::new(HashMap::new()) })
    }

    pub fn options(&self) -> &PullOptions {
        &self.options
    }

    /// Whether `registry` (`host[:port]`) is spoken to over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        is_insecure(registry, &self.options.access.insecure)
    }

    /// Whether `registry`'s certificate goes unverified.
    fn skips_tls_verification(&self, registry: &str) -> bool {
        self.options.access.unverified_tls_everywhere || names_registry(registry, &self.options.access.unverified_tls)
    }

    /// Pulls `reference` into `store` and tags it (unless it names a digest).
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        on_event: &mut dyn FnMut(PullEvent),
    ) -> Result<Pulled, RegistryError> {
        let connection = self.connection(reference.domain())?;
        let context = self.pull_context(reference, &connection);
        let job = self.pull_job(store, reference, &connection, &context);
        let pulled = self.runtime.block_on(job.run(on_event));
        // Said whether the pull worked or not: a rotated identity token that
        // could not be stored matters either way.
        for warning in connection.exchange.iter().flat_map(TokenExchange::take_warnings) {
            on_event(PullEvent::Warning(warning));
        }
        let pulled = pulled?;
        if reference.digest().is_none() && reference.tag().is_some() {
            // Beside what the tag names for other platforms (`rbuild pull --platform`).
            store
                .tag_platform(reference, &pulled.image)
                .map_err(|source| RegistryError::Store { action: Action::Pulling, reference: reference.familiar(), source })?;
        }
        Ok(pulled)
    }

    fn connection(&self, registry: &str) -> Result<Arc<Connection>, RegistryError> {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = connections.get(registry) {
            return Ok(existing.clone());
        }
        let found = self.options.credentials.lookup_with_origin(registry).map_err(|reason| RegistryError::Credentials {
            registry: registry.to_string(),
            looked: self.options.credentials.describe(),
            reason,
        })?;
        let (credential, origin) = match found {
            Some((credential, origin)) => (Some(credential), origin),
            None => (None, None),
        };
        let insecure = self.is_insecure(registry);
        let unverified = !insecure && self.skips_tls_verification(registry);
        let scheme = if insecure { "http" } else { "https" };
        let base_url = format!("{scheme}://{}", api_host(registry));
        let setup_failed = |what: &str, e: reqwest::Error| RegistryError::Protocol {
            action: Action::Pulling,
            registry: registry.to_string(),
            reference: String::new(),
            reason: format!("cannot set up {what}: {e}"),
        };
        let exchange = match &credential {
            Some(Credential::IdentityToken(token)) => Some(
                TokenExchange::new(token.clone(), origin, registry, base_url.clone(), USER_AGENT)
                    .map_err(|e| setup_failed("the token exchange", e))?,
            ),
            _ => None,
        };
        // The timeouts oci-client is given below.
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .danger_accept_invalid_certs(unverified)
            .build()
            .map_err(|e| setup_failed("the HTTP client", e))?;
        let config = ClientConfig {
            protocol: if insecure { ClientProtocol::Http } else { ClientProtocol::Https },
            // rbuild chooses the platform itself, from the raw index.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            // A blob goes up in one `PUT` (the store knows its size): one
            // request a blob, and one thing to retry when it breaks.
            use_monolithic_push: true,
            accept_invalid_certificates: unverified,
            ..ClientConfig::default()
        };
        let connection = Arc::new(Connection {
            client: Client::new(config),
            auth: match &credential {
                Some(Credential::Password { user, secret }) => RegistryAuth::Basic(user.clone(), secret.clone()),
                Some(Credential::IdentityToken(_)) | None => RegistryAuth::Anonymous,
            },
            exchange,
            sent: credential.as_ref().map(Credential::describe),
            scheme,
            base_url,
            http,
        });
        connections.insert(registry.to_string(), connection.clone());
        Ok(connection)
    }
}

/// Plain HTTP for loopback hosts and the ones named (with or without port).
fn is_insecure(registry: &str, named: &[String]) -> bool {
    let host = host_of(registry);
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback || names_registry(registry, named)
}

/// Whether `registry` is among `named`, with or without its port.
fn names_registry(registry: &str, named: &[String]) -> bool {
    let host = host_of(registry);
    named.iter().any(|n| n == registry || n == host)
}

/// The host that serves `registry`'s API, as oci-client resolves it
/// (`docker.io` is served by `index.docker.io`).
fn api_host(registry: &str) -> String {
    oci_client::Reference::with_tag(registry.to_string(), "library/x".to_string(), "latest".to_string())
        .resolve_registry()
        .to_string()
}

/// The host part of `host[:port]` or `[v6]:port`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// The oci-client form of a reference: the digest when there is one (a tag
/// beside it is ignored, as Docker ignores it).
fn oci_reference(reference: &Reference, digest: Option<&Digest>) -> oci_client::Reference {
    let domain = reference.domain().to_string();
    let path = reference.path().to_string();
    match digest.or(reference.digest()) {
        Some(d) => oci_client::Reference::with_digest(domain, path, d.to_string()),
        None => oci_client::Reference::with_tag(
            domain,
            path,
            reference.tag().unwrap_or(crate::reference::DEFAULT_TAG).to_string(),
        ),
    }
}

/// One pull, run on the registry's runtime.
impl Registry {
    /// What an error of a pull of `reference` over `connection` says about it.
    fn pull_context(&self, reference: &Reference, connection: &Connection) -> ErrorContext {
        ErrorContext {
            action: Action::Pulling,
            registry: reference.domain().to_string(),
            reference: reference.familiar(),
            scheme: connection.scheme,
            sent: connection.sent.clone(),
            looked: self.options.credentials.describe(),
        }
    }

    /// A pull of `reference` over `connection`, for this registry's platform.
    fn pull_job<'a>(
        &'a self,
        store: &'a Store,
        reference: &'a Reference,
        connection: &'a Connection,
        context: &'a ErrorContext,
    ) -> PullJob<'a> {
        PullJob { store, reference, connection, platform: &self.options.platform, context }
    }
}

struct PullJob<'a> {
    store: &'a Store,
    reference: &'a Reference,
    connection: &'a Connection,
    platform: &'a Platform,
    context: &'a ErrorContext,
}

impl PullJob<'_> {
    async fn run(&self, on_event: &mut dyn FnMut(PullEvent)) -> Result<Pulled, RegistryError> {
        let top_ref = oci_reference(self.reference, None);
        if self.connection.exchange.is_some() {
            self.refresh_access().await?;
        } else {
            // oci-client runs the challenge (again whenever its token expires).
            self.connection
                .client
                .auth(&top_ref, &self.connection.auth, RegistryOperation::Pull)
                .await
                .map_err(|e| describe_oci_error(e, self.context))?;
        }

        let (bytes, top_digest) = self.fetch_manifest(&top_ref, self.reference.digest()).await?;
        on_event(PullEvent::Resolved { reference: self.reference.familiar(), digest: top_digest.clone() });
        if let Some(image) = self.pinned(&top_digest)? {
            return Ok(Pulled { image, digest: top_digest, downloaded_layers: 0 });
        }
        let (manifest, manifest_digest, from_index) = match self.parse(&bytes)? {
            Document::Manifest(m) => (m, top_digest.clone(), false),
            Document::Index(entries) => {
                let chosen = manifest::select_platform(&entries, self.platform).ok_or_else(|| {
                    let offered = manifest::offered_platforms(&entries);
                    RegistryError::NoPlatform {
                        reference: self.reference.familiar(),
                        platform: self.platform.to_string(),
                        offered: if offered.is_empty() { "no platforms".to_string() } else { offered.join(", ") },
                    }
                })?;
                let child = chosen.digest().map_err(|reason| self.unsupported(reason))?;
                if let Some(image) = self.pinned(&child)? {
                    self.pin(&top_digest, Some(self.platform), &image)?;
                    return Ok(Pulled { image, digest: top_digest, downloaded_layers: 0 });
                }
                let child_ref = oci_reference(self.reference, Some(&child));
                let (child_bytes, child_digest) = self.fetch_manifest(&child_ref, Some(&child)).await?;
                match self.parse(&child_bytes)? {
                    Document::Manifest(m) => (m, child_digest, true),
                    Document::Index(_) => {
                        return Err(self.unsupported("its index points at another index for the platform".to_string()))
                    }
                }
            }
        };
        manifest.check_supported().map_err(|reason| self.unsupported(reason))?;

        let manifest_ref = oci_reference(self.reference, Some(&manifest_digest));
        let config_digest = manifest.config.digest().map_err(|reason| self.unsupported(reason))?;
        if !self.store.has_blob(&config_digest) {
            self.download_small(&manifest_ref, &manifest.config, &config_digest).await?;
        }
        self.check_config_platform(&config_digest, on_event)?;
        let downloaded_layers = self.download_layers(&manifest_ref, &manifest, on_event).await?;

        let layers = manifest
            .layers
            .iter()
            .map(|d| {
                let digest = d.digest().map_err(|reason| self.unsupported(reason))?;
                Ok(Layer {
                    // Replaced by the config's diff_id when stored.
                    diff_id: digest.clone(),
                    digest,
                    size: d.size.max(0) as u64,
                    media_type: d.media_type.clone(),
                })
            })
            .collect::<Result<Vec<_>, RegistryError>>()?;
        let image = self
            .store
            .put_image_with_config_blob(&config_digest, &layers)
            .map_err(|e| self.store_error(e))?;
        self.pin(&manifest_digest, None, &image)?;
        // A push of an image built on this one can mount these blobs from here.
        let repository = format!("{}/{}", self.reference.domain(), self.reference.path());
        for blob in layers.iter().map(|l| &l.digest).chain([&config_digest]) {
            self.store.record_blob_source(blob, &repository).map_err(|e| self.store_error(e))?;
        }
        if from_index {
            self.pin(&top_digest, Some(self.platform), &image)?;
        }
        Ok(Pulled { image, digest: top_digest, downloaded_layers })
    }

    /// With an identity token: gives the client a fresh access token for the
    /// repository, if the last one is about to expire. Called before every
    /// request, so that no request goes out with an expired token; a no-op
    /// for other credentials.
    async fn refresh_access(&self) -> Result<(), RegistryError> {
        let Some(exchange) = &self.connection.exchange else { return Ok(()) };
        match exchange.access(&[oauth::pull_scope(self.reference.path())]).await {
            Ok(Access::Anonymous | Access::Token { new: false, .. }) => Ok(()),
            Ok(Access::Token { token, new: true }) => {
                // The client keeps the token for this repository and sends it.
                let top_ref = oci_reference(self.reference, None);
                self.connection
                    .client
                    .auth(&top_ref, &RegistryAuth::Bearer(token), RegistryOperation::Pull)
                    .await
                    .map(|_| ())
                    .map_err(|e| describe_oci_error(e, self.context))
            }
            Err(e) => Err(describe_exchange_error(e, self.context)),
        }
    }

    /// Fetches a manifest or index and checks it against `expected` when the
    /// reference pinned one.
    async fn fetch_manifest(
        &self,
        reference: &oci_client::Reference,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest), RegistryError> {
        self.refresh_access().await?;
        let (bytes, _) = self
            .connection
            .client
            .pull_manifest_raw(reference, &self.connection.auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| describe_oci_error(e, self.context))?;
        let actual = Digest::of_bytes(&bytes);
        if let Some(expected) = expected {
            if &actual != expected {
                return Err(RegistryError::DigestMismatch {
                    reference: self.reference.familiar(),
                    what: "the manifest the registry served".to_string(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    fn parse(&self, bytes: &[u8]) -> Result<Document, RegistryError> {
        Document::parse(bytes, None).map_err(|reason| self.unsupported(reason))
    }

    fn pinned(&self, digest: &Digest) -> Result<Option<StoredImage>, RegistryError> {
        self.store.pinned_image(digest, self.platform).map_err(|e| self.store_error(e))
    }

    fn pin(&self, digest: &Digest, platform: Option<&Platform>, image: &StoredImage) -> Result<(), RegistryError> {
        self.store
            .pin_digest(digest, platform, &image.manifest_digest)
            .map_err(|e| self.store_error(e))
    }

    /// A config: small, so fetched whole, then verified and stored.
    async fn download_small(
        &self,
        reference: &oci_client::Reference,
        descriptor: &manifest::Descriptor,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        self.refresh_access().await?;
        let mut bytes: Vec<u8> = Vec::new();
        self.connection
            .client
            .pull_blob(reference, &oci_descriptor(descriptor), &mut bytes)
            .await
            .map_err(|e| describe_oci_error(e, self.context))?;
        let actual = Digest::of_bytes(&bytes);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                reference: self.reference.familiar(),
                what: "the image config".to_string(),
                expected: digest.clone(),
                actual,
            });
        }
        self.store.write_blob(&bytes).map_err(|e| self.store_error(e))?;
        Ok(())
    }

    /// Warns when the config's platform is not the wanted one (a
    /// single-platform image for another machine), as Docker does.
    fn check_config_platform(&self, config: &Digest, on_event: &mut dyn FnMut(PullEvent)) -> Result<(), RegistryError> {
        let bytes = self.store.read_blob(config).map_err(|e| self.store_error(e))?;
        let config = ImageConfig::from_json(&bytes)
            .map_err(|e| self.unsupported(format!("its config is not an image config: {e}")))?;
        let actual = Platform::new(&config.os, &config.architecture, config.variant.as_deref());
        if !self.platform.matches(&actual) {
            on_event(PullEvent::Warning(format!(
                "image {} is for platform {actual}, not the requested {}",
                self.reference.familiar(),
                self.platform
            )));
        }
        Ok(())
    }

    /// Downloads the layers the store lacks, several at a time, each on a
    /// task of its own so that hashing runs on both cores. Returns how many
    /// were downloaded.
    async fn download_layers(
        &self,
        reference: &oci_client::Reference,
        manifest: &ImageManifestDoc,
        on_event: &mut dyn FnMut(PullEvent),
    ) -> Result<usize, RegistryError> {
        let mut missing = Vec::new();
        for descriptor in &manifest.layers {
            let digest = descriptor.digest().map_err(|reason| self.unsupported(reason))?;
            if !self.store.has_blob(&digest) && !missing.iter().any(|(d, _)| d == &digest) {
                missing.push((digest, descriptor.clone()));
            }
        }
        let count = missing.len();
        let mut queue = missing.into_iter();
        // Dropping the set (on an error) aborts the downloads still running.
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < CONCURRENT_DOWNLOADS {
                let Some((digest, descriptor)) = queue.next() else { break };
                // A download sends its one request as it starts.
                self.refresh_access().await?;
                on_event(PullEvent::Downloading { digest: digest.clone(), size: descriptor.size.max(0) as u64 });
                let download = BlobDownload {
                    client: self.connection.client.clone(),
                    reference: reference.clone(),
                    descriptor: oci_descriptor(&descriptor),
                    digest,
                    store: self.store.clone(),
                };
                running.spawn(download.run());
            }
            let Some(joined) = running.join_next().await else { break };
            let outcome = joined.map_err(|e| RegistryError::Protocol {
                action: Action::Pulling,
                registry: self.context.registry.clone(),
                reference: self.context.reference.clone(),
                reason: format!("a download task failed: {e}"),
            })?;
            match outcome {
                Ok((digest, size)) => on_event(PullEvent::Downloaded { digest, size }),
                Err(failure) => return Err(failure.into_error(self)),
            }
        }
        Ok(count)
    }

    fn unsupported(&self, reason: String) -> RegistryError {
        RegistryError::Unsupported { reference: self.reference.familiar(), reason }
    }

    fn store_error(&self, source: StoreError) -> RegistryError {
        RegistryError::Store { action: Action::Pulling, reference: self.reference.familiar(), source }
    }
}

fn oci_descriptor(descriptor: &manifest::Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        // Foreign URLs are refused before any download; never follow them.
        urls: None,
        ..OciDescriptor::default()
    }
}

/// One layer blob streamed from the registry into the store.
struct BlobDownload {
    client: Client,
    reference: oci_client::Reference,
    descriptor: OciDescriptor,
    digest: Digest,
    store: Store,
}

/// Why a download failed, carried out of its task.
enum DownloadFailure {
    Oci(oci_client::errors::OciDistributionError),
    Stream(std::io::Error),
    Mismatch { expected: Digest, actual: Digest },
    Store(StoreError),
}

impl DownloadFailure {
    fn into_error(self, job: &PullJob<'_>) -> RegistryError {
        match self {
            DownloadFailure::Oci(e) => describe_oci_error(e, job.context),
            DownloadFailure::Stream(e) => oci_errors::describe_stream_error(e, job.context),
            DownloadFailure::Mismatch { expected, actual } => RegistryError::DigestMismatch {
                reference: job.reference.familiar(),
                what: format!("layer {expected}"),
                expected,
                actual,
            },
            DownloadFailure::Store(e) => job.store_error(e),
        }
    }
}

impl BlobDownload {
    async fn run(self) -> Result<(Digest, u64), DownloadFailure> {
        // Asking for the range from 0 gets a 206 from registries that serve
        // ranges, which oci-client passes through unverified: the blob writer
        // hashes every byte anyway, and hashing twice would halve the speed.
        let response = self
            .client
            .pull_blob_stream_partial(&self.reference, &self.descriptor, 0, None)
            .await
            .map_err(DownloadFailure::Oci)?;
        let mut stream = match response {
            oci_client::client::BlobResponse::Full(s) | oci_client::client::BlobResponse::Partial(s) => s.stream,
        };
        let mut writer = self.store.blob_writer().map_err(DownloadFailure::Store)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(DownloadFailure::Stream)?;
            // A blocking write on a runtime thread: the store's writer is
            // buffered, and a download has nothing else to do meanwhile.
            writer
                .write_all(&chunk)
                .map_err(|e| DownloadFailure::Store(StoreError::Io {
                    op: "write downloaded blob",
                    path: self.store.blob_path(&self.digest),
                    source: e,
                }))?;
        }
        match writer.commit_expecting(&self.digest) {
            Ok(size) => Ok((self.digest, size)),
            Err(StoreError::DigestMismatch { expected, actual, .. }) => Err(DownloadFailure::Mismatch { expected, actual }),
            Err(e) => Err(DownloadFailure::Store(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_named_registries() {
        let named = vec!["registry.internal:5000".to_string(), "plain.example".to_string()];
        for (registry, insecure) in [
            ("127.0.0.1:5000", true),
            ("127.1.2.3", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("registry.internal:5000", true),
            ("registry.internal:5001", false),
            ("plain.example:443", true),
            ("docker.io", false),
            ("10.0.0.1:5000", false),
            ("localhost.example.com", false),
        ] {
            assert_eq!(is_insecure(registry, &named), insecure, "{registry}");
        }
    }

    #[test]
    fn docker_hub_is_served_by_its_index_host() {
        assert_eq!(api_host("docker.io"), "index.docker.io");
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn references_convert_with_digest_winning_over_tag() {
        let r = Reference::parse("busybox").unwrap();
        let o = oci_reference(&r, None);
        assert_eq!((o.registry(), o.repository(), o.tag()), ("docker.io", "library/busybox", Some("latest")));
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let pinned = Reference::parse(&format!("127.0.0.1:5000/a/b:1@sha256:{hex}")).unwrap();
        let o = oci_reference(&pinned, None);
        assert_eq!(o.registry(), "127.0.0.1:5000");
        assert_eq!(o.digest(), Some(format!("sha256:{hex}").as_str()));
    }
}
