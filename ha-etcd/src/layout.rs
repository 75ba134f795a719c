//! The key layout of one cluster-id (`P` = key prefix, `C` = cluster-id):
//!
//! | key | what | lease |
//! |---|---|---|
//! | `P/C/leader/latch/<group>/<lease-hex>-<n>` | a candidacy of one election group | session |
//! | `P/C/leader/<component>` | published leader information (JSON) | none |
//! | `P/C/<namespace>/<name>` | state-handle pointer (`jobgraphs/…`, `jobs/<job>/checkpoints/…`, `job-results/…`) | none |
//! | `P/C/locks/<namespace>/<name>/<owner>` | one owner's lock on a pointer | owner's session |
//! | `P/C/jobs/<job>/counter` | checkpoint-id counter (decimal) | none |
//!
//! Locks live in their own subtree so that listing a namespace never reads them and
//! "no lock left" is one range compare.

use ha_core::{ClusterId, ComponentId, JobId};

/// Key builder for one cluster-id.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    root: String,
}

impl Layout {
    pub(crate) fn new(prefix: &str, cluster: &ClusterId) -> Self {
        Self {
            root: format!("{}/{cluster}/", prefix.trim_end_matches('/')),
        }
    }

    /// `P/C/`: every key of the cluster starts with this.
    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    /// `P/C/leader/latch/`: every candidacy of every group.
    pub(crate) fn latch_root(&self) -> String {
        format!("{}leader/latch/", self.root)
    }

    /// `P/C/leader/latch/<group>/`.
    pub(crate) fn latch_dir(&self, group: &str) -> String {
        format!("{}{group}/", self.latch_root())
    }

    /// `P/C/leader/`: leader information (and the latch subtree).
    pub(crate) fn leader_dir(&self) -> String {
        format!("{}leader/", self.root)
    }

    pub(crate) fn leader_info(&self, component: &ComponentId) -> String {
        format!("{}{component}", self.leader_dir())
    }

    /// `P/C/<namespace>/`.
    pub(crate) fn namespace_dir(&self, namespace: &str) -> String {
        format!("{}{namespace}/", self.root)
    }

    /// `P/C/locks/<namespace>/<name>/`.
    pub(crate) fn lock_dir(&self, namespace: &str, name: &str) -> String {
        format!("{}locks/{namespace}/{name}/", self.root)
    }

    pub(crate) fn counter(&self, job: &JobId) -> String {
        format!("{}jobs/{job}/counter", self.root)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Layout::new("/ha/", &ClusterId::new("c1").unwrap());
        assert_eq!(k.root(), "/ha/c1/");
        assert_eq!(k.latch_dir("default"), "/ha/c1/leader/latch/default/");
        let d = ComponentId::new("dispatcher").unwrap();
        assert_eq!(k.leader_info(&d), "/ha/c1/leader/dispatcher");
        assert!(
            k.latch_dir("default").starts_with(&k.leader_dir()),
            "latch keys live beside leader records"
        );
        assert_eq!(
            k.lock_dir("jobgraphs", "jobGraph-x"),
            "/ha/c1/locks/jobgraphs/jobGraph-x/"
        );
    }
}
