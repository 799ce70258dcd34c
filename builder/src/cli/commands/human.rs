//! Sizes, times and durations as Docker's CLI prints and reads them, so that
//! `rbuild images` and `docker images` show the same words for the same
//! image (go-units' `HumanSizeWithPrecision`, `HumanDuration`, `RAMInBytes`).

/// `1.98MB`, `3.22kB`, `45B`: decimal units, `precision` significant digits
/// (Docker uses 3 in `images` and `history`, 4 in `system df`).
pub fn size(bytes: u64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_g(value, precision), UNITS[unit])
}

/// Go's `%.{precision}g`: shortest of fixed and exponent form, trailing
/// zeros dropped (so 1.50 is `1.5`, and 999.9 at precision 3 is `1e+03`).
fn go_g(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let precision = precision.max(1);
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is a number");
    if exponent < -4 || exponent >= precision as i32 {
        let mantissa = trim_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else {
        let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
        trim_zeros(&format!("{value:.decimals$}")).to_string()
    }
}

fn trim_zeros(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

/// `2 minutes`, `About an hour`, `3 days`: go-units' `HumanDuration`.
pub fn duration(seconds: i64) -> String {
    let hours = ((seconds as f64) / 3600.0 + 0.5) as i64;
    let minutes = seconds / 60;
    match seconds {
        s if s < 1 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// `2 minutes ago` for an RFC 3339 time, `N/A` when there is none (Docker's
/// `CreatedSince`).
pub fn since(created: Option<&str>, now: i64) -> String {
    match created.and_then(parse_rfc3339) {
        Some(time) => format!("{} ago", duration(now - time)),
        None => "N/A".to_string(),
    }
}

/// Seconds since the epoch of an RFC 3339 time such as
/// `2024-05-01T12:00:00Z` or `2024-05-01T14:00:00.123456789+02:00`
/// (fractions of a second are dropped).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return None;
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m): (i64, i64) = (rest[1..3].parse().ok()?, rest[4..6].parse().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm, the inverse of `timefmt`'s).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `--keep-storage` the way Docker reads memory sizes (`RAMInBytes`):
/// a number with an optional binary unit, `512`, `10MB`, `1.5g`, `2GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!("invalid size {text:?}: expected a number of bytes with an optional unit (k, m, g, t, p), e.g. 10GB")
    };
    let trimmed = text.trim();
    let digits = trimmed
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, unit) = trimmed.split_at(digits);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return Err(invalid()),
    };
    Ok((number * multiplier as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        for (bytes, precision, expected) in [
            (0, 3, "0B"),
            (45, 3, "45B"),
            (999, 3, "999B"),
            (1000, 3, "1kB"),
            (3220, 3, "3.22kB"),
            (1_985_000, 3, "1.99MB"),
            (1_500_000, 3, "1.5MB"),
            (999_900, 3, "1e+03kB"),
            (9_918_000, 4, "9.918MB"),
            (16_430_000, 4, "16.43MB"),
            (2_000_000_000_000, 3, "2TB"),
        ] {
            assert_eq!(size(bytes, precision), expected, "{bytes} at {precision}");
        }
    }

    #[test]
    fn durations_read_like_dockers() {
        for (seconds, expected) in [
            (-5, "Less than a second"),
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (14 * 86_400, "2 weeks"),
            (60 * 86_400, "2 months"),
            (2 * 365 * 86_400, "2 years"),
        ] {
            assert_eq!(duration(seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn rfc3339_times_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.123456789+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(since(Some("1970-01-01T00:00:00Z"), 120), "2 minutes ago");
        assert_eq!(since(None, 0), "N/A");
    }

    #[test]
    fn sizes_parse_like_docker_memory_sizes() {
        for (text, bytes) in [
            ("512", 512),
            ("10k", 10 << 10),
            ("10KB", 10 << 10),
            ("1.5g", 3 << 29),
            ("2GiB", 2 << 30),
            ("3 mb", 3 << 20),
            ("1T", 1 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "ten", "10x", "-1", "1.2.3"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
