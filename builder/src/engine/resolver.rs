//! Base images for FROM and COPY --from: named build contexts first, then
//! images in the store, then registries.
//!
//! As with `docker build`, an image already in the store (pulled before,
//! built, or loaded) is used without contacting any registry, unless `--pull`
//! asks to resolve its tag again. Each name is resolved once per build and
//! pinned to the stored image's manifest digest, so that the executor uses
//! exactly what lowering read the config of.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;

use rbuild_frontend::graph::ImageMeta;
use rbuild_frontend::lower::ImageResolver;
use rbuild_store::registry::{Registry, RegistryAccess};
use rbuild_store::{ImportedImage, Platform, Reference, Store, StoredImage};

use crate::engine::named_contexts::{ContextSource, NamedContext, NamedContexts};
use crate::engine::pulling::{open_registry, pull_logged};

/// How base images are found.
#[derive(Clone, Debug)]
pub struct BaseImageOptions {
    /// `--pull`: resolve every tag at its registry again.
    pub always_pull: bool,
    /// Registries spoken to over plain HTTP or unverified HTTPS.
    pub registry_access: RegistryAccess,
    /// `--registry-mirror`: registries (`host[:port][/path]`) tried in order for Docker Hub
    /// images before Docker Hub itself.
    pub registry_mirrors: Vec<String>,
    pub contexts: NamedContexts,
}

impl BaseImageOptions {
    /// The store only as far as it goes, then registries.
    pub fn for_host() -> BaseImageOptions {
        BaseImageOptions {
            always_pull: false,
            registry_access: RegistryAccess::default(),
            registry_mirrors: Vec::new(),
            contexts: NamedContexts::default(),
        }
    }
}

/// The resolver of one build.
pub struct BaseImageResolver<'a> {
    store: &'a Store,
    options: BaseImageOptions,
    /// A registry client per platform pulled for, created by its first pull.
    registries: RefCell<HashMap<Platform, Rc<Result<Registry, String>>>>,
    /// Every name resolved so far, for each platform, and the image it stands for.
    resolved: RefCell<HashMap<(String, Platform), StoredImage>>,
    /// Directory contexts the Dockerfile used, by the name it used.
    directories: RefCell<BTreeMap<String, PathBuf>>,
    log: &'a dyn Fn(&str),
}

impl<'a> BaseImageResolver<'a> {
    /// `log` receives progress lines (pulls, imports).
    pub fn new(store: &'a Store, options: BaseImageOptions, log: &'a dyn Fn(&str)) -> BaseImageResolver<'a> {
        BaseImageResolver {
            store,
            options,
            registries: RefCell::new(HashMap::new()),
            resolved: RefCell::new(HashMap::new()),
            directories: RefCell::new(BTreeMap::new()),
            log,
        }
    }

    /// The directory contexts `COPY --from` used, keyed by the name it used,
    /// for the executor.
    pub fn named_directories(&self) -> BTreeMap<String, PathBuf> {
        self.directories.borrow().clone()
    }

    fn find(&self, name: &str, platform: &Platform) -> Result<StoredImage, String> {
        let key = (name.to_string(), platform.clone());
        if let Some(image) = self.resolved.borrow().get(&key) {
            return Ok(image.clone());
        }
        let image = match self.options.contexts.find(name) {
            Some(context) => self.context_image(name, context, platform)?,
            None => self.by_name(name, platform)?,
        };
        self.resolved.borrow_mut().insert(key, image.clone());
        Ok(image)
    }

    /// A name that is an image reference, or an image id.
    fn by_name(&self, name: &str, platform: &Platform) -> Result<StoredImage, String> {
        // `sha256:<id>` would parse as the tag of an image called sha256, and
        // an id prefix as a repository: ids are looked up locally first.
        if looks_like_id(name) {
            match self.store.lookup(name) {
                Ok(Some(image)) => return Ok(image),
                Ok(None) if name.starts_with("sha256:") => return Err(format!("no image with id {name} in rbuild's store")),
                Ok(None) => {}
                Err(e) => return Err(format!("looking up image {name:?}: {e}")),
            }
        }
        match Reference::parse(name) {
            Ok(reference) => self.image(&reference, platform),
            // `FROM sha256:…` or an id prefix: only ever local.
            Err(parse_error) => match self.store.lookup(name) {
                Ok(Some(image)) => Ok(image),
                Ok(None) => Err(format!("invalid reference format: {parse_error}")),
                Err(e) => Err(format!("looking up image {name:?}: {e}")),
            },
        }
    }

    /// An image from the store or, when it is not there (or `--pull`), from
    /// its registry.
    fn image(&self, reference: &Reference, platform: &Platform) -> Result<StoredImage, String> {
        // A digest names content: what the store has under it is current.
        let use_store = !self.options.always_pull || reference.digest().is_some();
        if use_store {
            let found = self
                .store
                .lookup_for(&reference.full(), platform)
                .map_err(|e| format!("looking up image {}: {e}", reference.familiar()))?;
            if let Some(image) = found.filter(|image| fits_platform(image, platform)) {
                return Ok(image);
            }
        }
        let registry = self.registry(platform)?;
        let registry = registry.as_ref().as_ref().map_err(Clone::clone)?;
        if let Some(image) = self.pull_from_mirror(registry, reference)? {
            return Ok(image);
        }
        pull_logged(registry, self.store, reference, &mut |line| (self.log)(&line))
            .map(|pulled| pulled.image)
            .map_err(|e| e.to_string())
    }

    /// A Docker Hub image from the first mirror that has it, tagged under its Docker Hub
    /// name; `None` when no mirror has it (or it is not a Docker Hub image), as kaniko then
    /// falls back to Docker Hub.
    fn pull_from_mirror(&self, registry: &Registry, reference: &Reference) -> Result<Option<StoredImage>, String> {
        if reference.domain() != DOCKER_HUB {
            return Ok(None);
        }
        for mirror in &self.options.registry_mirrors {
            let mirrored = mirrored_reference(mirror, reference)?;
            match pull_logged(registry, self.store, &mirrored, &mut |line| (self.log)(&line)) {
                Ok(pulled) => {
                    if reference.digest().is_none() && reference.tag().is_some() {
                        self.store
                            .tag_platform(reference, &pulled.image)
                            .map_err(|e| format!("tagging {}: {e}", reference.familiar()))?;
                    }
                    return Ok(Some(pulled.image));
                }
                Err(e) => (self.log)(&format!("registry mirror {mirror} cannot give {}: {e}", reference.familiar())),
            }
        }
        Ok(None)
    }

    fn registry(&self, platform: &Platform) -> Result<Rc<Result<Registry, String>>, String> {
        let mut registries = self.registries.borrow_mut();
        let registry = registries.entry(platform.clone()).or_insert_with(|| {
            Rc::new(open_registry(platform.clone(), self.options.registry_access.clone()).map_err(|e| e.to_string()))
        });
        Ok(registry.clone())
    }

    fn context_image(&self, name: &str, context: &NamedContext, platform: &Platform) -> Result<StoredImage, String> {
        let fail = |e: rbuild_store::StoreError| format!("build context {}: {e}", context.name);
        match &context.source {
            ContextSource::Image(reference) => self.image(reference, platform),
            ContextSource::Directory(dir) => Err(format!(
                "build context {} is the directory {}, not an image",
                context.name,
                dir.display()
            )),
            ContextSource::Archive(path) => {
                (self.log)(&format!("importing build context {} from {}", context.name, path.display()));
                let images = self.store.import_archive_images(path, platform).map_err(fail)?;
                pick_image(name, &context.name, images)
            }
            ContextSource::OciLayout { dir, selector } => {
                (self.log)(&format!("importing build context {} from the OCI layout {}", context.name, dir.display()));
                let images = self.store.import_oci_layout(dir, selector, platform).map_err(fail)?;
                pick_image(name, &context.name, images)
            }
        }
    }
}

/// Docker Hub's registry name in references.
const DOCKER_HUB: &str = "docker.io";

/// `reference` (a Docker Hub image) at `mirror`: the same repository path (`library/NAME` for
/// official images) under the mirror's host and path, with the same tag or digest.
fn mirrored_reference(mirror: &str, reference: &Reference) -> Result<Reference, String> {
    let name = format!("{}/{}", mirror.trim_end_matches('/'), reference.path());
    let text = match (reference.digest(), reference.tag()) {
        (Some(digest), _) => format!("{name}@{digest}"),
        (None, Some(tag)) => format!("{name}:{tag}"),
        (None, None) => name,
    };
    Reference::parse(&text).map_err(|e| format!("invalid registry mirror {mirror:?}: {e}"))
}

/// Whether a stored image was made for `platform` (an image pulled for
/// another platform with `rbuild pull --platform` is not).
fn fits_platform(image: &StoredImage, platform: &Platform) -> bool {
    let config = &image.config;
    if config.os.is_empty() || config.architecture.is_empty() {
        return true;
    }
    platform.matches(&Platform::new(&config.os, &config.architecture, config.variant.as_deref()))
}

/// The image of an archive or layout a context means: the only one, or the
/// one named like the context.
fn pick_image(name: &str, context: &str, images: Vec<ImportedImage>) -> Result<StoredImage, String> {
    if images.len() == 1 {
        return Ok(images.into_iter().next().expect("one image").image);
    }
    let wanted = Reference::parse(name).ok();
    let described: Vec<String> = images
        .iter()
        .map(|i| match i.names.first() {
            Some(n) => n.familiar(),
            None => i.image.config_digest.to_string(),
        })
        .collect();
    images
        .into_iter()
        .find(|i| wanted.as_ref().is_some_and(|w| i.names.contains(w)))
        .map(|i| i.image)
        .ok_or_else(|| {
            format!(
                "build context {context} holds {} images ({}); give an OCI layout with :TAG or @DIGEST, or an archive with one image",
                described.len(),
                described.join(", ")
            )
        })
}

impl ImageResolver for BaseImageResolver<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ImageMeta, String> {
        self.find(reference, platform).map(|image| image.config.meta())
    }

    fn pinned(&self, reference: &str, platform: &Platform) -> String {
        let resolved = self.resolved.borrow();
        let Some(image) = resolved.get(&(reference.to_string(), platform.clone())) else {
            return reference.to_string();
        };
        pinned_name(reference, image)
    }

    fn known_names(&self) -> Vec<String> {
        let tags = self.store.tags().unwrap_or_default();
        tags.keys()
            .filter_map(|name| Reference::parse(name).ok())
            .map(|reference| reference.familiar())
            .collect()
    }

    fn is_named_directory(&self, name: &str) -> bool {
        match self.options.contexts.find(name) {
            Some(NamedContext { source: ContextSource::Directory(dir), .. }) => {
                self.directories.borrow_mut().insert(name.to_string(), dir.clone());
                true
            }
            _ => false,
        }
    }
}

/// `sha256:<hex>` or a bare hex string: what may be an image id (prefix).
fn looks_like_id(name: &str) -> bool {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `name:tag@sha256:<stored manifest>`, which the store's lookup finds
/// whatever the tag points at later; an image id for names that are not
/// references (ids, and context names that are not valid references).
fn pinned_name(name: &str, image: &StoredImage) -> String {
    // An id (prefix) stays an id; a hex name that is a repository (`FROM cafe`) does not.
    if looks_like_id(name) && image.config_digest.hex().starts_with(name.trim_start_matches("sha256:")) {
        return image.config_digest.to_string();
    }
    match Reference::parse(name) {
        Ok(reference) => {
            let repository = reference.familiar_repository();
            match reference.tag() {
                Some(tag) => format!("{repository}:{tag}@{}", image.manifest_digest),
                None => format!("{repository}@{}", image.manifest_digest),
            }
        }
        Err(_) => image.config_digest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_store::{ImageConfig, LayerOptions};

    fn stored_image(store: &Store, architecture: &str) -> StoredImage {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), architecture).unwrap();
        let layer = store.write_layer(dir.path(), &LayerOptions::default()).unwrap();
        let mut config = ImageConfig::new("linux", architecture);
        config.config.set_env("ARCH", architecture);
        store.put_image(&config, &[layer]).unwrap()
    }

    #[test]
    fn docker_hub_names_map_onto_the_mirror() {
        let at = |mirror: &str, name: &str| mirrored_reference(mirror, &Reference::parse(name).unwrap()).unwrap().full();
        assert_eq!(at("mirror.example:5000", "alpine:3.20"), "mirror.example:5000/library/alpine:3.20");
        assert_eq!(at("mirror.example/hub/", "docker.io/team/app"), "mirror.example/hub/team/app:latest");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(at("m.example", &format!("busybox@{digest}")), format!("m.example/library/busybox@{digest}"));
        assert!(mirrored_reference("Bad Mirror", &Reference::parse("alpine").unwrap()).is_err());
    }

    #[test]
    fn store_images_resolve_without_a_registry_and_are_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let host = Platform::host();
        let image = stored_image(&store, &host.architecture);
        store.tag(&Reference::parse("base:1").unwrap(), &image.manifest_digest).unwrap();
        let log = |_: &str| panic!("nothing is pulled or imported");
        let resolver = BaseImageResolver::new(&store, BaseImageOptions::for_host(), &log);

        let meta = resolver.resolve("base:1", &host).unwrap();
        assert_eq!(meta.env_value("ARCH"), Some(host.architecture.as_str()));
        let pinned = resolver.pinned("base:1", &host);
        assert_eq!(pinned, format!("base:1@{}", image.manifest_digest));
        // The pinned name finds the same image, even after the tag moves.
        let other = stored_image(&store, "s390x-not-this");
        store.tag(&Reference::parse("base:1").unwrap(), &other.manifest_digest).unwrap();
        assert_eq!(store.lookup(&pinned).unwrap().unwrap().manifest_digest, image.manifest_digest);

        let by_id = image.config_digest.to_string();
        assert!(resolver.resolve(&by_id, &host).is_ok());
        assert_eq!(resolver.pinned(&by_id, &host), by_id);
        assert!(resolver.resolve("Not A Reference", &host).unwrap_err().contains("invalid reference format"));
    }

    #[test]
    fn named_contexts_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let image = stored_image(&store, &Platform::host().architecture);
        store.tag(&Reference::parse("real:1").unwrap(), &image.manifest_digest).unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir(&assets).unwrap();
        let mut options = BaseImageOptions::for_host();
        options.contexts = NamedContexts::parse(&[
            "base=docker-image://real:1".to_string(),
            format!("assets={}", assets.display()),
        ])
        .unwrap();
        let log = |_: &str| {};
        let resolver = BaseImageResolver::new(&store, options, &log);
        assert!(resolver.resolve("base", &Platform::host()).is_ok());
        assert_eq!(resolver.pinned("base", &Platform::host()), format!("base:latest@{}", image.manifest_digest));
        assert!(resolver.is_named_directory("assets"));
        assert!(!resolver.is_named_directory("base"));
        assert_eq!(resolver.named_directories().get("assets"), Some(&assets));
    }
}
