//! Error mapping of the Kubernetes backend: every API failure is classified once (the
//! backend's private `ApiError`) before it becomes an `ha_core::Error` naming the key;
//! requests are bounded by the request timeout, and a mutating request that may have
//! been applied is `OutcomeUnknown`.

use std::future::Future;
use std::time::Duration;

use ha_core::driver::kit::{unanswered, within, Delivery};
use ha_core::{BoxError, Error};

use crate::client::MAX_CONFIG_MAP_BYTES;

/// Why a request failed, as far as HA code must know.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 409: the resourceVersion precondition failed, or the object already exists.
    Conflict,
    /// 404.
    NotFound,
    /// 413, or 422 "Too long".
    TooLarge,
    /// 401/403.
    Denied(String),
    /// 422 and other 4xx refusals.
    Rejected(String),
    /// Nothing was applied: the API server refused (429, or its own 503), or a read
    /// failed.
    Unavailable(BoxError),
    /// A write was sent but its outcome is unknown (timeout, closed connection, a 5xx
    /// other than the API server's own 503).
    Unknown(BoxError),
}

/// The reason kube gives a failure whose body was not a Kubernetes `Status` (it
/// came from something in front of the API server).
const UNPARSED_STATUS: &str = "Failed to parse error data";

impl ApiError {
    fn classify(e: kube::Error, mutating: bool) -> Self {
        match e {
            kube::Error::Api(status) => match status.code {
                409 => ApiError::Conflict,
                404 => ApiError::NotFound,
                413 => ApiError::TooLarge,
                422 if status.message.contains("Too long") || status.message.contains("too long") => ApiError::TooLarge,
                401 | 403 => ApiError::Denied(status.message.clone()),
                // 429: the API server's (or a proxy's) rate limit, before anything
                // is forwarded. 503 on a write: "not applied" only if the API server
                // itself answered (a `Status` body); a load balancer or L7 proxy in
                // front of it may answer 503 after the request went through.
                429 => ApiError::Unavailable(Box::new(kube::Error::Api(status))),
                503 if !mutating || status.reason != UNPARSED_STATUS => {
                    ApiError::Unavailable(Box::new(kube::Error::Api(status)))
                }
                code if code >= 500 && mutating => ApiError::Unknown(Box::new(kube::Error::Api(status))),
                code if code >= 500 => ApiError::Unavailable(Box::new(kube::Error::Api(status))),
                _ => ApiError::Rejected(status.message.clone()),
            },
            other if mutating => ApiError::Unknown(Box::new(other)),
            other => ApiError::Unavailable(Box::new(other)),
        }
    }

    /// The `ha_core::Error` for an operation `op` on `key`.
    pub(crate) fn into_error(self, op: &'static str, key: &str) -> Error {
        match self {
            ApiError::Conflict => Error::VersionConflict { key: key.to_string() },
            ApiError::NotFound => Error::NotFound { key: key.to_string() },
            ApiError::TooLarge => Error::TooLarge {
                key: key.to_string(),
                size: MAX_CONFIG_MAP_BYTES + 1,
                limit: MAX_CONFIG_MAP_BYTES,
            },
            ApiError::Denied(m) => Error::PermissionDenied {
                what: format!("{op} {key}: {m}"),
            },
            ApiError::Rejected(m) => Error::Other {
                message: format!("Kubernetes API rejected {op} of {key}: {m}"),
                source: None,
            },
            ApiError::Unavailable(source) => Error::Unavailable {
                what: format!("Kubernetes API ({op} {key})"),
                source: Some(source),
            },
            ApiError::Unknown(source) => unanswered(Delivery::Write, op, key, source),
        }
    }
}

/// Runs one request within `timeout`, classifying its failure.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    mutating: bool,
    fut: impl Future<Output = kube::Result<T>>,
) -> Result<T, ApiError> {
    match within(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::classify(e, mutating)),
        Err(no_reply) if mutating => Err(ApiError::Unknown(Box::new(no_reply))),
        Err(no_reply) => Err(ApiError::Unavailable(Box::new(no_reply))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure("unavailable", reason).with_code(code).boxed())
    }

    #[test]
    fn a_503_on_a_write_is_unknown_unless_the_api_server_sent_it() {
        let own = || api(503, "ServiceUnavailable");
        let proxy = || api(503, UNPARSED_STATUS);
        assert!(matches!(ApiError::classify(own(), true), ApiError::Unavailable(_)));
        assert!(matches!(ApiError::classify(proxy(), true), ApiError::Unknown(_)));
        assert!(matches!(ApiError::classify(proxy(), false), ApiError::Unavailable(_)));
        assert!(matches!(
            ApiError::classify(api(429, UNPARSED_STATUS), true),
            ApiError::Unavailable(_)
        ));
        assert!(matches!(
            ApiError::classify(api(500, "InternalError"), true),
            ApiError::Unknown(_)
        ));
    }
}
