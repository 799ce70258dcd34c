//! Pulling from and pushing to registries for `rbuild build`, `rbuild pull` and `rbuild
//! push`: which registries are spoken to over plain HTTP, and progress lines.

use rbuild_store::registry::{
    CredentialSource, PullEvent, PullOptions, Pulled, PushEvent, Pushed, Registry, RegistryAccess, RegistryError,
};
use rbuild_store::{Codec, Platform, Reference, Store, StoredImage};

/// The environment variable naming more plain-HTTP registries, separated by
/// commas or white space.
pub const INSECURE_REGISTRIES_VAR: &str = "RBUILD_INSECURE_REGISTRIES";

/// The registries named by `--insecure-registry` and the environment, each
/// checked to be `host[:port]`.
pub fn insecure_registries(flags: &[String]) -> Result<Vec<String>, String> {
    named_registries(flags, &std::env::var(INSECURE_REGISTRIES_VAR).unwrap_or_default(), "insecure registry")
}

/// The registries named by `--skip-tls-verify`, each checked to be `host[:port]`.
pub fn unverified_tls_registries(flags: &[String]) -> Result<Vec<String>, String> {
    named_registries(flags, "", "registry to skip TLS verification for")
}

/// The registry mirrors named by `--registry-mirror`, each checked to be `host[:port][/path]`
/// (kaniko's form; a `https://` in front is dropped, as kaniko drops it).
pub fn registry_mirrors(flags: &[String]) -> Result<Vec<String>, String> {
    flags
        .iter()
        .map(|mirror| {
            let bare = mirror.trim_start_matches("https://").trim_end_matches('/');
            match Reference::parse(&format!("{bare}/library/probe")) {
                // A bare word would be a Docker Hub repository, not a host.
                Ok(r) if bare == r.domain() || bare.starts_with(&format!("{}/", r.domain())) => Ok(bare.to_string()),
                _ => Err(format!("invalid registry mirror {mirror:?}: expected HOST[:PORT][/PATH]")),
            }
        })
        .collect()
}

fn named_registries(flags: &[String], from_env: &str, what: &str) -> Result<Vec<String>, String> {
    let mut all = Vec::new();
    for name in flags.iter().map(String::as_str).chain(from_env.split([',', ' ', '\n', '\t'])) {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        // Docker accepts `http://host` in daemon.json; take the host from it.
        let host = name.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
        let probe = format!("{host}/probe");
        match Reference::parse(&probe) {
            Ok(r) if r.domain() == host => all.push(host.to_string()),
            _ => return Err(format!("invalid {what} {name:?}: expected HOST or HOST:PORT")),
        }
    }
    Ok(all)
}

/// A registry client for pulls for `platform`, with Docker's credentials.
pub fn open_registry(platform: Platform, access: RegistryAccess) -> Result<Registry, RegistryError> {
    Registry::new(PullOptions {
        platform,
        access,
        credentials: CredentialSource::from_env(),
    })
}

/// Pulls `reference`, telling `log` what happens, one line at a time.
pub fn pull_logged(
    registry: &Registry,
    store: &Store,
    reference: &Reference,
    log: &mut dyn FnMut(String),
) -> Result<Pulled, RegistryError> {
    log(format!("pulling {} ({})", reference.familiar(), registry.options().platform));
    let pulled = registry.pull(store, reference, &mut |event| match event {
        PullEvent::Resolved { reference, digest } => log(format!("resolved {reference} to {digest}")),
        PullEvent::Downloading { digest, size } => {
            log(format!("downloading {} ({})", digest, human_size(size)))
        }
        PullEvent::Downloaded { digest, .. } => log(format!("downloaded {digest}")),
        PullEvent::Warning(message) => log(format!("warning: {message}")),
    })?;
    let what = match pulled.downloaded_layers {
        0 => "all layers were already in the store".to_string(),
        1 => "1 layer downloaded".to_string(),
        n => format!("{n} layers downloaded"),
    };
    log(format!("pulled {} as image {} ({what})", reference.familiar(), pulled.image.config_digest));
    Ok(pulled)
}

/// Pushes `image` as `destination`, telling `log` what happens, one line at a time.
pub fn push_logged(
    registry: &Registry,
    store: &Store,
    image: &StoredImage,
    destination: &Reference,
    compression: Codec,
    log: &mut dyn FnMut(String),
) -> Result<Pushed, RegistryError> {
    log(format!("pushing {} to {}", image.config_digest, destination.full()));
    let pushed = registry.push(store, image, destination, compression, &mut |event| log_push_event(event, log))?;
    log(pushed_line(destination, "", &pushed));
    Ok(pushed)
}

/// Pushes the multi-platform image `images` as `destination` (each image, then
/// their index), telling `log` what happens, one line at a time.
pub fn push_index_logged(
    registry: &Registry,
    store: &Store,
    images: &[StoredImage],
    destination: &Reference,
    compression: Codec,
    log: &mut dyn FnMut(String),
) -> Result<Pushed, RegistryError> {
    log(format!("pushing {} platforms' images to {}", images.len(), destination.full()));
    let pushed = registry.push_index(store, images, destination, compression, &mut |event| log_push_event(event, log))?;
    log(pushed_line(destination, "the index ", &pushed));
    Ok(pushed)
}

/// The last line of a push: where it went, what it is (`what`, then its digest), and how
/// many blobs went how.
fn pushed_line(destination: &Reference, what: &str, pushed: &Pushed) -> String {
    format!(
        "pushed {} as {what}{} ({} uploaded, {} mounted, {} already there)",
        destination.full(),
        pushed.digest,
        pushed.uploaded,
        pushed.mounted,
        pushed.existing
    )
}

/// One line for what a push did.
fn log_push_event(event: PushEvent, log: &mut dyn FnMut(String)) {
    match event {
        PushEvent::Exists { digest } => log(format!("{digest}: already in the registry")),
        PushEvent::Mounted { digest, from } => log(format!("{digest}: mounted from {from}")),
        PushEvent::Uploaded { digest, size } => log(format!("{digest}: uploaded ({})", human_size(size))),
        PushEvent::Retrying { step, attempt, reason } => log(format!("{step}: {reason}; trying again (attempt {})", attempt + 1)),
    }
}

/// `1.5 MB`, as Docker shows sizes (powers of 1000).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_mirrors_are_checked() {
        let given = |m: &[&str]| registry_mirrors(&m.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(given(&["mirror.gcr.io", "https://127.0.0.1:5000/hub/"]).unwrap(), ["mirror.gcr.io", "127.0.0.1:5000/hub"]);
        for bad in ["Bad Mirror", "mirror", ""] {
            assert!(given(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn insecure_registry_names_are_checked() {
        let from_env = "a.example:5000, b.example\nhttp://c.example:80/";
        let names = named_registries(&["127.0.0.1:5001".to_string()], from_env, "insecure registry").unwrap();
        assert_eq!(names, ["127.0.0.1:5001", "a.example:5000", "b.example", "c.example:80"]);
        for bad in ["host:port", "a/b", "-x.example"] {
            assert!(named_registries(&[bad.to_string()], "", "insecure registry").is_err(), "{bad}");
            assert!(named_registries(&[], bad, "insecure registry").is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500_000), "1.5 MB");
        assert_eq!(human_size(2_000_000_000), "2.0 GB");
    }
}
