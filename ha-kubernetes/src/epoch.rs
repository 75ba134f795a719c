//! The fencing epoch stored in each per-job ConfigMap (`epoch` key).
//!
//! A leader writes a per-job ConfigMap only if the stored epoch is its own term's. A
//! new leader raises the epoch of every per-job ConfigMap of its group before it is
//! granted, and any leader raises it (after checking the lock record) on its first
//! write to a ConfigMap it has not yet touched; every write is a resourceVersion-
//! guarded update that compares the epoch read in the same step. So a stale leader's
//! write to a per-job ConfigMap fails once the new term has raised the epoch there.

use ha_core::{Fence, Result};
use serde::{Deserialize, Serialize};

/// Value of the `epoch` key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EpochRecord {
    /// Election group whose term owns the ConfigMap.
    pub(crate) group: String,
    /// `leaderTransitions` of that term.
    pub(crate) epoch: u64,
    /// Holder identity of that term (for operators).
    pub(crate) holder: String,
}

/// The group and holder identity a fence token names (`<group>/<holder>`).
pub(crate) fn parse_token(fence: &Fence) -> Option<(&str, &str)> {
    fence.token.split_once('/')
}

/// The token of a term of `group` held by `holder`.
pub(crate) fn token(group: &str, holder: &str) -> String {
    format!("{group}/{holder}")
}

/// How a fence relates to the epoch stored in a ConfigMap.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EpochCheck {
    /// Same term: write on.
    Current,
    /// The stored epoch is older (or absent, or another group's): the writer must
    /// prove it holds the lock, then raise the epoch in the same update.
    Raise,
    /// A later term owns the ConfigMap.
    Stale,
}

impl EpochRecord {
    pub(crate) fn for_fence(fence: &Fence) -> Option<Self> {
        let (group, holder) = parse_token(fence)?;
        Some(Self {
            group: group.to_string(),
            epoch: fence.epoch.0,
            holder: holder.to_string(),
        })
    }

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        serde_json::from_str(raw).ok()
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Compares `fence` with the stored record (`None`: no epoch yet, or unreadable).
pub(crate) fn check(stored: Option<&EpochRecord>, fence: &Fence) -> Result<EpochCheck> {
    let Some((group, _)) = parse_token(fence) else {
        return Ok(EpochCheck::Stale);
    };
    Ok(match stored {
        Some(s) if s.group == group && s.epoch > fence.epoch.0 => EpochCheck::Stale,
        Some(s) if s.group == group && s.epoch == fence.epoch.0 => EpochCheck::Current,
        _ => EpochCheck::Raise,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ha_core::Epoch;

    use super::*;

    #[test]
    fn epochs_order_terms_of_a_group() {
        let f = Fence::new(Epoch(5), token("cluster", "me"));
        let rec = |g: &str, e| EpochRecord {
            group: g.into(),
            epoch: e,
            holder: "x".into(),
        };
        assert_eq!(check(None, &f).unwrap(), EpochCheck::Raise);
        assert_eq!(check(Some(&rec("cluster", 4)), &f).unwrap(), EpochCheck::Raise);
        assert_eq!(check(Some(&rec("cluster", 5)), &f).unwrap(), EpochCheck::Current);
        assert_eq!(check(Some(&rec("cluster", 6)), &f).unwrap(), EpochCheck::Stale);
        assert_eq!(check(Some(&rec("jobs", 9)), &f).unwrap(), EpochCheck::Raise);
        let bad = Fence::new(Epoch(5), "no-slash");
        assert_eq!(check(None, &bad).unwrap(), EpochCheck::Stale);
        assert_eq!(EpochRecord::for_fence(&f).unwrap().group, "cluster");
    }
}
