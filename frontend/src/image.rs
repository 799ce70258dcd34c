//! An image's runtime config: the one type for what a Dockerfile changes (lowering tracks it
//! through a stage), what a base image contributes, and what the store writes as the `config`
//! of Docker's image config JSON.
//!
//! In memory it is shaped for lowering (ENV an ordered map set in constant time, CMD unset
//! apart from empty, the port and volume sets as sets); serde reads and writes Docker's JSON
//! shape through a private mirror of it (`Wire`), with Docker's field order and `omitempty`
//! rules, so a config serialises to the same bytes whoever made it. Fields rbuild does not know
//! (from a base image written by another tool) ride along in `extra` and are written back.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};

/// The PATH an image gets when its base sets none (BuildKit's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Unknown fields of a container config, kept verbatim.
pub type ExtraFields = BTreeMap<String, serde_json::Value>;

/// A container health check (durations in ns; `None`: Docker's default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

/// The runtime config of an image: what a container started from it gets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "Wire", into = "Wire")]
pub struct ImageMeta {
    /// `KEY=value` pairs in the order each key was first set.
    pub env: IndexMap<String, String>,
    pub user: String,
    pub working_dir: String,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    /// `80/tcp`, `53/udp`.
    pub exposed_ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub stop_signal: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub on_build: Vec<String>,
    /// Empty means the default `/bin/sh -c`.
    pub shell: Vec<String>,
    /// `MAINTAINER`. Docker keeps it at the top of the image config (`author`), not in the
    /// container config, so it is not part of this type's JSON: the store writes it there.
    pub author: Option<String>,
    /// Fields of a base image's config that rbuild does not know.
    pub extra: ExtraFields,
}

impl ImageMeta {
    /// The config of BuildKit's empty image, which `FROM scratch` and a stage
    /// on a local directory context start from: `PATH` in the environment and
    /// `/` as the working directory, nothing else.
    pub fn empty() -> Self {
        let mut image = ImageMeta { working_dir: "/".into(), ..ImageMeta::default() };
        image.set_env("PATH", DEFAULT_PATH);
        image
    }

    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }

    /// Sets `key`; a key set before keeps its place in the order.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_string(), value.to_string());
    }

    /// The shell used for shell-form commands.
    pub fn shell_or_default(&self) -> Vec<String> {
        if self.shell.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            self.shell.clone()
        }
    }
}

/// The `{}` value of Docker's port and volume sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Empty {}

/// Docker's container config JSON, field for field, in Docker's order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "User", default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(rename = "ExposedPorts", default, deserialize_with = "nullable", skip_serializing_if = "BTreeMap::is_empty")]
    exposed_ports: BTreeMap<String, Empty>,
    #[serde(rename = "Env", default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    env: Vec<String>,
    #[serde(rename = "Entrypoint", default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    cmd: Vec<String>,
    #[serde(rename = "Volumes", default, deserialize_with = "nullable", skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<String, Empty>,
    #[serde(rename = "WorkingDir", default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    working_dir: String,
    #[serde(rename = "Labels", default, deserialize_with = "nullable", skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(rename = "StopSignal", default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    stop_signal: String,
    /// Windows-only in Docker's reading: read and dropped, as a Linux build writes `false`
    /// (left out).
    #[serde(rename = "ArgsEscaped", default, deserialize_with = "nullable", skip_serializing_if = "is_false")]
    args_escaped: bool,
    #[serde(rename = "Healthcheck", default, skip_serializing_if = "Option::is_none")]
    healthcheck: Option<WireHealthcheck>,
    #[serde(rename = "OnBuild", default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    on_build: Vec<String>,
    #[serde(rename = "Shell", default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    shell: Vec<String>,
    #[serde(flatten)]
    extra: ExtraFields,
}

/// Docker's HEALTHCHECK settings; zero means "use the default".
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct WireHealthcheck {
    /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`.
    #[serde(rename = "Test", default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    test: Vec<String>,
    #[serde(rename = "Interval", default, skip_serializing_if = "is_zero")]
    interval: i64,
    #[serde(rename = "Timeout", default, skip_serializing_if = "is_zero")]
    timeout: i64,
    #[serde(rename = "StartPeriod", default, skip_serializing_if = "is_zero")]
    start_period: i64,
    #[serde(rename = "StartInterval", default, skip_serializing_if = "is_zero")]
    start_interval: i64,
    #[serde(rename = "Retries", default, skip_serializing_if = "is_zero_i32")]
    retries: i32,
}

impl From<Wire> for ImageMeta {
    fn from(c: Wire) -> ImageMeta {
        let nonzero = |v: i64| (v != 0).then_some(v);
        ImageMeta {
            env: c
                .env
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.clone(), String::new()),
                })
                .collect(),
            user: c.user,
            working_dir: c.working_dir,
            cmd: (!c.cmd.is_empty()).then_some(c.cmd),
            entrypoint: (!c.entrypoint.is_empty()).then_some(c.entrypoint),
            labels: c.labels,
            exposed_ports: c.exposed_ports.into_keys().collect(),
            volumes: c.volumes.into_keys().collect(),
            stop_signal: (!c.stop_signal.is_empty()).then_some(c.stop_signal),
            healthcheck: c.healthcheck.map(|h| Healthcheck {
                test: h.test,
                interval: nonzero(h.interval),
                timeout: nonzero(h.timeout),
                start_period: nonzero(h.start_period),
                start_interval: nonzero(h.start_interval),
                retries: nonzero(i64::from(h.retries)),
            }),
            on_build: c.on_build,
            shell: c.shell,
            author: None,
            extra: c.extra,
        }
    }
}

impl From<ImageMeta> for Wire {
    fn from(meta: ImageMeta) -> Wire {
        Wire {
            user: meta.user,
            exposed_ports: meta.exposed_ports.into_iter().map(|p| (p, Empty {})).collect(),
            env: meta.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            entrypoint: meta.entrypoint.unwrap_or_default(),
            cmd: meta.cmd.unwrap_or_default(),
            volumes: meta.volumes.into_iter().map(|v| (v, Empty {})).collect(),
            working_dir: meta.working_dir,
            labels: meta.labels,
            stop_signal: meta.stop_signal.unwrap_or_default(),
            args_escaped: false,
            healthcheck: meta.healthcheck.map(|h| WireHealthcheck {
                test: h.test,
                interval: h.interval.unwrap_or(0),
                timeout: h.timeout.unwrap_or(0),
                start_period: h.start_period.unwrap_or(0),
                start_interval: h.start_interval.unwrap_or(0),
                retries: h.retries.unwrap_or(0) as i32,
            }),
            on_build: meta.on_build,
            shell: meta.shell,
            extra: meta.extra,
        }
    }
}

/// `null` read as the empty value, as Go's JSON decoder reads it.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_json_round_trips_every_field() {
        let meta = ImageMeta {
            env: [("PATH".to_string(), "/bin".to_string()), ("EMPTY".to_string(), String::new())].into_iter().collect(),
            user: "1000:1000".into(),
            working_dir: "/app".into(),
            cmd: Some(vec!["run".into()]),
            entrypoint: Some(vec!["/init".into()]),
            labels: [("a".to_string(), "b".to_string())].into(),
            exposed_ports: ["80/tcp".to_string()].into(),
            volumes: ["/data".to_string()].into(),
            stop_signal: Some("SIGINT".into()),
            healthcheck: Some(Healthcheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval: Some(5),
                retries: Some(2),
                ..Default::default()
            }),
            on_build: vec!["RUN x".into()],
            shell: vec!["/bin/ash".into(), "-c".into()],
            author: None,
            extra: [("Domainname".to_string(), serde_json::json!("example"))].into(),
        };
        let json = serde_json::to_string(&meta).unwrap();
        assert_eq!(
            json,
            r#"{"User":"1000:1000","ExposedPorts":{"80/tcp":{}},"Env":["PATH=/bin","EMPTY="],"Entrypoint":["/init"],"Cmd":["run"],"Volumes":{"/data":{}},"WorkingDir":"/app","Labels":{"a":"b"},"StopSignal":"SIGINT","Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5,"Retries":2},"OnBuild":["RUN x"],"Shell":["/bin/ash","-c"],"Domainname":"example"}"#
        );
        assert_eq!(serde_json::from_str::<ImageMeta>(&json).unwrap(), meta);
    }

    #[test]
    fn nulls_and_empty_values_read_as_unset() {
        let meta: ImageMeta = serde_json::from_str(r#"{"Env":null,"Cmd":[],"Healthcheck":{"Test":["NONE"],"Interval":0},"ArgsEscaped":true}"#).unwrap();
        assert_eq!(meta.cmd, None);
        assert!(meta.env.is_empty());
        assert_eq!(meta.healthcheck.unwrap().interval, None);
        assert_eq!(serde_json::to_string(&ImageMeta::default()).unwrap(), "{}");
    }
}
