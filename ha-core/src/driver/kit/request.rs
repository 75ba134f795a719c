//! Requests without a definite answer, classified once for every backend.
//!
//! Once a request may have left the process, only the server knows whether it was
//! applied. A read that got no answer (timeout, connection lost) changed nothing:
//! [`Error::Unavailable`], safe to ask again. A write that got no answer may have been
//! applied: [`Error::OutcomeUnknown`], which callers must resolve by reading, never by
//! blindly repeating. Backends map the server's *definite* answers (not found,
//! conflict, denied) themselves and hand everything else to [`unanswered`].

use std::future::Future;
use std::time::Duration;

use crate::error::{BoxError, Error, Result};

/// Whether a request only reads or may change state: decides what a request that
/// did not complete means.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Delivery {
    /// Changes nothing: an incomplete one is [`Error::Unavailable`].
    Read,
    /// May change state: an incomplete one is [`Error::OutcomeUnknown`].
    Write,
}

/// A request got no reply within its deadline.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("no reply within {0:?}")]
pub struct NoReply(pub Duration);

/// The error for `op` on `key` that got no definite answer, because of `source`
/// (a timeout, a lost connection, a reply from something in front of the server).
pub fn unanswered(delivery: Delivery, op: &'static str, key: &str, source: impl Into<BoxError>) -> Error {
    match delivery {
        Delivery::Read => Error::unavailable(format!("{op} of {key}"), source),
        Delivery::Write => Error::OutcomeUnknown {
            op,
            key: key.to_string(),
            source: source.into(),
        },
    }
}

/// The error for `op` on `key` that did not complete within `timeout`.
pub fn timed_out(delivery: Delivery, op: &'static str, key: &str, timeout: Duration) -> Error {
    unanswered(delivery, op, key, NoReply(timeout))
}

/// Runs `request` under `timeout`: its own output, or [`NoReply`]. For backends whose
/// client reports its own error type, classified afterwards.
pub async fn within<F: Future>(timeout: Duration, request: F) -> std::result::Result<F::Output, NoReply> {
    tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| NoReply(timeout))
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
    match within(timeout, request).await {
        Ok(r) => r,
        Err(_) => Err(timed_out(delivery, op, key, timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test(start_paused = true)]
    async fn within_reports_the_deadline() {
        let t = Duration::from_millis(250);
        assert_eq!(within(t, std::future::pending::<()>()).await, Err(NoReply(t)));
        assert_eq!(within(t, async { 3 }).await, Ok(3));
        let lost = unanswered(Delivery::Write, "put", "jobs/j", NoReply(t)).to_string();
        assert!(lost.contains("jobs/j"), "{lost}");
    }
}
