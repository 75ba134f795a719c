//! Flink-style duration values: `500 ms`, `2s`, `1 min`, `1h`, `7 d`; a bare number is
//! milliseconds.

use std::time::Duration;

/// Parses a duration value, or explains what is accepted.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (expected e.g. `500 ms`, `2 s`, `1 min`)"))?;
    let per = match unit.trim() {
        "" | "ms" | "milli" | "millis" | "milliseconds" => Duration::from_millis(1),
        "s" | "sec" | "secs" | "second" | "seconds" => Duration::from_secs(1),
        "m" | "min" | "mins" | "minute" | "minutes" => Duration::from_secs(60),
        "h" | "hour" | "hours" => Duration::from_secs(3600),
        "d" | "day" | "days" => Duration::from_secs(86_400),
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}` (valid: ms, s, min, h, d)"
            ))
        }
    };
    per.checked_mul(u32::try_from(n).map_err(|_| format!("`{text}` is too large"))?)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flink_forms() {
        assert_eq!(parse_duration("500 ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1 min").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-1 s").is_err());
        assert!(parse_duration("3 fortnights")
            .unwrap_err()
            .contains("valid: ms, s, min, h, d"));
        assert_eq!(parse_duration("7 d").unwrap(), Duration::from_secs(7 * 86_400));
    }
}
