//! Object names, data keys and labels of the Kubernetes layout, and the validation of
//! the cluster-id against Kubernetes naming rules.
//!
//! | object | name | holds |
//! |---|---|---|
//! | cluster ConfigMap | `<cluster-id>-cluster-config-map` | leader lock annotation(s) (`configmap` lock) or term stamps `epoch.<group>` (`lease` lock), `leader.<component>`, `pendingCreate.<ConfigMap>` |
//! | lock Lease (`lease` lock) | `<cluster-id>-leader`, `<cluster-id>-leader-<group>` | the group's leader lock (label `ha-kind=leader-lock`) |
//! | per-job ConfigMap | `<cluster-id>-<job>-config-map` | `jobGraph-<job>`, `checkpointID-<%019d>`, `counter`, `epoch` |
//! | job-result ConfigMap | `<cluster-id>-<job>-job-result` | `jobResult-<job>`, `epoch` |
//!
//! Every object carries the labels `app=<cluster-id>` and
//! `configmap-type=high-availability`, and `ha-kind` (`cluster`, `job`, `job-result`)
//! so that one kind can be listed.

use std::collections::BTreeMap;

use ha_core::config::KEY_CLUSTER_ID;
use ha_core::{ClusterId, ComponentId, Error, JobId, Result};

/// The annotation of the default election group's lock, as client-go's
/// `ConfigMapLock` and Flink write it.
pub(crate) const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// The election group whose lock uses [`LEADER_ANNOTATION`] itself.
pub(crate) const DEFAULT_GROUP: &str = ha_core::DEFAULT_ELECTION_GROUP;
/// Data key of the per-job fencing epoch.
pub(crate) const EPOCH_KEY: &str = "epoch";
/// Prefix of a group's term stamp in the cluster ConfigMap (`lease` lock only).
pub(crate) const STAMP_PREFIX: &str = "epoch.";
/// Data key of the per-job checkpoint-id counter.
pub(crate) const COUNTER_KEY: &str = "counter";
/// Prefix of published leader information in the cluster ConfigMap.
pub(crate) const LEADER_PREFIX: &str = "leader.";
/// Label key naming the cluster.
pub(crate) const LABEL_APP: &str = "app";
/// Prefix of a registered per-job ConfigMap creation in the cluster ConfigMap.
pub(crate) const PENDING_PREFIX: &str = "pendingCreate.";
/// Label key naming the kind of an HA ConfigMap.
pub(crate) const LABEL_KIND: &str = "ha-kind";
/// Label key marking HA objects.
pub(crate) const LABEL_TYPE: &str = "configmap-type";
/// Value of [`LABEL_TYPE`].
pub(crate) const LABEL_TYPE_VALUE: &str = "high-availability";

const CLUSTER_SUFFIX: &str = "-cluster-config-map";
const JOB_SUFFIX: &str = "-config-map";
const RESULT_SUFFIX: &str = "-job-result";
/// Longest job id ha-core allows.
const MAX_JOB_ID: usize = 40;
/// Kubernetes object names (RFC 1123 subdomains).
const MAX_OBJECT_NAME: usize = 253;
/// Kubernetes label values.
const MAX_LABEL_VALUE: usize = 63;

/// The names of one cluster's objects.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    cluster_id: ClusterId,
}

impl Layout {
    /// Checks that every object name and label derived from `cluster_id` is valid
    /// in Kubernetes; the error names `high-availability.cluster-id`.
    pub(crate) fn new(cluster_id: &ClusterId) -> Result<Self> {
        let id = cluster_id.as_str();
        let longest = id.len() + 1 + MAX_JOB_ID + JOB_SUFFIX.len().max(RESULT_SUFFIX.len());
        if id.len() > MAX_LABEL_VALUE || longest > MAX_OBJECT_NAME {
            return Err(Error::config(
                KEY_CLUSTER_ID,
                format!(
                    "`{id}` is too long for Kubernetes: it must fit a label value (63 characters) and ConfigMap names"
                ),
            ));
        }
        let ok = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && id.as_bytes()[0].is_ascii_alphanumeric()
            && id.as_bytes()[id.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(Error::config(
                KEY_CLUSTER_ID,
                format!("`{id}` is not a valid Kubernetes name: use lowercase letters, digits and '-', starting and ending with a letter or digit"),
            ));
        }
        Ok(Self {
            cluster_id: cluster_id.clone(),
        })
    }

    pub(crate) fn cluster_id(&self) -> &ClusterId {
        &self.cluster_id
    }

    /// `<cluster-id>-cluster-config-map`.
    pub(crate) fn cluster_config_map(&self) -> String {
        format!("{}{CLUSTER_SUFFIX}", self.cluster_id)
    }

    /// `<cluster-id>-<job>-config-map`.
    pub(crate) fn job_config_map(&self, job: &JobId) -> String {
        format!("{}-{job}{JOB_SUFFIX}", self.cluster_id)
    }

    /// `<cluster-id>-<job>-job-result`: the job's result (never ends in
    /// `-config-map`, so it cannot collide with a per-job ConfigMap).
    pub(crate) fn job_result_config_map(&self, job: &JobId) -> String {
        format!("{}-{job}{RESULT_SUFFIX}", self.cluster_id)
    }

    /// The kind of the HA ConfigMap `name`, by its name.
    pub(crate) fn kind_of(&self, name: &str) -> Kind {
        if name == self.cluster_config_map() {
            Kind::Cluster
        } else if name.ends_with(RESULT_SUFFIX) {
            Kind::JobResult
        } else {
            Kind::Job
        }
    }

    /// The labels every HA object carries (session Leases: no kind).
    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_APP.to_string(), self.cluster_id.to_string()),
            (LABEL_TYPE.to_string(), LABEL_TYPE_VALUE.to_string()),
        ])
    }

    /// The labels of the HA ConfigMap `name`.
    pub(crate) fn config_map_labels(&self, name: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels();
        labels.insert(LABEL_KIND.to_string(), self.kind_of(name).label().to_string());
        labels
    }

    /// The label selector matching every HA object of the cluster.
    pub(crate) fn selector(&self) -> String {
        format!("{LABEL_APP}={},{LABEL_TYPE}={LABEL_TYPE_VALUE}", self.cluster_id)
    }

    /// The label selector matching the cluster's ConfigMaps of one kind.
    pub(crate) fn kind_selector(&self, kind: Kind) -> String {
        format!("{},{LABEL_KIND}={}", self.selector(), kind.label())
    }
}

/// The kinds of HA ConfigMaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The cluster ConfigMap (lock, leader information, pending creations).
    Cluster,
    /// A per-job ConfigMap (job graph, checkpoints, counter).
    Job,
    /// A job's result.
    JobResult,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Job => "job",
            Kind::JobResult => "job-result",
        }
    }
}

/// The lock annotation of election `group`: the client-go annotation for the default
/// group, `…/leader-<group>` for others.
pub(crate) fn lock_annotation(group: &str) -> Result<String> {
    if group == DEFAULT_GROUP {
        return Ok(LEADER_ANNOTATION.to_string());
    }
    let ok = !group.is_empty()
        && group.len() <= 56
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && group.as_bytes()[0].is_ascii_alphanumeric()
        && group.as_bytes()[group.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Err(Error::Other {
            message: format!(
                "election group `{group}` cannot name a Kubernetes annotation: use at most 56 letters, digits, '-', '_' or '.'"
            ),
            source: None,
        });
    }
    Ok(format!("{LEADER_ANNOTATION}-{group}"))
}

/// Data key of `group`'s term stamp in the cluster ConfigMap (`lease` lock).
pub(crate) fn stamp_key(group: &str) -> String {
    format!("{STAMP_PREFIX}{group}")
}

/// Data key of the published leader information of `component`.
pub(crate) fn leader_key(component: &ComponentId) -> String {
    format!("{LEADER_PREFIX}{component}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_layout() {
        let n = Layout::new(&ClusterId::new("prod-1").unwrap()).unwrap();
        assert_eq!(n.cluster_config_map(), "prod-1-cluster-config-map");
        let job = JobId::new("abc").unwrap();
        assert_eq!(n.job_config_map(&job), "prod-1-abc-config-map");
        assert_eq!(n.job_result_config_map(&job), "prod-1-abc-job-result");
        assert_eq!(n.kind_of("prod-1-abc-job-result"), Kind::JobResult);
        assert_eq!(n.kind_of("prod-1-abc-config-map"), Kind::Job);
        assert_eq!(n.kind_of("prod-1-cluster-config-map"), Kind::Cluster);
        assert_eq!(n.selector(), "app=prod-1,configmap-type=high-availability");
        assert_eq!(n.config_map_labels("prod-1-abc-config-map")["ha-kind"], "job");
        assert_eq!(lock_annotation("cluster").unwrap(), LEADER_ANNOTATION);
        assert_eq!(lock_annotation("jobs").unwrap(), format!("{LEADER_ANNOTATION}-jobs"));
        assert!(lock_annotation("bad/group").is_err());
    }
}
