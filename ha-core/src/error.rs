//! The one error type of ha-rs.
//!
//! Every variant is *semantic*: callers match on what went wrong (a conflict, a lost
//! leadership, an unknown outcome) rather than on which backend produced it. Each
//! variant names the key, path or config entry it is about. [`Error::is_retryable`]
//! tells HA code whether trying again can help.

use std::fmt;

/// Boxed source error carried by some variants.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used across ha-rs.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in an HA operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The entry does not exist.
    #[error("not found: {key}")]
    NotFound {
        /// Key or path that was looked up.
        key: String,
    },

    /// An entry with this key already exists (with different content).
    #[error("already exists: {key}")]
    AlreadyExists {
        /// Key that was to be created.
        key: String,
    },

    /// A compare-and-set failed: the entry changed since it was read.
    #[error("version conflict on {key}")]
    VersionConflict {
        /// Key whose version did not match.
        key: String,
    },

    /// The writer does not (or no longer) hold leadership; the write was fenced off
    /// by the backend and did not happen.
    #[error("not leader: write to {key} rejected because the writer's leadership (epoch {epoch}) is no longer valid")]
    NotLeader {
        /// Key the stale leader tried to change.
        key: String,
        /// Epoch of the rejected writer.
        epoch: u64,
    },

    /// The request was sent but its reply was lost: the write may or may not have been
    /// applied. Payloads referenced by it are kept; retry idempotently or re-read.
    #[error("outcome unknown for {op} on {key}")]
    OutcomeUnknown {
        /// Operation that was in flight.
        op: &'static str,
        /// Key the operation targeted.
        key: String,
        /// Underlying transport error.
        #[source]
        source: BoxError,
    },

    /// The backend or storage could not be reached; nothing was changed.
    #[error("unavailable: {what}")]
    Unavailable {
        /// What could not be reached.
        what: String,
        /// Underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// The backend refused the credentials or the caller lacks permission.
    #[error("permission denied: {what}")]
    PermissionDenied {
        /// What was refused.
        what: String,
    },

    /// A configuration entry is invalid.
    #[error("invalid config `{key}`: {message}")]
    InvalidConfig {
        /// The configuration key at fault (Flink-style, e.g. `high-availability.type`).
        key: String,
        /// What is wrong and, for enumerations, the valid values.
        message: String,
    },

    /// Stored data could not be decoded or failed verification.
    #[error("corrupt data at {key}{}: {message}", path_suffix(.path))]
    CorruptData {
        /// Backend key holding the pointer.
        key: String,
        /// Payload path, when the pointer could be read.
        path: Option<String>,
        /// What is wrong with it.
        message: String,
    },

    /// A pointer refers to a payload that no longer exists.
    #[error("missing payload for {key}: {path} does not exist")]
    MissingPayload {
        /// Backend key holding the pointer.
        key: String,
        /// Payload path the pointer refers to.
        path: String,
    },

    /// A value exceeds a size limit of the backend.
    #[error("value for {key} is {size} bytes, above the limit of {limit} bytes")]
    TooLarge {
        /// Key of the value.
        key: String,
        /// Size that was attempted.
        size: usize,
        /// Limit that applies.
        limit: usize,
    },

    /// The request was refused because it would break an invariant of the store (an
    /// id that goes backwards, a checkpoint older than the retained ones); nothing was
    /// changed.
    #[error("refused {key}: {message}")]
    InvalidRequest {
        /// Key or entity the request was about.
        key: String,
        /// Which rule it breaks.
        message: String,
    },

    /// Recovery stopped instead of falling back to older state or hiding entries
    /// (payload storage missing, or an unreadable entry under the `fail` policy);
    /// every entry was left as it was.
    #[error("recovery refused for {job}: {message}")]
    RecoveryRefused {
        /// Job whose recovery stopped.
        job: String,
        /// Why, naming the storage URL, entry key, payload path or config key.
        message: String,
    },

    /// The service or backend instance was closed.
    #[error("closed: {what}")]
    Closed {
        /// What was closed.
        what: String,
    },

    /// An error that fits no other variant. Prefer a semantic variant.
    #[error("{message}")]
    Other {
        /// Description.
        message: String,
        /// Underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

fn path_suffix(path: &Option<String>) -> impl fmt::Display + '_ {
    struct P<'a>(&'a Option<String>);
    impl fmt::Display for P<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Some(p) => write!(f, " (payload {p})"),
                None => Ok(()),
            }
        }
    }
    P(path)
}

impl Error {
    /// Whether repeating the operation may succeed. Conflicts and unknown outcomes
    /// are retryable only by code that re-reads first; HA services do that.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::OutcomeUnknown { .. } | Error::VersionConflict { .. }
        )
    }

    /// Whether this error means leadership was lost (the write was fenced).
    pub fn is_not_leader(&self) -> bool {
        matches!(self, Error::NotLeader { .. })
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidConfig {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Unavailable`].
    pub fn unavailable(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// Shorthand for [`Error::CorruptData`].
    pub fn corrupt(key: impl Into<String>, path: Option<String>, message: impl Into<String>) -> Self {
        Error::CorruptData {
            key: key.into(),
            path,
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Closed`].
    pub fn closed(what: impl Into<String>) -> Self {
        Error::Closed { what: what.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_is_visible() {
        assert!(Error::unavailable("zk", "down").is_retryable());
        assert!(!Error::NotLeader {
            key: "k".into(),
            epoch: 3
        }
        .is_retryable());
        assert!(Error::NotLeader {
            key: "k".into(),
            epoch: 3
        }
        .is_not_leader());
        assert!(!Error::config("high-availability.type", "bad").is_retryable());
    }

    #[test]
    fn corrupt_data_names_key_and_path() {
        let e = Error::corrupt("checkpointID-1", Some("file:///x".into()), "checksum mismatch");
        assert_eq!(
            e.to_string(),
            "corrupt data at checkpointID-1 (payload file:///x): checksum mismatch"
        );
        let e = Error::corrupt("checkpointID-1", None, "not JSON");
        assert_eq!(e.to_string(), "corrupt data at checkpointID-1: not JSON");
    }
}
