//! The contents of the `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`
//! a RUN sees, as BuildKit generates them.

use super::NetworkMode;

/// Where the host keeps its resolver configuration.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Nameservers used when the host has none that work from the sandbox.
const FALLBACK_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

pub(crate) fn hosts(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

pub(crate) fn hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// The host's resolver configuration. With the host's network it is used as
/// it is; in a network namespace of its own, loopback nameservers (a local
/// caching resolver, systemd-resolved's 127.0.0.53) cannot be reached, so
/// they are dropped, and public ones stand in when nothing is left.
pub(crate) fn resolv_conf(network: NetworkMode) -> String {
    let host = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    resolv_conf_from(&host, network)
}

pub(crate) fn resolv_conf_from(host: &str, network: NetworkMode) -> String {
    let mut out = String::new();
    let mut nameservers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            let loopback = addr.starts_with("127.") || addr == "::1";
            if network == NetworkMode::None && loopback {
                continue;
            }
            nameservers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if nameservers == 0 {
        for ns in FALLBACK_NAMESERVERS {
            out.push_str(&format!("nameserver {ns}\n"));
        }
    }
    out
}
