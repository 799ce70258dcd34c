//! The store handle: [`Store`] opens a store root and composes the handles
//! of the layers below it (blobs, snapshots, images, tags, pins, the caches),
//! and is what the rest of rbuild holds. The operations over the whole store
//! (`maintenance`, the import and export of images) build on it from above.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::ImageConfig;
use crate::content::blobs::{BlobWriter, Blobs};
use crate::content::layer::{self, Layer, LayerOptions};
use crate::content::lease::{self, ContentRef, LeaseHandle};
use crate::content::snapshot::Snapshots;
use crate::content::unpack::{self, UnpackReport};
use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::fs::temp_dir_in;
use crate::metadata::cache_index::CacheIndex;
use crate::metadata::image::{Images, StoredImage};
use crate::metadata::kept_failures::{KeptFailure, KeptFailures};
use crate::metadata::indexes::{self, PlatformImage};
use crate::metadata::pins::Pins;
use crate::metadata::sources::Sources;
use crate::metadata::stat_cache::StatCache;
use crate::metadata::tags::Tags;
use crate::platform::Platform;
use crate::reference::Reference;

/// An image store rooted at one directory. Cheap to clone; any number of
/// processes may use one root at the same time.
///
/// It composes the handles of the layers below: each part of the store is
/// reached through the handle that knows its directory, and every handle of
/// one `Store` records its uses in the same lease.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    /// What this process uses, kept from garbage collection (see `lease`);
    /// shared by the handle's clones, dropped with the last of them.
    lease: LeaseHandle,
    blobs: Blobs,
    snapshots: Snapshots,
    images: Images,
    tags: Tags,
    pins: Pins,
    sources: Sources,
}

impl Store {
    /// The handles of the store at `root`, recording their uses in `lease`.
    pub(crate) fn with_lease(root: PathBuf, lease: LeaseHandle) -> Store {
        let tmp = own_temp_area(&root);
        let blobs = Blobs::new(root.join("blobs").join("sha256"), tmp.clone(), lease.clone());
        let snapshots = Snapshots::new(root.join("snapshots"), tmp.clone(), lease.clone());
        let images = Images::new(root.join("images"), tmp.clone(), blobs.clone());
        let tags = Tags::new(root.clone(), tmp.clone(), blobs.clone());
        let sources = Sources::new(root.join("sources"), tmp.clone());
        let pins = Pins::new(root.join("pins"), tmp, images.clone());
        Store { root, lease, blobs, snapshots, images, tags, pins, sources }
    }

    /// Opens the store at `root`, creating its layout if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for dir in [
            root.join("blobs").join("sha256"),
            root.join("snapshots"),
            root.join("images"),
            root.join("tmp"),
        ] {
            std::fs::create_dir_all(&dir).at("create store directory", &dir)?;
        }
        remove_stale_temp(&root);
        let tmp = own_temp_area(&root);
        std::fs::create_dir_all(&tmp).at("create store directory", &tmp)?;
        lease::remove_stale_leases(&root);
        let lease = LeaseHandle::new(lease::Lease::take(&root, &tmp)?);
        Ok(Store::with_lease(root, lease))
    }

    /// The same store without a lease: the collector's view, whose reads must
    /// neither protect what it is deleting nor wait on its own lock.
    pub(crate) fn without_lease(&self) -> Store {
        Store::with_lease(self.root.clone(), LeaseHandle::default())
    }

    /// Where the store lives unless told otherwise: `$RBUILD_ROOT`; else the first of
    /// `$XDG_DATA_HOME/rbuild` and `$HOME/.local/share/rbuild` that can be written (or
    /// created); else, as in a scratch image with no or a read-only home,
    /// `$TMPDIR/rbuild-UID` (`/tmp` when unset); else `.rbuild` in the working directory.
    pub fn default_root() -> PathBuf {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(root) = var("RBUILD_ROOT") {
            return root;
        }
        let uid = rustix::process::getuid().as_raw();
        let temp = var("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp")).join(format!("rbuild-{uid}"));
        let candidates = [
            var("XDG_DATA_HOME").map(|d| d.join("rbuild")),
            var("HOME").map(|h| h.join(".local").join("share").join("rbuild")),
            Some(temp),
        ];
        candidates
            .into_iter()
            .flatten()
            .find(|dir| writable_or_creatable(dir))
            .unwrap_or_else(|| PathBuf::from(".rbuild"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This process's own temp area, `tmp/<pid>/`: whatever is left there by a
    /// process that died is recognisable and removed by the next one.
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        own_temp_area(&self.root)
    }

    /// Removes this process's temp area, e.g. when a build is interrupted
    /// before its temp files could be dropped.
    pub fn remove_own_temp(&self) -> Result<(), StoreError> {
        let dir = self.tmp_dir();
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io("remove", &dir, e)),
            _ => Ok(()),
        }
    }

    /// A fresh temp directory under the store root, so that what is prepared in
    /// it can be renamed into the store (same filesystem). Removed on drop.
    pub fn tempdir(&self) -> Result<tempfile::TempDir, StoreError> {
        temp_dir_in(&self.tmp_dir())
    }

    /// The handle of the store's blobs, for the layers above.
    pub(crate) fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    pub(crate) fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    pub(crate) fn images(&self) -> &Images {
        &self.images
    }

    pub(crate) fn tags_file(&self) -> &Tags {
        &self.tags
    }

    pub(crate) fn pins(&self) -> &Pins {
        &self.pins
    }

    pub(crate) fn lease_handle(&self) -> &LeaseHandle {
        &self.lease
    }

    /// The path of this handle's lease file, if it has one.
    pub(crate) fn lease_path(&self) -> Option<&Path> {
        self.lease.path()
    }

    /// Registers content this process is about to use, so that no concurrent
    /// `prune` or `rmi` deletes it while this store handle lives. The store's
    /// own accessors (`has_blob`, `open_blob`, `read_blob`, `has_snapshot`,
    /// `ensure_snapshot`, blob and snapshot commits) register what they touch;
    /// this is for content reached another way, e.g. a snapshot path taken
    /// from a cache record: hold it first, then check it exists, then use it.
    pub fn hold(&self, items: &[ContentRef]) -> Result<()> {
        for item in items {
            self.lease.record(item)?;
        }
        Ok(())
    }

    // Blobs (see `content::blobs`).

    /// Where the blob with digest `d` lives (whether or not it is there).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs.blob_path(d)
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blobs.has_blob(d)
    }

    /// Stores `bytes` and returns their digest. Writing a blob that is already
    /// there is a no-op.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        self.blobs.write_blob(bytes)
    }

    /// A writer for a blob whose digest is known only at the end.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        self.blobs.blob_writer()
    }

    /// Reads a whole blob and checks it against its digest. Meant for small
    /// blobs (configs, manifests); stream layers with [`Store::open_blob`].
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        self.blobs.read_blob(d)
    }

    /// Opens a blob for streaming, with its size. The caller that needs the
    /// content verified hashes it while reading (see `digest::HashingReader`).
    pub fn open_blob(&self, d: &Digest) -> Result<(File, u64)> {
        self.blobs.open_blob(d)
    }

    /// Copies a blob into `out`, checking its digest on the way.
    pub fn copy_blob_to(&self, d: &Digest, out: &mut impl Write) -> Result<u64> {
        self.blobs.copy_blob_to(d, out)
    }

    // Layers and snapshots (see `content::layer`, `content::unpack`,
    // `content::snapshot`).

    /// Writes the directory `dir` (a layer diff) as a layer blob.
    pub fn write_layer(&self, dir: &Path, opts: &LayerOptions) -> Result<Layer> {
        layer::write_layer(&self.blobs, dir, opts)
    }

    /// The snapshot of `layer`, unpacked from its blob first if needed.
    /// Warnings of the unpack (skipped device nodes) go to stderr; use
    /// [`Store::ensure_snapshot_reporting`] to have them instead.
    pub fn ensure_snapshot(&self, layer: &Layer) -> Result<PathBuf> {
        let (path, report) = self.ensure_snapshot_reporting(layer)?;
        for warning in report.warnings {
            eprintln!("rbuild: warning: {warning}");
        }
        Ok(path)
    }

    /// Like [`Store::ensure_snapshot`], returning the unpack's warnings.
    pub fn ensure_snapshot_reporting(&self, layer: &Layer) -> Result<(PathBuf, UnpackReport)> {
        unpack::ensure_snapshot(&self.blobs, &self.snapshots, layer)
    }

    /// Where the snapshot of the layer with this diff_id lives.
    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.snapshots.snapshot_path(diff_id)
    }

    pub fn has_snapshot(&self, diff_id: &Digest) -> bool {
        self.snapshots.has_snapshot(diff_id)
    }

    /// Moves the prepared directory `dir` (which must be on the store's
    /// filesystem: make it with [`Store::tempdir`]) into place as the snapshot
    /// of `diff_id`; an existing snapshot is kept and `dir` removed.
    pub fn commit_snapshot(&self, dir: &Path, diff_id: &Digest) -> Result<PathBuf> {
        self.snapshots.commit_snapshot(dir, diff_id)
    }

    /// Removes the snapshot of `diff_id`, if there is one.
    pub fn remove_snapshot(&self, diff_id: &Digest) -> Result<()> {
        self.snapshots.remove_snapshot(diff_id)
    }

    // Images, tags and pins (see `metadata`).

    /// Stores `config` and an OCI manifest for it and `layers` (whose blobs
    /// must already be in the store). The config's `rootfs` is set from the
    /// layers, so it always matches them.
    pub fn put_image(&self, config: &ImageConfig, layers: &[Layer]) -> Result<StoredImage> {
        self.images.put_image(config, layers)
    }

    /// Stores an image as [`Store::put_image`] does, where a layer whose blob is
    /// not here is allowed if a registry it can be fetched from (or mounted
    /// from, by a push there) is recorded (see `metadata::sources`): a build
    /// whose steps were hits in a registry cache. Such an image is complete in
    /// manifest and config; what reads its layers' bytes fetches them first
    /// or reports the blob missing, and a pull of it downloads what is missing.
    pub fn put_image_by_descriptor(&self, config: &ImageConfig, layers: &[Layer]) -> Result<StoredImage> {
        self.images.put_image_by_descriptor(config, layers, &|layer| {
            self.blobs.has_blob(&layer.digest) || self.sources.any_source(&layer.digest).unwrap_or(false)
        })
    }

    /// Records an image whose config blob came from elsewhere (a registry, an
    /// archive) and is kept byte for byte, so the image id stays the one its
    /// source gave it.
    pub fn put_image_with_config_blob(&self, config_digest: &Digest, layers: &[Layer]) -> Result<StoredImage> {
        self.images.put_image_with_config_blob(config_digest, layers)
    }

    /// Loads the image whose manifest has digest `manifest`.
    pub fn image(&self, manifest: &Digest) -> Result<StoredImage> {
        self.images.image(manifest)
    }

    /// Points `name` (which must carry a tag) at the image manifest `manifest`.
    pub fn tag(&self, name: &Reference, manifest: &Digest) -> Result<()> {
        self.tags.tag(name, manifest)
    }

    /// Removes the tag `name`; returns whether it existed.
    pub fn untag(&self, name: &Reference) -> Result<bool> {
        self.tags.untag(name)
    }

    /// All tags, by full reference.
    pub fn tags(&self) -> Result<BTreeMap<String, Digest>> {
        self.tags.tags()
    }

    /// The manifest `name`'s tag points at.
    pub fn resolve_tag(&self, name: &Reference) -> Result<Option<Digest>> {
        self.tags.resolve_tag(name)
    }

    /// Remembers that `blob` is in `repository` (`registry/path`), pulled
    /// or pushed, for cross-repository mounts (see `metadata::sources`).
    pub fn record_blob_source(&self, blob: &Digest, repository: &str) -> Result<()> {
        self.sources.record(blob, repository)
    }

    /// The repository of `registry` that `blob` was last seen in, if any.
    pub fn blob_source(&self, blob: &Digest, registry: &str) -> Result<Option<String>> {
        self.sources.source(blob, registry)
    }

    /// Remembers that the foreign manifest `source` (or, with `platform`, the
    /// index `source` resolved for that platform) is stored as `manifest`.
    pub fn pin_digest(&self, source: &Digest, platform: Option<&Platform>, manifest: &Digest) -> Result<()> {
        self.pins.pin_digest(source, platform, manifest)
    }

    /// The stored image the foreign digest `source` was pinned to (see
    /// `metadata::pins`).
    pub fn pinned_image(&self, source: &Digest, platform: &Platform) -> Result<Option<StoredImage>> {
        self.pins.pinned_image(source, platform)
    }

    /// The foreign digests pinned to the stored manifest `manifest`, sorted.
    pub fn pinned_digests(&self, manifest: &Digest) -> Result<Vec<Digest>> {
        self.pins.pinned_digests(manifest)
    }

    /// Writes the OCI index of `images`, one per platform (a multi-platform
    /// image), and returns its digest, which [`Store::tag`] can name.
    pub fn put_index(&self, images: &[StoredImage]) -> Result<Digest> {
        indexes::put_index(&self.blobs, images)
    }

    /// The per-platform images of the index `digest`; `None` when `digest`
    /// is an image manifest.
    pub fn platform_images(&self, digest: &Digest) -> Result<Option<Vec<PlatformImage>>> {
        indexes::index_images(&self.blobs, digest)
    }

    /// The image manifests a tag's target stands for: itself, or an index's entries.
    pub fn tag_targets(&self, digest: &Digest) -> Result<Vec<Digest>> {
        Ok(match self.platform_images(digest)? {
            Some(images) => images.into_iter().map(|i| i.manifest).collect(),
            None => vec![digest.clone()],
        })
    }

    /// Names `image` as `name` beside the images of other platforms `name`
    /// already names: a tag on an image for another platform becomes an index
    /// of both, and one on an image for the same platform is replaced. This is
    /// how pulls of one tag for several platforms keep them all.
    pub fn tag_platform(&self, name: &Reference, image: &StoredImage) -> Result<()> {
        let platform = indexes::image_platform(image);
        let mut images = Vec::new();
        if let Some(current) = self.resolve_tag(name)? {
            for manifest in self.tag_targets(&current)? {
                // What cannot be read any more is dropped rather than kept broken.
                if let Ok(other) = self.image(&manifest) {
                    if indexes::image_platform(&other) != platform {
                        images.push(other);
                    }
                }
            }
        }
        if images.is_empty() {
            return self.tag(name, &image.manifest_digest);
        }
        images.push(image.clone());
        images.sort_by_key(|i| indexes::image_platform(i).to_string());
        let index = self.put_index(&images)?;
        self.tag(name, &index)
    }

    /// The image `digest` names for `platform`: the manifest itself, or the
    /// index's entry for `platform` (its first when it has none; the caller
    /// checks the platform of what it gets, as with a single-platform image).
    pub fn image_for(&self, digest: &Digest, platform: &Platform) -> Result<StoredImage> {
        match self.platform_images(digest)? {
            None => self.image(digest),
            Some(images) => {
                let chosen = indexes::select(&images, platform).or(images.first()).ok_or_else(|| StoreError::InvalidImage {
                    manifest: digest.clone(),
                    reason: "the index lists no image".to_string(),
                })?;
                self.image(&chosen.manifest)
            }
        }
    }

    /// Finds an image by tag (normalised: `app` is `docker.io/library/app:latest`),
    /// by `name@sha256:<manifest>`, or by image id: the full config digest, or
    /// a unique prefix of it with or without `sha256:`. A multi-platform tag
    /// gives its image for the host.
    pub fn lookup(&self, name_or_id: &str) -> Result<Option<StoredImage>> {
        self.lookup_for(name_or_id, &Platform::host())
    }

    /// [`Store::lookup`], a multi-platform tag giving its image for `platform`.
    pub fn lookup_for(&self, name_or_id: &str, platform: &Platform) -> Result<Option<StoredImage>> {
        if let Some(hex) = name_or_id.strip_prefix("sha256:") {
            return self.lookup_id_prefix(hex);
        }
        let looks_like_id = !name_or_id.is_empty()
            && name_or_id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if let Ok(reference) = Reference::parse(name_or_id) {
            if let Some(manifest) = reference.digest() {
                // A digest a registry served (pulled images are stored under
                // a manifest of rbuild's own; see `pins`).
                if let Some(image) = self.pinned_image(manifest, platform)? {
                    return Ok(Some(image));
                }
                return if self.blobs.has_blob(manifest) {
                    self.image_for(manifest, platform).map(Some)
                } else {
                    Ok(None)
                };
            }
            if let Some(manifest) = self.resolve_tag(&reference)? {
                return self.image_for(&manifest, platform).map(Some);
            }
        }
        // Like Docker, a name that is not a tag may still be an id prefix.
        if looks_like_id {
            return self.lookup_id_prefix(name_or_id);
        }
        Ok(None)
    }

    fn lookup_id_prefix(&self, prefix: &str) -> Result<Option<StoredImage>> {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let ids = self.images.ids_with_prefix(&prefix.to_ascii_lowercase())?;
        match ids.as_slice() {
            [] => Ok(None),
            [id] => match self.images.manifest_for_id(id)? {
                Some(manifest) => self.image(&manifest).map(Some),
                None => Ok(None),
            },
            many => Err(StoreError::AmbiguousImageId {
                prefix: prefix.to_string(),
                matches: many.len(),
            }),
        }
    }

    /// The step cache index of this store.
    pub fn cache_index(&self) -> Result<CacheIndex> {
        CacheIndex::open(&self.root.join("cache"), &self.tmp_dir(), self.blobs.clone())
    }

    /// The stat cache of the tree at `scope` (a canonical path). A missing or
    /// unreadable file is an empty cache.
    pub fn stat_cache(&self, scope: &Path) -> Result<StatCache> {
        StatCache::open(&self.stat_caches_dir(), &self.tmp_dir(), scope)
    }

    // Kept failures (see `metadata::kept_failures`).

    fn kept(&self) -> KeptFailures {
        KeptFailures::new(self.root.join("debug"))
    }

    /// Keeps a failed RUN: `staged` (a directory from [`Store::tempdir`], renamed away by
    /// this) with a record of `layers`, the step's parent, and the builder's `details`.
    pub fn keep_failure(&self, staged: &Path, layers: &[Layer], details: serde_json::Value) -> Result<KeptFailure> {
        self.kept().keep(staged, layers, details)
    }

    /// Every kept failure, newest first.
    pub fn kept_failures(&self) -> Result<Vec<KeptFailure>> {
        self.kept().list()
    }

    /// The kept failure with this id or id prefix.
    pub fn kept_failure(&self, id: &str) -> Result<Option<KeptFailure>> {
        self.kept().find(id)
    }

    /// The directory of kept failure `id`: its record and what was staged with it.
    pub fn kept_failure_dir(&self, id: &str) -> PathBuf {
        self.kept().path(id)
    }

    /// Removes kept failure `id` (its content is the collector's to remove).
    pub fn remove_kept_failure(&self, id: &str) -> Result<()> {
        self.kept().remove(id)
    }

    /// Every directory of `debug/` with its record, if it can be read: for the collector.
    pub(crate) fn kept_failure_entries(&self) -> Result<Vec<(PathBuf, Option<KeptFailure>)>> {
        self.kept().entries()
    }

    /// Where the stat caches are kept.
    pub(crate) fn stat_caches_dir(&self) -> PathBuf {
        self.root.join("cache").join("stat")
    }
}

/// This process's own temp area in the store at `root`.
fn own_temp_area(root: &Path) -> PathBuf {
    root.join("tmp").join(std::process::id().to_string())
}

/// Removes the temp areas of processes that no longer run (killed builds).
fn remove_stale_temp(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root.join("tmp")) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            // Another process may be removing it at the same time; either wins.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether `dir` can be written, or made: its nearest existing ancestor is a
/// writable directory.
fn writable_or_creatable(dir: &Path) -> bool {
    let existing = dir.ancestors().find(|a| a.exists());
    existing.is_some_and(|a| a.is_dir() && rustix::fs::access(a, rustix::fs::Access::WRITE_OK).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_root_fallback_needs_a_writable_place() {
        let dir = tempfile::tempdir().unwrap();
        assert!(writable_or_creatable(&dir.path().join("not/yet/there")));
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(!writable_or_creatable(&file.join("below")));
    }

    #[test]
    fn open_creates_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        for sub in ["blobs/sha256", "snapshots", "images", "tmp"] {
            assert!(store.root().join(sub).is_dir(), "{sub}");
        }
        // Opening again is fine.
        Store::open(store.root()).unwrap();
        let tmp = store.tempdir().unwrap();
        assert!(tmp.path().starts_with(store.root().join("tmp")));
    }
}

#[cfg(test)]
mod temp_area_tests {
    use super::*;

    #[test]
    fn own_temp_area_is_removed_and_dead_processes_areas_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let own = store.tmp_dir();
        assert!(own.ends_with(std::process::id().to_string()));
        std::fs::write(own.join("leftover"), b"x").unwrap();
        // A pid that cannot be running: above the kernel's pid_max limit.
        let dead = dir.path().join("tmp").join("4194305");
        std::fs::create_dir_all(dead.join("sub")).unwrap();
        let not_a_pid = dir.path().join("tmp").join("keep-me");
        std::fs::create_dir(&not_a_pid).unwrap();

        Store::open(dir.path()).unwrap();
        assert!(!dead.exists(), "a dead process's area is removed");
        assert!(own.join("leftover").exists(), "a live process's area is kept");
        assert!(not_a_pid.exists(), "only pid-named areas are touched");

        store.remove_own_temp().unwrap();
        assert!(!own.exists());
        store.remove_own_temp().unwrap();
    }
}
