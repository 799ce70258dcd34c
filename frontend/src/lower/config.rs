//! Image-config details of single instructions: WORKDIR paths, EXPOSE ports,
//! STOPSIGNAL names and HEALTHCHECK options.

use crate::graph::Healthcheck;
use crate::instructions::{CommandLine, HealthcheckInstruction};

/// A WORKDIR relative to the current one, cleaned like a Go `path.Clean`.
pub fn join_workdir(current: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        let base = if current.is_empty() { "/" } else { current };
        format!("{base}/{path}")
    };
    clean_absolute(&joined)
}

fn clean_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// EXPOSE specs (`80`, `53/udp`, `8000-8002/tcp`) → `port/proto` keys.
pub fn parse_ports(specs: &[String]) -> Result<Vec<String>, String> {
    let mut ports = Vec::new();
    for spec in specs {
        let (range, proto) = match spec.split_once('/') {
            Some((r, p)) => (r, p.to_ascii_lowercase()),
            None => (spec.as_str(), "tcp".to_string()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!("invalid proto {proto:?} in EXPOSE {spec}"));
        }
        if range.contains(':') {
            return Err(format!("EXPOSE {spec}: an IP address or host port can not be given in a Dockerfile"));
        }
        let number = |s: &str| {
            s.parse::<u16>()
                .map_err(|_| format!("invalid port {s:?} in EXPOSE {spec}"))
        };
        let (start, end) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(range)?, number(range)?),
        };
        if end < start {
            return Err(format!("invalid port range in EXPOSE {spec}"));
        }
        ports.extend((start..=end).map(|p| format!("{p}/{proto}")));
    }
    Ok(ports)
}

const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
    "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
    "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// A STOPSIGNAL must name a signal (`SIGTERM`, `TERM`, `RTMIN+3`) or be a number.
pub fn validate_signal(signal: &str) -> Result<(), String> {
    if signal.parse::<u32>().is_ok_and(|n| n > 0) {
        return Ok(());
    }
    let name = signal.strip_prefix("SIG").unwrap_or(signal);
    let realtime = name.starts_with("RTMIN") || name.starts_with("RTMAX");
    if SIGNALS.contains(&name) || realtime {
        Ok(())
    } else {
        Err(format!("invalid signal: {signal}"))
    }
}

/// Builds the config's health check from the instruction; flags left out keep
/// Docker's defaults (not stored).
pub fn healthcheck(h: &HealthcheckInstruction) -> Result<Healthcheck, String> {
    let Some(command) = &h.command else {
        return Ok(Healthcheck { test: vec!["NONE".into()], ..Default::default() });
    };
    let test = match command {
        CommandLine::Shell(text) => vec!["CMD-SHELL".to_string(), text.clone()],
        CommandLine::Exec(argv) => {
            let mut test = vec!["CMD".to_string()];
            test.extend(argv.iter().cloned());
            test
        }
    };
    let duration = |name: &str, value: &Option<String>| -> Result<Option<i64>, String> {
        value
            .as_deref()
            .map(|v| {
                let ns = parse_go_duration(v).map_err(|e| format!("HEALTHCHECK --{name}={v}: {e}"))?;
                if ns != 0 && ns < 1_000_000 {
                    return Err(format!("HEALTHCHECK --{name} cannot be less than 1ms"));
                }
                Ok(ns)
            })
            .transpose()
            .map(|d| d.filter(|ns| *ns != 0))
    };
    let retries = h
        .retries
        .as_deref()
        .map(|r| {
            r.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("HEALTHCHECK --retries={r}: must be a number of at least 0"))
        })
        .transpose()?
        .filter(|n| *n != 0);
    Ok(Healthcheck {
        test,
        interval: duration("interval", &h.interval)?,
        timeout: duration("timeout", &h.timeout)?,
        start_period: duration("start-period", &h.start_period)?,
        start_interval: duration("start-interval", &h.start_interval)?,
        retries,
    })
}

/// A readable one-line form of a health check for history.
pub fn describe_healthcheck(h: &Healthcheck) -> String {
    match h.test.first().map(String::as_str) {
        Some("NONE") => "NONE".into(),
        Some("CMD-SHELL") => format!("CMD {}", h.test[1..].join(" ")),
        _ => format!("CMD {:?}", &h.test[1..]),
    }
}

/// Parses a Go duration (`1m30s`, `500ms`, `1.5h`) into nanoseconds.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    if text == "0" {
        return Ok(0);
    }
    let mut rest = text;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        if number_len == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Ok(total.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_joins_and_cleans() {
        assert_eq!(join_workdir("", "app"), "/app");
        assert_eq!(join_workdir("/a", "b/../c/"), "/a/c");
        assert_eq!(join_workdir("/a", "/x/./y"), "/x/y");
        assert_eq!(join_workdir("/", ".."), "/");
    }

    #[test]
    fn ports() {
        let p = parse_ports(&["80".into(), "53/UDP".into(), "8000-8001".into()]).unwrap();
        assert_eq!(p, vec!["80/tcp", "53/udp", "8000/tcp", "8001/tcp"]);
        assert!(parse_ports(&["http".into()]).is_err());
        assert!(parse_ports(&["80/foo".into()]).is_err());
        assert!(parse_ports(&["9-1".into()]).is_err());
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "TERM", "9", "SIGRTMIN+3", "SIGUSR1"] {
            assert!(validate_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["SIGNOPE", "0", "", "-1"] {
            assert!(validate_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_go_duration("250ms").unwrap(), 250_000_000);
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("5d").is_err());
    }

    #[test]
    fn healthcheck_options() {
        let h = HealthcheckInstruction {
            command: Some(CommandLine::Shell("true".into())),
            interval: Some("5s".into()),
            timeout: None,
            start_period: Some("0s".into()),
            start_interval: None,
            retries: Some("3".into()),
        };
        let hc = healthcheck(&h).unwrap();
        assert_eq!(hc.test, vec!["CMD-SHELL", "true"]);
        assert_eq!(hc.interval, Some(5_000_000_000));
        assert_eq!(hc.start_period, None);
        assert_eq!(hc.retries, Some(3));
        let bad = HealthcheckInstruction { interval: Some("1us".into()), ..h };
        assert!(healthcheck(&bad).is_err());
    }
}
