//! Durations as written in the config: `250ms`, `5s`, `2m`, `1h`, `1m30s`, `0s`.

use std::time::Duration;

use super::found_text as shown;

/// The longest duration accepted: 100 years (876000h), longer than any
/// timeout can mean. Beyond it a typo such as `99999999999999999999h` would
/// overflow `Duration` while parsing, or `Instant + timeout` on every
/// connection, and panic instead of naming the field.
pub const MAX_DURATION: Duration = Duration::from_secs(876_000 * 3600);

/// Parse a duration such as `250ms`, `5s`, `2m`, `1h`, `1m30s`, `0s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {} (use e.g. 250ms, 5s, 2m, 1h)",
                shown(s)
            ));
        }
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {}", shown(s)))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "us" => value / 1_000_000.0,
            "" => return Err(format!("duration {} needs a unit (ms, s, m, h)", shown(s))),
            _ => {
                return Err(format!(
                    "invalid duration unit {} in {} (use ms, s, m, h)",
                    shown(unit),
                    shown(s)
                ));
            }
        };
        let too_long = || {
            format!(
                "duration {} is too long (at most 876000h, 100 years)",
                shown(s)
            )
        };
        // Checked before converting: from_secs_f64 panics past u64 seconds.
        if secs > MAX_DURATION.as_secs_f64() {
            return Err(too_long());
        }
        total += Duration::from_secs_f64(secs);
        if total > MAX_DURATION {
            return Err(too_long());
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_duration("876000h").unwrap(), MAX_DURATION);
        // Too long: an error, never a panic (these once overflowed
        // Duration::from_secs_f64, or Instant + timeout at run time).
        for huge in [
            "876001h",
            "876000h1s",
            "2600000000000000h",
            "99999999999999999999999h",
            "1".repeat(400).as_str(),
        ] {
            let huge = if huge.ends_with('h') || huge.ends_with('s') {
                huge.to_owned()
            } else {
                format!("{huge}ms")
            };
            let e = parse_duration(&huge).unwrap_err();
            assert!(e.contains("too long"), "{huge}: {e}");
        }
    }
}
