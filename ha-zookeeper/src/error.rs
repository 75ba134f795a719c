//! Mapping of ZooKeeper client errors into the semantic [`ha_core::Error`].
//!
//! Reads and writes differ on transport failures: a read that lost its connection
//! changed nothing (`Unavailable`), a write whose reply was lost may have been applied
//! (`OutcomeUnknown`). Server answers (no node, node exists, bad version, no auth) are
//! clean failures either way.

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
        return Error::unavailable(format!("ZooKeeper while reading {key}"), e);
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
    Error::OutcomeUnknown {
        op,
        key: key.to_string(),
        source: Box::new(e),
    }
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
