//! Helpers for backend implementors: the small rules every backend needs, written
//! once (in the spirit of object_store's `client` module).
//!
//! - the checkpoint-id counter's stored form (decimal text, readable with any CLI);
//! - how a request that did not complete in time is reported: a read that timed out
//!   changed nothing (`Unavailable`), a write may have been applied
//!   (`OutcomeUnknown`);
//! - [`bounded`]: a request under a deadline, classified that way.

use std::future::Future;
use std::time::Duration;

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

/// Whether a request only reads or may change state: decides what a request that
/// did not complete means.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Delivery {
    /// Changes nothing: an incomplete one is [`Error::Unavailable`].
    Read,
    /// May change state: an incomplete one is [`Error::OutcomeUnknown`].
    Write,
}

/// The error for `op` on `key` that did not complete within `timeout`.
pub fn timed_out(delivery: Delivery, op: &'static str, key: &str, timeout: Duration) -> Error {
    let source = format!("no reply within {timeout:?}");
    match delivery {
        Delivery::Read => Error::unavailable(format!("{op} of {key}"), source),
        Delivery::Write => Error::OutcomeUnknown {
            op,
            key: key.to_string(),
            source: source.into(),
        },
    }
}

/// Runs `request` under `timeout`; a request that does not complete in time is
/// reported as [`timed_out`] says for its `delivery`.
pub async fn bounded<T>(
    delivery: Delivery,
    op: &'static str,
    key: &str,
    timeout: Duration,
    request: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, request).await {
        Ok(r) => r,
        Err(_) => Err(timed_out(delivery, op, key, timeout)),
    }
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

    #[tokio::test(start_paused = true)]
    async fn incomplete_reads_are_unavailable_and_writes_unknown() {
        let never = || std::future::pending::<Result<()>>();
        let t = Duration::from_secs(1);
        let read = bounded(Delivery::Read, "get", "k", t, never()).await.unwrap_err();
        assert!(matches!(read, Error::Unavailable { .. }), "{read}");
        let write = bounded(Delivery::Write, "put", "k", t, never()).await.unwrap_err();
        assert!(matches!(write, Error::OutcomeUnknown { .. }), "{write}");
        assert_eq!(
            bounded(Delivery::Write, "put", "k", t, async { Ok(7) }).await.unwrap(),
            7
        );
    }
}
