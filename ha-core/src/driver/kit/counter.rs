//! The stored form of a checkpoint-id counter: decimal text, so that any CLI can read
//! and repair it.

use crate::error::{Error, Result};

/// The stored form of a checkpoint-id counter value.
pub fn encode_counter(value: u64) -> String {
    value.to_string()
}

/// Parses a stored counter value (decimal, surrounding whitespace allowed); a
/// corrupt value names `key`.
pub fn decode_counter(key: &str, raw: &[u8]) -> Result<u64> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            Error::corrupt(
                key,
                None,
                format!(
                    "checkpoint id counter `{}` is not a decimal u64",
                    String::from_utf8_lossy(raw).chars().take(40).collect::<String>()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_round_trip_and_corruption_names_the_key() {
        assert_eq!(
            decode_counter("k", encode_counter(u64::MAX - 1).as_bytes()).unwrap(),
            u64::MAX - 1
        );
        assert_eq!(decode_counter("k", b" 42\n").unwrap(), 42);
        let err = decode_counter("jobs/j/counter", b"-1").unwrap_err().to_string();
        assert!(
            err.contains("jobs/j/counter") && err.contains("not a decimal u64"),
            "{err}"
        );
    }
}
