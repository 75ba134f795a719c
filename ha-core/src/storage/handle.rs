//! The pointer format: what backends store instead of payloads.
//!
//! A [`StateHandle`] is small, versioned JSON (`{"format":1,"path":…,"size":…,
//! "sha256":…}`) that operators can read with `zkCli get`, `etcdctl get` or
//! `kubectl get cm -o yaml`. The payload it names lives in [`StateStorage`](super::StateStorage).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Pointer format version written by this release.
pub const HANDLE_FORMAT: u32 = 1;

/// A pointer to a payload in [`StateStorage`](super::StateStorage).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateHandle {
    /// Pointer format version.
    pub format: u32,
    /// Object path of the payload inside the storage.
    pub path: String,
    /// Payload size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the payload.
    pub sha256: String,
}

impl StateHandle {
    /// Encodes the pointer as JSON.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes and checks a pointer read from backend entry `key`.
    pub fn from_bytes(key: &str, bytes: &[u8]) -> Result<Self> {
        let handle: StateHandle = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(key, None, format!("pointer is not a valid state handle: {e}")))?;
        if handle.format != HANDLE_FORMAT {
            return Err(Error::corrupt(
                key,
                Some(handle.path),
                format!(
                    "unsupported pointer format {} (this release reads {HANDLE_FORMAT})",
                    handle.format
                ),
            ));
        }
        let hex_ok = handle.sha256.len() == 64 && handle.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_ok || handle.path.is_empty() {
            return Err(Error::corrupt(
                key,
                Some(handle.path),
                "pointer has an empty path or a malformed sha256",
            ));
        }
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> StateHandle {
        StateHandle {
            format: 1,
            path: "ha/c/x".into(),
            size: 3,
            sha256: "a".repeat(64),
        }
    }

    #[test]
    fn round_trips() {
        let h = handle();
        assert_eq!(StateHandle::from_bytes("k", &h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn rejects_garbage_naming_the_key() {
        let err = StateHandle::from_bytes("checkpointID-0000000000000000007", b"\x00\x01garbage").unwrap_err();
        assert!(matches!(err, Error::CorruptData { .. }));
        assert!(err.to_string().contains("checkpointID-0000000000000000007"), "{err}");
    }

    #[test]
    fn rejects_unknown_format_and_bad_checksum() {
        let mut h = handle();
        h.format = 9;
        let err = StateHandle::from_bytes("k", &h.to_bytes()).unwrap_err().to_string();
        assert!(err.contains("unsupported pointer format 9"), "{err}");
        let mut h = handle();
        h.sha256 = "zz".into();
        assert!(StateHandle::from_bytes("k", &h.to_bytes()).is_err());
    }
}
