//! Mapping etcd failures into ha-core's semantic errors, in one place.
//!
//! A request the server definitely refused (bad credentials, permission, invalid or
//! too large request) is mapped here; a write that never left the process is
//! `Unavailable`; everything else got no definite answer and is classified by
//! ha-core's kit ([`unanswered`]): a read changed nothing, a write may have been
//! applied.

use std::future::Future;
use std::time::Duration;

use ha_core::driver::kit::{unanswered, within, Delivery, NoReply};
use ha_core::Error;
use tonic::Code;

/// Why one request failed.
#[derive(Debug)]
pub(crate) enum RpcError {
    /// No reply within the request timeout.
    NoReply(NoReply),
    /// The client or server reported an error.
    Etcd(etcd_client::Error),
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::NoReply(e) => write!(f, "etcd: {e}"),
            RpcError::Etcd(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RpcError {}

impl RpcError {
    fn code(&self) -> Option<Code> {
        match self {
            RpcError::Etcd(etcd_client::Error::GRpcStatus(s)) => Some(s.code()),
            _ => None,
        }
    }

    /// The request never left the process: no connection to the chosen member could
    /// be made (connection refused, unreachable). Safe to retry, nothing changed.
    pub(crate) fn not_sent(&self) -> bool {
        match self {
            RpcError::Etcd(etcd_client::Error::GRpcStatus(s)) => {
                s.code() == Code::Unavailable && s.message().contains("connect error")
            }
            RpcError::Etcd(etcd_client::Error::TransportError(_)) => true,
            _ => false,
        }
    }

    /// Whether etcd answered `Unavailable` for a passing reason (leader changed, no
    /// leader yet, member unreachable): a read may simply be asked again.
    pub(crate) fn transient(&self) -> bool {
        self.code() == Some(Code::Unavailable) || self.not_sent()
    }

    /// The server refused the request without applying it.
    fn definite_refusal(&self) -> Option<Error> {
        // etcd reports a bad password as InvalidArgument; it is an auth failure.
        let auth_failed = matches!(self, RpcError::Etcd(etcd_client::Error::GRpcStatus(s))
            if s.message().contains("authentication failed"));
        if auth_failed {
            return Some(Error::PermissionDenied { what: self.to_string() });
        }
        match self.code()? {
            Code::PermissionDenied | Code::Unauthenticated => Some(Error::PermissionDenied { what: self.to_string() }),
            Code::InvalidArgument | Code::FailedPrecondition | Code::ResourceExhausted | Code::OutOfRange => {
                Some(Error::Other {
                    message: format!("etcd refused the request: {self}"),
                    source: None,
                })
            }
            _ => None,
        }
    }

    /// As the error of a read (nothing changed).
    pub(crate) fn read(self, what: impl Into<String>) -> Error {
        let what = what.into();
        self.definite_refusal()
            .unwrap_or_else(|| unanswered(Delivery::Read, "etcd read", &what, self))
    }

    /// As the error of a write whose outcome is unknown unless refused or not sent.
    pub(crate) fn write(self, op: &'static str, key: impl Into<String>) -> Error {
        let key = key.into();
        if self.not_sent() {
            return Error::unavailable(format!("etcd {op} of {key} (not sent)"), self);
        }
        self.definite_refusal()
            .unwrap_or_else(|| unanswered(Delivery::Write, op, &key, self))
    }
}

/// Runs one request with a deadline.
pub(crate) async fn rpc<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, RpcError> {
    match within(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RpcError::Etcd(e)),
        Err(no_reply) => Err(RpcError::NoReply(no_reply)),
    }
}

/// A `get` under `timeout`, asked again while etcd answers with a transient
/// `Unavailable` and the budget lasts. A read changes nothing, so repeating it is always
/// safe (as etcd's own Go client does for reads); writes are never repeated here.
pub(crate) async fn get(
    client: &etcd_client::Client,
    timeout: Duration,
    key: &str,
    options: Option<etcd_client::GetOptions>,
) -> Result<etcd_client::GetResponse, RpcError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut backoff = Duration::from_millis(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut kv = client.kv_client();
        match rpc(left.max(Duration::from_millis(1)), kv.get(key, options.clone())).await {
            Err(e) if e.transient() && tokio::time::Instant::now() + backoff < deadline => {
                tracing::debug!(%key, error = %e, "transient etcd read failure; asking again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, msg: &str) -> RpcError {
        RpcError::Etcd(etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg)))
    }

    #[test]
    fn lost_replies_are_outcome_unknown() {
        let timeout = RpcError::NoReply(NoReply(Duration::from_millis(5))).write("put", "k");
        assert!(
            matches!(timeout, Error::OutcomeUnknown { op: "put", .. }),
            "{timeout:?}"
        );
        let broken = status(Code::Unavailable, "transport error").write("put", "k");
        assert!(matches!(broken, Error::OutcomeUnknown { .. }), "{broken:?}");
        let unknown = status(Code::Unknown, "h2 protocol error").write("put", "k");
        assert!(matches!(unknown, Error::OutcomeUnknown { .. }), "{unknown:?}");
    }

    #[test]
    fn requests_never_sent_are_unavailable() {
        let refused = status(Code::Unavailable, "tcp connect error").write("put", "k");
        assert!(matches!(refused, Error::Unavailable { .. }), "{refused:?}");
        assert!(refused.is_retryable());
    }

    #[test]
    fn refusals_are_definite() {
        let bad_password = status(
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        )
        .read("connect");
        assert!(
            matches!(bad_password, Error::PermissionDenied { .. }),
            "{bad_password:?}"
        );
        let denied = status(Code::PermissionDenied, "etcdserver: permission denied").write("put", "k");
        assert!(matches!(denied, Error::PermissionDenied { .. }), "{denied:?}");
        let too_large = status(Code::InvalidArgument, "etcdserver: request is too large").write("put", "k");
        assert!(matches!(too_large, Error::Other { .. }), "{too_large:?}");
        let down = status(Code::Unavailable, "etcdserver: no leader").read("k");
        assert!(matches!(down, Error::Unavailable { .. }), "{down:?}");
    }
}
