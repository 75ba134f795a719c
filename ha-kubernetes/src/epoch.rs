//! The fencing epoch stored in each per-job and job-result ConfigMap (`epoch` key).
//!
//! A leader writes such a ConfigMap only if the stored epoch *and holder* are its own
//! term's. A term claims a ConfigMap the first time it touches it (its first read
//! while leading, or its first write) by raising the stored epoch in a
//! resourceVersion-guarded update; every later write compares the epoch read in the
//! same guarded update. So once a newer term has read or written a job's records, a
//! stale leader's write fails: it either read the ConfigMap before the claim (its
//! resourceVersion no longer matches) or after it (the epoch is newer). Creations are
//! fenced separately (see `fenced`): a creation is first registered in the cluster
//! ConfigMap, atomically with the lock check, and a new term claims every registered
//! one before it is granted.

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
    /// Same term (epoch and holder): write on.
    Current,
    /// The stored epoch is older (or absent, or another group's, or the same number
    /// with another holder): the writer must hold the lock, then raise the epoch in
    /// the same update.
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
    let Some((group, holder)) = parse_token(fence) else {
        return Ok(EpochCheck::Stale);
    };
    Ok(match stored {
        Some(s) if s.group == group && s.epoch > fence.epoch.0 => EpochCheck::Stale,
        Some(s) if s.group == group && s.epoch == fence.epoch.0 && s.holder == holder => EpochCheck::Current,
        _ => EpochCheck::Raise,
    })
}

/// Whether raising `stored` to `fence` needs no proof from the lock record beyond
/// the writer's own valid term: the stored record is of an older term (or absent, or
/// another group's), never the same epoch under another holder.
pub(crate) fn strictly_older(stored: Option<&EpochRecord>, fence: &Fence) -> bool {
    match (stored, parse_token(fence)) {
        (_, None) => false,
        (Some(s), Some((group, _))) if s.group == group => s.epoch < fence.epoch.0,
        _ => true,
    }
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
        assert_eq!(check(Some(&rec("cluster", 5)), &f).unwrap(), EpochCheck::Raise);
        let same = EpochRecord::for_fence(&f).unwrap();
        assert_eq!(check(Some(&same), &f).unwrap(), EpochCheck::Current);
        assert!(!strictly_older(Some(&rec("cluster", 5)), &f));
        assert!(strictly_older(Some(&rec("cluster", 4)), &f) && strictly_older(None, &f));
        assert_eq!(check(Some(&rec("cluster", 6)), &f).unwrap(), EpochCheck::Stale);
        assert_eq!(check(Some(&rec("jobs", 9)), &f).unwrap(), EpochCheck::Raise);
        let bad = Fence::new(Epoch(5), "no-slash");
        assert_eq!(check(None, &bad).unwrap(), EpochCheck::Stale);
        assert_eq!(EpochRecord::for_fence(&f).unwrap().group, "cluster");
    }

    #[test]
    fn same_epoch_under_another_holder_is_not_current() {
        let f = Fence::new(Epoch(5), token("cluster", "me"));
        let other = EpochRecord {
            group: "cluster".into(),
            epoch: 5,
            holder: "someone-else".into(),
        };
        assert_eq!(check(Some(&other), &f).unwrap(), EpochCheck::Raise);
    }
}
