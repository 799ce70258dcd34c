//! The image configuration: Docker's image config JSON, the document whose
//! digest is the image id.
//!
//! These are rbuild's own serde types rather than oci-spec's `ImageConfiguration`:
//! that type has no `Healthcheck`, `OnBuild`, `Shell` or `ArgsEscaped`, which
//! Dockerfiles set and Docker reads. Serialisation is deterministic: fields in a
//! fixed order, maps sorted, and empty values left out the way Docker's
//! `omitempty` leaves them out. Fields rbuild does not know (from a base image
//! written by another tool) are kept in `extra` and written back, so a base
//! image's config survives being extended. The container config (`config`) is
//! the frontend's image metadata type, [`ContainerConfig`] = `ImageMeta`, the
//! one type for what a Dockerfile changes; it carries its own Docker JSON form.

use rbuild_frontend::image::nullable;
pub use rbuild_frontend::image::{ExtraFields, Healthcheck};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;


#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub config: ContainerConfig,
    #[serde(default, deserialize_with = "nullable")]
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// The runtime defaults of a container started from the image: the frontend's image
/// metadata type, which serialises as Docker's container config (its `author` is this
/// config's own `author`, kept at the top).
pub type ContainerConfig = rbuild_frontend::image::ImageMeta;

/// The layers of the image, by diff_id, bottom first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// One step of the image's history. `empty_layer` steps made no layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// The image's runtime config with its author: what a Dockerfile building on it starts from.
    pub fn meta(&self) -> ContainerConfig {
        ContainerConfig { author: self.author.clone(), ..self.config.clone() }
    }

    /// Makes `meta` the image's runtime config; its author goes to the top of the config,
    /// where Docker keeps it.
    pub fn set_meta(&mut self, meta: &ContainerConfig) {
        self.author = meta.author.clone();
        self.config = ContainerConfig { author: None, ..meta.clone() };
    }

    /// An empty config for this platform, as `FROM scratch` starts.
    pub fn new(os: &str, architecture: &str) -> ImageConfig {
        ImageConfig {
            os: os.to_string(),
            architecture: architecture.to_string(),
            ..ImageConfig::default()
        }
    }

    /// An empty config for the platform rbuild runs on.
    pub fn for_host() -> ImageConfig {
        let host = crate::Platform::host();
        let mut config = ImageConfig::new(&host.os, &host.architecture);
        config.variant = host.variant;
        config
    }

    /// Parses a config blob.
    pub fn from_json(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The canonical bytes of this config: what is stored and hashed.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an image config always serialises")
    }

    /// The image id this config would have.
    pub fn digest(&self) -> Digest {
        Digest::of_bytes(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config as Docker's classic builder writes it, with fields rbuild does
    /// not model and `null`s where Go had nil slices.
    const DOCKER_CONFIG: &str = r#"{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"ExposedPorts":{"80/tcp":{}},"Tty":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":3},"Image":"sha256:abc","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,"Shell":["/bin/sh","-c"]},"container":"4b2f","container_config":{"Hostname":"4b2f"},"created":"2024-01-01T00:00:00Z","docker_version":"20.10.24","history":[{"created":"2024-01-01T00:00:00Z","created_by":"/bin/sh -c #(nop) ADD file:abc in / "},{"created":"2024-01-01T00:00:00Z","created_by":"/bin/sh -c #(nop)  CMD [\"sh\"]","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;

    #[test]
    fn parses_a_docker_config_and_keeps_unknown_fields() {
        let config = ImageConfig::from_json(DOCKER_CONFIG.as_bytes()).unwrap();
        assert_eq!(config.architecture, "amd64");
        assert_eq!(config.config.cmd, Some(vec!["sh".to_string()]));
        assert!(config.config.entrypoint.is_none());
        assert_eq!(
            config.config.healthcheck.as_ref().unwrap().interval,
            Some(30_000_000_000)
        );
        assert_eq!(config.config.healthcheck.as_ref().unwrap().retries, Some(3));
        assert_eq!(config.history.len(), 2);
        assert!(config.history[1].empty_layer);
        assert_eq!(config.rootfs.diff_ids.len(), 1);
        assert_eq!(config.extra["docker_version"], "20.10.24");
        assert_eq!(config.config.extra["Hostname"], "");

        // Round trip: what rbuild writes back still has them, and reading that
        // gives the same config.
        let written = config.to_json();
        let value: serde_json::Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(value["container"], "4b2f");
        assert_eq!(value["container_config"]["Hostname"], "4b2f");
        assert_eq!(value["config"]["Image"], "sha256:abc");
        assert_eq!(value["config"]["AttachStdin"], false);
        assert_eq!(ImageConfig::from_json(&written).unwrap(), config);
    }

    #[test]
    fn serialisation_is_fixed_and_omits_empty_fields() {
        let mut config = ImageConfig::new("linux", "amd64");
        config.created = Some("2024-01-01T00:00:00Z".to_string());
        config.config.set_env("A", "1");
        config
            .config
            .labels
            .insert("z".to_string(), "last".to_string());
        config
            .config
            .labels
            .insert("a".to_string(), "first".to_string());
        config
            .config
            .exposed_ports
            .insert("8080/tcp".to_string());
        config.config.healthcheck = Some(Healthcheck {
            test: vec!["NONE".to_string()],
            ..Healthcheck::default()
        });
        config.rootfs.diff_ids.push(Digest::of_bytes(b""));
        config.history.push(History {
            created_by: Some("RUN x".to_string()),
            ..History::default()
        });
        let json = String::from_utf8(config.to_json()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"created":"2024-01-01T00:00:00Z","architecture":"amd64","os":"linux","#,
                r#""config":{"ExposedPorts":{"8080/tcp":{}},"Env":["A=1"],"Labels":{"a":"first","z":"last"},"Healthcheck":{"Test":["NONE"]}},"#,
                r#""rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},"#,
                r#""history":[{"created_by":"RUN x"}]}"#
            )
        );
        assert_eq!(config.digest(), Digest::of_bytes(json.as_bytes()));
    }

    #[test]
    fn scratch_config_has_the_required_fields() {
        let json = String::from_utf8(ImageConfig::new("linux", "arm64").to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"architecture":"arm64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#
        );
        let host = ImageConfig::for_host();
        assert_eq!(host.os, "linux");
        assert!(!host.architecture.is_empty());
    }
}
