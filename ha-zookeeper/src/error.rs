//! Mapping of ZooKeeper client errors into the semantic [`ha_core::Error`].
//!
//! Server answers (no node, node exists, bad version, no auth) are clean failures
//! either way; everything else got no definite answer and is classified by ha-core's
//! kit ([`unanswered`]): a read changed nothing, a write may have been applied.

use std::future::Future;
use std::time::Duration;

use ha_core::driver::kit::{self, unanswered, Delivery};
use ha_core::Error;
use zookeeper_client as zk;

/// Whether `e` is a definite answer of the server (nothing was applied).
pub(crate) fn is_server_answer(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::NoNode
            | zk::Error::NodeExists
            | zk::Error::BadVersion
            | zk::Error::NotEmpty
            | zk::Error::NoAuth
            | zk::Error::InvalidAcl
            | zk::Error::NoChildrenForEphemerals
            | zk::Error::BadArguments(_)
            | zk::Error::QuotaExceeded
            | zk::Error::Unimplemented
            | zk::Error::NotReadOnly
            | zk::Error::Throttled
            | zk::Error::MarshallingError
            | zk::Error::RuntimeInconsistent
    )
}

/// Whether a read failing with `e` is worth retrying after the connection recovers.
pub(crate) fn is_transient(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::Throttled | zk::Error::Custom(_)
    )
}

/// Whether `e` means this client's session is over for good.
pub(crate) fn is_session_gone(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::SessionMoved | zk::Error::NoHosts
    )
}

fn server_answer(key: &str, e: &zk::Error) -> Option<Error> {
    Some(match e {
        zk::Error::NoNode => Error::NotFound { key: key.to_string() },
        zk::Error::NodeExists => Error::AlreadyExists { key: key.to_string() },
        zk::Error::BadVersion => Error::VersionConflict { key: key.to_string() },
        zk::Error::NoAuth | zk::Error::AuthFailed | zk::Error::InvalidAcl => Error::PermissionDenied {
            what: format!("{key} ({e})"),
        },
        _ => return None,
    })
}

/// Maps the error of a read (or of a write known not to have been sent).
pub(crate) fn read_error(key: &str, e: zk::Error) -> Error {
    if let Some(err) = server_answer(key, &e) {
        return err;
    }
    if is_transient(&e) || is_session_gone(&e) {
        return unanswered(Delivery::Read, "ZooKeeper read", key, e);
    }
    Error::Other {
        message: format!("ZooKeeper error on {key}"),
        source: Some(Box::new(e)),
    }
}

/// Maps the error of a write: anything but a definite server answer leaves the outcome
/// unknown.
pub(crate) fn write_error(op: &'static str, key: &str, e: zk::Error) -> Error {
    if let Some(err) = server_answer(key, &e) {
        return err;
    }
    if is_server_answer(&e) {
        return Error::Other {
            message: format!("ZooKeeper refused {op} on {key}"),
            source: Some(Box::new(e)),
        };
    }
    unanswered(Delivery::Write, op, key, e)
}

/// Runs one ZooKeeper request under `limit`: no reply in time is
/// `zk::Error::Timeout`, then classified like any other unanswered request.
pub(crate) async fn within<T>(
    limit: Duration,
    request: impl Future<Output = Result<T, zk::Error>>,
) -> Result<T, zk::Error> {
    kit::within(limit, request).await.unwrap_or(Err(zk::Error::Timeout))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_lost_replies_are_unknown() {
        assert!(matches!(
            write_error("put", "k", zk::Error::ConnectionLoss),
            Error::OutcomeUnknown { .. }
        ));
        assert!(matches!(
            write_error("put", "k", zk::Error::SessionExpired),
            Error::OutcomeUnknown { .. }
        ));
        assert!(matches!(
            write_error("put", "k", zk::Error::BadVersion),
            Error::VersionConflict { .. }
        ));
        assert!(matches!(
            read_error("k", zk::Error::ConnectionLoss),
            Error::Unavailable { .. }
        ));
        assert!(matches!(
            read_error("k", zk::Error::NoAuth),
            Error::PermissionDenied { .. }
        ));
    }
}
