//! The rule every backend applies to a state-handle entry name before it becomes part of
//! a key, a znode path or a ConfigMap key: one path segment, never a traversal. Backends
//! with narrower alphabets (Kubernetes ConfigMap keys) check those on top.

use crate::error::{Error, Result};

/// The longest entry name any backend accepts (Kubernetes' limit for a ConfigMap key).
pub const MAX_ENTRY_NAME_BYTES: usize = 253;

/// Checks that `name` can be one segment of a backend key: non-empty, at most
/// [`MAX_ENTRY_NAME_BYTES`], not `.` or `..`, without `/` or NUL.
pub fn check_entry_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        "must not be empty"
    } else if name.len() > MAX_ENTRY_NAME_BYTES {
        "must be at most 253 bytes"
    } else if name == "." || name == ".." {
        "must not be `.` or `..`"
    } else if name.contains('/') || name.contains('\0') {
        "must not contain `/` or NUL"
    } else {
        return Ok(());
    };
    let shown: String = name.chars().take(80).collect();
    Err(Error::Other {
        message: format!("state handle name `{shown}` {problem}"),
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_segment_never_a_traversal() {
        for ok in ["checkpointID-0000000001", "job-1.graph", "a_b"] {
            assert!(check_entry_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "/", "a\0b"] {
            let e = check_entry_name(bad).unwrap_err().to_string();
            assert!(e.contains("state handle name"), "{bad:?}: {e}");
        }
        assert!(check_entry_name(&"x".repeat(254)).is_err());
    }
}
