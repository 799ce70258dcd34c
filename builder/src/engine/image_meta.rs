//! Conversion between the frontend's view of an image config ([`ImageMeta`])
//! and the store's Docker-compatible [`ImageConfig`].

use rbuild_frontend::graph::{Healthcheck as MetaHealthcheck, ImageMeta};
use rbuild_store::config::{ContainerConfig, Empty, Healthcheck, ImageConfig};

/// What a Dockerfile building on `config` starts from.
pub fn meta_from_config(config: &ImageConfig) -> ImageMeta {
    let c = &config.config;
    ImageMeta {
        env: c
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect(),
        user: c.user.clone(),
        working_dir: c.working_dir.clone(),
        cmd: (!c.cmd.is_empty()).then(|| c.cmd.clone()),
        entrypoint: (!c.entrypoint.is_empty()).then(|| c.entrypoint.clone()),
        labels: c.labels.clone(),
        exposed_ports: c.exposed_ports.keys().cloned().collect(),
        volumes: c.volumes.keys().cloned().collect(),
        stop_signal: (!c.stop_signal.is_empty()).then(|| c.stop_signal.clone()),
        healthcheck: c.healthcheck.as_ref().map(|h| MetaHealthcheck {
            test: h.test.clone(),
            interval: nonzero(h.interval),
            timeout: nonzero(h.timeout),
            start_period: nonzero(h.start_period),
            start_interval: nonzero(h.start_interval),
            retries: nonzero(i64::from(h.retries)),
        }),
        on_build: c.on_build.clone(),
        shell: c.shell.clone(),
        author: config.author.clone(),
    }
}

fn nonzero(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}

/// Writes the Dockerfile-controlled fields of `meta` into `config`, keeping
/// whatever else the base image's config carried.
pub fn apply_meta(config: &mut ImageConfig, meta: &ImageMeta) {
    let base = std::mem::take(&mut config.config);
    config.config = ContainerConfig {
        user: meta.user.clone(),
        exposed_ports: meta.exposed_ports.iter().map(|p| (p.clone(), Empty {})).collect(),
        env: meta.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        entrypoint: meta.entrypoint.clone().unwrap_or_default(),
        cmd: meta.cmd.clone().unwrap_or_default(),
        volumes: meta.volumes.iter().map(|v| (v.clone(), Empty {})).collect(),
        working_dir: meta.working_dir.clone(),
        labels: meta.labels.clone(),
        stop_signal: meta.stop_signal.clone().unwrap_or_default(),
        args_escaped: false,
        healthcheck: meta.healthcheck.as_ref().map(|h| Healthcheck {
            test: h.test.clone(),
            interval: h.interval.unwrap_or(0),
            timeout: h.timeout.unwrap_or(0),
            start_period: h.start_period.unwrap_or(0),
            start_interval: h.start_interval.unwrap_or(0),
            retries: h.retries.unwrap_or(0) as i32,
        }),
        on_build: meta.on_build.clone(),
        shell: meta.shell.clone(),
        extra: base.extra,
    };
    config.author = meta.author.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
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
            healthcheck: Some(MetaHealthcheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval: Some(5),
                retries: Some(2),
                ..Default::default()
            }),
            on_build: vec!["RUN x".into()],
            shell: vec!["/bin/ash".into(), "-c".into()],
            author: Some("me".into()),
        };
        let mut config = ImageConfig::for_host();
        apply_meta(&mut config, &meta);
        assert_eq!(meta_from_config(&config), meta);
    }
}
