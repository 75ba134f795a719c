//! Identifiers and small value types shared by every layer: cluster, component and job
//! ids, leader sessions, epochs and the fencing token.
//!
//! Names are validated once, on construction, against the strictest rule any backend
//! has (a DNS-1123 label, as Kubernetes object names need), so the same id works on
//! ZooKeeper paths, etcd keys and ConfigMap names alike.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::driver::Validity;
use uuid::Uuid;

use crate::error::{Error, Result};

fn validate_label(kind: &str, s: &str, max: usize) -> std::result::Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("{kind} `{s}` must be 1 to {max} characters long"));
    }
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = s.as_bytes()[0].is_ascii_alphanumeric() && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric();
    if !ok_chars || !ok_ends {
        return Err(format!(
            "{kind} `{s}` may contain only lowercase letters, digits and '-', and must start and end with a letter or digit"
        ));
    }
    Ok(())
}

macro_rules! label_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                validate_label($kind, &s, $max).map_err(|m| Error::Other { message: m, source: None })?;
                Ok(Self(s))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

label_id!(
    /// Identifies one HA cluster; every key and payload of the cluster lives under it.
    /// At most 45 characters so that derived Kubernetes names (`<id>-<job>-config-map`)
    /// stay within limits.
    ClusterId,
    "cluster-id",
    45
);

label_id!(
    /// A named role that needs a leader: `dispatcher`, `resourcemanager`,
    /// `restserver`, `job-<job-id>`.
    ComponentId,
    "component id",
    63
);

label_id!(
    /// An election group: the components that share one backend election (and fail
    /// over together). Validated once here for every backend: at most 56 characters
    /// so that it fits every backend's naming (a Kubernetes lock annotation, a
    /// ZooKeeper node, an etcd key segment).
    ElectionGroup,
    "election group",
    56
);

label_id!(
    /// A job's id. [`JobId::random`] makes a Flink-style 32-hex-digit id.
    JobId,
    "job id",
    40
);

impl ClusterId {
    /// A fresh random cluster-id with the given prefix, for tests and demos.
    pub fn random(prefix: &str) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        Self(format!("{prefix}-{}", &id[..12]))
    }
}

impl JobId {
    /// A fresh random job id (32 lowercase hex digits).
    pub fn random() -> Self {
        Self(Uuid::new_v4().simple().to_string())
    }
}

impl ComponentId {
    /// The component that leads `job`.
    pub fn for_job(job: &JobId) -> Self {
        Self(format!("job-{job}"))
    }
}

/// A leader session: fresh for every grant, carried by every leader message so that
/// late messages from an older session can be told apart.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaderSessionId(pub Uuid);

impl LeaderSessionId {
    /// A new random session id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for LeaderSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for LeaderSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Monotonically increasing fencing epoch of a leadership term, derived from the
/// backend (ZooKeeper czxid, etcd create-revision, Kubernetes leader transitions).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Proof of leadership that a backend checks atomically with every HA write.
///
/// Issued by the election driver when it wins. The `token` is backend-defined (the
/// ZooKeeper latch node path, the etcd election key, the Kubernetes holder identity);
/// `epoch` orders terms. A fence stays valid only as long as the term it came from:
/// once leadership is lost, every write that presents it fails with
/// [`Error::NotLeader`], even if the holder has not yet been told.
///
/// A granted fence also carries its term's [`Validity`]: the services refuse a write
/// locally once it has run out, before asking the backend. Fences compare by term
/// (epoch and token) only.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Fence {
    /// The term's epoch.
    pub epoch: Epoch,
    /// Backend-specific identity of the term.
    pub token: String,
    #[serde(skip)]
    validity: Validity,
}

impl Fence {
    /// Builds a fence (with unbounded local validity).
    pub fn new(epoch: Epoch, token: impl Into<String>) -> Self {
        Self {
            epoch,
            token: token.into(),
            validity: Validity::unbounded(),
        }
    }

    /// The same fence, valid locally as `validity` says.
    pub fn with_validity(mut self, validity: Validity) -> Self {
        self.validity = validity;
        self
    }

    /// The local monotonic time until which the term is known to hold; `None` if the
    /// backend sets no local bound.
    pub fn valid_until(&self) -> Option<tokio::time::Instant> {
        self.validity.valid_until()
    }

    /// Whether the term is still known to hold by the local clock.
    pub fn is_valid(&self) -> bool {
        self.validity.is_valid()
    }

    /// `Ok` while [`is_valid`](Self::is_valid), else the [`Error::NotLeader`] for a
    /// write of `key`: checked before every fenced write leaves the process.
    pub fn check_valid(&self, key: impl Into<String>) -> Result<(), Error> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(self.rejected(key))
        }
    }

    /// The [`Error::NotLeader`] for a rejected write of `key`.
    pub fn rejected(&self, key: impl Into<String>) -> Error {
        Error::NotLeader {
            key: key.into(),
            epoch: self.epoch.0,
        }
    }
}

/// Opaque version of a stored entry, used for compare-and-set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Version(pub u64);

/// A value together with the version it was read at.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version.
    pub version: Version,
}

/// What a confirmed leader publishes for a component: its session and address, plus
/// the term's epoch and the confirmation time for operators.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct LeaderInformation {
    /// Session the leader confirmed.
    pub session_id: LeaderSessionId,
    /// Address at which the leader can be reached.
    pub address: String,
    /// Epoch of the term that published this record.
    #[serde(default)]
    pub epoch: u64,
    /// When the leader confirmed, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub confirmed_at_ms: u64,
}

impl LeaderInformation {
    /// Encodes as the JSON stored by backends.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes the JSON stored by backends; `key` names the entry in errors.
    pub fn from_json(key: &str, bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(key, None, format!("leader information is not valid JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_dns_label_rules() {
        assert!(ClusterId::new("prod-1").is_ok());
        assert!(JobId::random().as_str().len() == 32);
        let err = ClusterId::new("Prod_1").unwrap_err().to_string();
        assert!(err.contains("lowercase"), "{err}");
        assert!(ClusterId::new("-a").is_err());
        assert!(ClusterId::new("").is_err());
        assert!(ClusterId::new("a".repeat(46)).is_err());
        assert!(ComponentId::new("dispatcher").is_ok());
    }

    #[test]
    fn leader_information_round_trips_and_names_key_when_corrupt() {
        let info = LeaderInformation {
            session_id: LeaderSessionId::random(),
            address: "http://a:1".into(),
            epoch: 7,
            confirmed_at_ms: 1_700_000_000_000,
        };
        // Records without the operator fields still decode.
        let old = br#"{"session_id":"6f0c1a0e-8d6f-4d5e-9d55-0f1f7e3c2a11","address":"a"}"#;
        assert_eq!(LeaderInformation::from_json("k", old).unwrap().epoch, 0);
        assert_eq!(LeaderInformation::from_json("k", &info.to_json()).unwrap(), info);
        let err = LeaderInformation::from_json("leader/dispatcher", b"{")
            .unwrap_err()
            .to_string();
        assert!(err.contains("leader/dispatcher"), "{err}");
    }
}
