//! The leader lock record, in client-go's `LeaderElectionRecord` JSON form so that
//! client-go, fabric8 (Flink) and `kubectl` readers understand it.

use serde::{Deserialize, Serialize};

/// `control-plane.alpha.kubernetes.io/leader` annotation value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeaderRecord {
    /// Identity of the holder; empty after a graceful release.
    #[serde(default)]
    pub(crate) holder_identity: String,
    /// Lease duration in whole seconds (informational: every contender judges expiry
    /// with its own configured duration and monotonic clock, as client-go does).
    #[serde(default)]
    pub(crate) lease_duration_seconds: u64,
    /// When the current holder acquired the lock (RFC 3339).
    #[serde(default)]
    pub(crate) acquire_time: String,
    /// When the holder last renewed (RFC 3339; informational only).
    #[serde(default)]
    pub(crate) renew_time: String,
    /// Number of times the lock changed hands; the fencing epoch of the term.
    #[serde(default)]
    pub(crate) leader_transitions: u64,
}

impl LeaderRecord {
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        serde_json::from_str(raw).ok()
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Now, as RFC 3339 UTC with microseconds. Go's RFC 3339 parser (client-go's
/// `metav1.Time`) accepts the fraction. The precision matters: contenders detect
/// renewals by the record's bytes changing, so two renewals must never produce the
/// same record, or a follower would date the last renewal too early and take over
/// while the leader may still act.
pub(crate) fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn record_uses_client_go_field_names() {
        let r = LeaderRecord {
            holder_identity: "a".into(),
            lease_duration_seconds: 15,
            acquire_time: "2024-01-01T00:00:00Z".into(),
            renew_time: "2024-01-01T00:00:05Z".into(),
            leader_transitions: 3,
        };
        let json = r.to_json();
        for f in [
            "holderIdentity",
            "leaseDurationSeconds",
            "acquireTime",
            "renewTime",
            "leaderTransitions",
        ] {
            assert!(json.contains(f), "{json}");
        }
        assert_eq!(LeaderRecord::parse(&json), Some(r));
        // A record written by client-go (extra fields) still parses.
        let go = r#"{"holderIdentity":"x","leaseDurationSeconds":15,"acquireTime":"2024-01-01T00:00:00Z","renewTime":"2024-01-01T00:00:00Z","leaderTransitions":0,"strategy":""}"#;
        assert_eq!(
            LeaderRecord::parse(go).map(|r| r.holder_identity),
            Some("x".to_string())
        );
        let now = now_rfc3339();
        assert!(
            now.ends_with('Z') && now.len() == "2024-01-01T00:00:00.000000Z".len(),
            "{now}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_ne!(now_rfc3339(), now, "consecutive timestamps must differ");
    }
}
