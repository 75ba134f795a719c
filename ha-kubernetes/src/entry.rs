//! How a state-handle entry sits in a ConfigMap value: readable JSON with the entry's
//! version, its lock owners and the pointer itself.
//!
//! ```json
//! {"version":8263511,"locks":["ha-3f2a…"],"value":"{\"path\":\"…\",\"size\":…}"}
//! ```
//!
//! `value` holds UTF-8 pointers as text (so `kubectl get cm -o yaml` shows them);
//! other bytes go to `hex`. Versions are random 63-bit numbers drawn on every write,
//! so a compare-and-set never matches an entry that was deleted and re-created.

use bytes::Bytes;
use ha_core::{Error, Result, Version, Versioned};
use serde::{Deserialize, Serialize};

/// One stored entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) version: u64,
    #[serde(default)]
    pub(crate) locks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
}

/// A fresh entry version.
pub(crate) fn new_version() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 >> 1
}

impl Entry {
    pub(crate) fn new(value: &Bytes, owner: &str) -> Self {
        let mut e = Self {
            version: new_version(),
            locks: vec![owner.to_string()],
            value: None,
            hex: None,
        };
        e.set_value(value);
        e
    }

    pub(crate) fn set_value(&mut self, value: &Bytes) {
        match std::str::from_utf8(value) {
            Ok(s) => {
                self.value = Some(s.to_string());
                self.hex = None;
            }
            Err(_) => {
                self.value = None;
                self.hex = Some(value.iter().map(|b| format!("{b:02x}")).collect());
            }
        }
        self.version = new_version();
    }

    pub(crate) fn parse(key: &str, raw: &str) -> Result<Self> {
        serde_json::from_str(raw).map_err(|e| Error::corrupt(key, None, format!("not a valid ha-rs entry: {e}")))
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn bytes(&self, key: &str) -> Result<Bytes> {
        if let Some(v) = &self.value {
            return Ok(Bytes::from(v.clone()));
        }
        let hex = self.hex.as_deref().unwrap_or("");
        let decoded: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        match decoded {
            Some(v) if hex.len() % 2 == 0 => Ok(Bytes::from(v)),
            _ => Err(Error::corrupt(key, None, "entry value is not valid hex")),
        }
    }

    pub(crate) fn versioned(&self, key: &str) -> Result<Versioned<Bytes>> {
        Ok(Versioned {
            value: self.bytes(key)?,
            version: Version(self.version),
        })
    }

    /// Adds `owner`'s lock; whether it was new.
    pub(crate) fn lock(&mut self, owner: &str) -> bool {
        if self.locks.iter().any(|o| o == owner) {
            return false;
        }
        self.locks.push(owner.to_string());
        self.locks.sort();
        true
    }

    /// Drops `owner`'s lock; whether it was held.
    pub(crate) fn unlock(&mut self, owner: &str) -> bool {
        let before = self.locks.len();
        self.locks.retain(|o| o != owner);
        before != self.locks.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_text_and_binary() {
        for value in [
            Bytes::from_static(b"{\"path\":\"x\"}"),
            Bytes::from_static(&[0xff, 0x00, 0x10]),
        ] {
            let e = Entry::new(&value, "me");
            let parsed = Entry::parse("k", &e.to_json()).unwrap();
            assert_eq!(parsed.bytes("k").unwrap(), value);
            assert_eq!(parsed.locks, vec!["me"]);
        }
        let mut e = Entry::new(&Bytes::from_static(b"a"), "me");
        let v = e.version;
        e.set_value(&Bytes::from_static(b"b"));
        assert_ne!(e.version, v);
        assert!(e.lock("other") && !e.lock("other"));
        assert!(e.unlock("me") && !e.unlock("me"));
        assert!(Entry::parse("k", "nope").unwrap_err().to_string().contains("k"));
    }
}
