//! Flink compatibility: a Flink `flink-conf.yaml` / `config.yaml` HA section loads
//! unchanged where the meaning is the same.
//!
//! - **Mode names** (`high-availability.type`, also the old keys `high-availability`
//!   and `recovery.mode`) are case-insensitive; `NONE` is the in-process `embedded`
//!   backend and Flink's Kubernetes factory class
//!   (`org.apache.flink.kubernetes.highavailability.KubernetesHaServicesFactory`)
//!   selects `kubernetes`.
//! - **Flink's key names** are aliases of ha-rs keys ([`ALIASES`]); the backends read
//!   only the ha-rs key. Setting a Flink key and its ha-rs key to different values is
//!   an error naming both.
//! - **Flink keys without a meaning here** ([`IGNORED`], e.g.
//!   `high-availability.jobmanager.port`) are accepted with a warning
//!   ([`HaConfig::warnings`](super::HaConfig::warnings), logged at load); other
//!   unknown `high-availability.*` keys are still errors.
//! - **Cluster-id**: Flink's ZooKeeper examples use a path (`/cluster_one`); the leading
//!   `/` is dropped and `_` becomes `-` (ha-rs ids are DNS-1123 labels, valid on every
//!   backend), with a warning naming the id used.
//!
//! # Defaults that differ from Flink's
//!
//! | key | Flink | ha-rs | why |
//! |---|---|---|---|
//! | `high-availability.type` | `NONE` | `embedded` | same meaning: no external HA service |
//! | `high-availability.cluster-id` | `/default` | `default` | ids are DNS-1123 labels |
//! | `high-availability.zookeeper.path.root` | `/flink` | `/ha` | the znode layout is ha-rs's own, not Flink's |
//! | `high-availability.kubernetes.leader-election.renew-deadline` | 15 s | 10 s | ha-rs requires lease-duration ≥ renew-deadline > retry-period; equal values (Flink's defaults) are accepted with a warning, a lower renew-deadline leaves a margin for clock-rate drift |
//! | `high-availability.kubernetes.leader-election.retry-period` | 5 s | 2 s | as client-go's examples |
//! | `execution.checkpointing.externalized-checkpoint-retention` | `NO_EXTERNALIZED_CHECKPOINTS` | same | |
//! | `job-result-store.delete-on-commit` | `true` | same | |
//! | `high-availability.zookeeper.client.tolerate-suspended-connections` | `false` | not configurable | ha-rs keeps leadership through a suspension for a bounded grace and revokes before the session can expire |
//!
//! | `high-availability.zookeeper.client.retry-wait` | 5 s | 200 ms | faster reconnects; retries are bounded by the session |
//! | `high-availability.zookeeper.client.max-retry-attempts` | 3 | 5 | |
//! | `high-availability.health.tolerance` | n/a | 5 s | ha-rs only (leader health) |
//! | `high-availability.election.observe-interval` | n/a | 100 ms | ha-rs only (leader observers) |
//!
//! The ZooKeeper `session-timeout` (60 s) and `connection-timeout` (15 s) and the
//! Kubernetes `lease-duration` (15 s) have Flink's defaults.

use std::collections::BTreeMap;

use super::{KEY_CLUSTER_ID, KEY_NUM_RETAINED, KEY_STORAGE_DIR, KEY_TYPE};
use crate::error::{Error, Result};
use crate::ids::ClusterId;

/// Flink key (or an older Flink name) → the ha-rs key it means.
pub const ALIASES: &[(&str, &str)] = &[
    ("high-availability", KEY_TYPE),
    ("recovery.mode", KEY_TYPE),
    ("high-availability.zookeeper.storageDir", KEY_STORAGE_DIR),
    ("recovery.zookeeper.storageDir", KEY_STORAGE_DIR),
    ("high-availability.zookeeper.path.namespace", KEY_CLUSTER_ID),
    ("kubernetes.cluster-id", KEY_CLUSTER_ID),
    ("recovery.zookeeper.quorum", "high-availability.zookeeper.quorum"),
    ("recovery.zookeeper.path.root", "high-availability.zookeeper.path.root"),
    ("kubernetes.namespace", "high-availability.kubernetes.namespace"),
    ("kubernetes.config.file", "high-availability.kubernetes.kubeconfig"),
    ("kubernetes.context", "high-availability.kubernetes.context"),
    (
        "high-availability.kubernetes.leader-election.lease-duration",
        "high-availability.kubernetes.lease-duration",
    ),
    (
        "high-availability.kubernetes.leader-election.renew-deadline",
        "high-availability.kubernetes.renew-deadline",
    ),
    (
        "high-availability.kubernetes.leader-election.retry-period",
        "high-availability.kubernetes.retry-period",
    ),
    ("execution.checkpointing.num-retained", KEY_NUM_RETAINED),
];

/// Flink keys that have no meaning here, with the reason shown in the warning.
pub const IGNORED: &[(&str, &str)] = &[
    (
        "high-availability.jobmanager.port",
        "RPC ports are Flink's; ha-rs publishes the address a contender confirms",
    ),
    (
        "high-availability.zookeeper.client.tolerate-suspended-connections",
        "ha-rs always keeps leadership through a suspended connection for a bounded grace and revokes before the session can expire",
    ),
    (
        "high-availability.zookeeper.client.ensemble-tracker",
        "the ZooKeeper client connects to the configured quorum only",
    ),
    (
        "high-availability.zookeeper.client.authorization",
        "use high-availability.zookeeper.client.digest-auth",
    ),
    (
        "high-availability.zookeeper.client.max-close-wait",
        "close is bounded by the session timeout",
    ),
    (
        "high-availability.zookeeper.client.simulated-session-expiration-percent",
        "a Curator option; the session is judged by the server's timeout",
    ),
    ("high-availability.zookeeper.path.jobgraphs", "the znode layout is fixed"),
    ("high-availability.zookeeper.path.checkpoints", "the znode layout is fixed"),
    ("high-availability.zookeeper.path.checkpoint-counter", "the znode layout is fixed"),
    ("high-availability.zookeeper.path.latch", "the znode layout is fixed"),
    ("high-availability.zookeeper.path.leader", "the znode layout is fixed"),
    ("high-availability.zookeeper.path.running-registry", "the znode layout is fixed"),
    ("high-availability.zookeeper.path.mesos-workers", "the znode layout is fixed"),
    (
        "job-result-store.storage-path",
        "job results live in the HA backend, their payloads under high-availability.storageDir",
    ),
];

/// The Kubernetes HA factory class Flink's older configs name as the mode.
const KUBERNETES_FACTORY: &str = "org.apache.flink.kubernetes.highavailability.kuberneteshaservicesfactory";

/// The ha-rs mode a Flink mode value means (case-insensitive).
pub(crate) fn normalize_mode(value: &str) -> String {
    let mode = value.trim().to_ascii_lowercase();
    match mode.as_str() {
        "none" => super::DEFAULT_MODE.to_string(),
        KUBERNETES_FACTORY => "kubernetes".to_string(),
        _ => mode,
    }
}

/// Every Flink alias of `canonical`.
pub(crate) fn aliases_of(canonical: &str) -> impl Iterator<Item = &'static str> + '_ {
    ALIASES.iter().filter(move |(_, c)| *c == canonical).map(|(a, _)| *a)
}

/// The ha-rs key `key` means (itself unless it is a Flink alias).
pub(crate) fn canonical(key: &str) -> &str {
    ALIASES.iter().find(|(a, _)| *a == key).map_or(key, |(_, c)| c)
}

/// Whether `key` is a Flink key accepted without a meaning here.
pub(crate) fn is_ignored(key: &str) -> bool {
    IGNORED.iter().any(|(k, _)| *k == key)
}

/// Rewrites Flink's key names to ha-rs keys and the cluster-id to a valid id; returns
/// the warnings to show. Two keys meaning the same with different values are an error
/// naming both.
pub(crate) fn normalize(entries: &mut BTreeMap<String, String>) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (alias, target) in ALIASES {
        let Some(value) = entries.remove(*alias) else { continue };
        match entries.get(*target) {
            Some(existing) if existing.trim() != value.trim() => {
                return Err(Error::config(
                    *alias,
                    format!("means `{target}`, which is set to a different value; set only one of them"),
                ));
            }
            Some(_) => {}
            None => {
                entries.insert(target.to_string(), value);
            }
        }
    }
    for (key, why) in IGNORED {
        if entries.contains_key(*key) {
            warnings.push(format!("`{key}` is accepted but has no effect in ha-rs: {why}"));
        }
    }
    if let Some(id) = entries.get(KEY_CLUSTER_ID).cloned() {
        let trimmed = id.trim();
        if ClusterId::new(trimmed).is_err() {
            let mapped = trimmed.trim_start_matches('/').replace('_', "-");
            if mapped != trimmed && ClusterId::new(&mapped).is_ok() {
                warnings.push(format!(
                    "`{KEY_CLUSTER_ID}`: Flink's `{trimmed}` is used as `{mapped}` (ids are DNS-1123 labels: lower-case letters, digits and `-`)"
                ));
                entries.insert(KEY_CLUSTER_ID.to_string(), mapped);
            }
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_case_insensitive() {
        assert_eq!(normalize_mode("ZOOKEEPER"), "zookeeper");
        assert_eq!(normalize_mode(" Kubernetes "), "kubernetes");
        assert_eq!(normalize_mode("NONE"), "embedded");
        assert_eq!(
            normalize_mode("org.apache.flink.kubernetes.highavailability.KubernetesHaServicesFactory"),
            "kubernetes"
        );
    }

    #[test]
    fn every_alias_names_a_different_key_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (alias, target) in ALIASES {
            assert_ne!(alias, target);
            assert!(seen.insert(alias), "{alias} listed twice");
            assert_eq!(canonical(alias), *target);
            assert!(!is_ignored(alias));
        }
    }

    #[test]
    fn a_flink_path_cluster_id_becomes_a_label() {
        let mut e: BTreeMap<String, String> = [(KEY_CLUSTER_ID.to_string(), "/cluster_one".to_string())].into();
        let w = normalize(&mut e).unwrap();
        assert_eq!(e[KEY_CLUSTER_ID], "cluster-one");
        assert_eq!(w.len(), 1, "{w:?}");
        // An id that stays invalid after the mapping is left for the id check to refuse.
        let mut e: BTreeMap<String, String> = [(KEY_CLUSTER_ID.to_string(), "Bad_Id".to_string())].into();
        normalize(&mut e).unwrap();
        assert_eq!(e[KEY_CLUSTER_ID], "Bad_Id");
    }
}
