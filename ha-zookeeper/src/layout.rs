//! The znode layout of one cluster-id `C` under the root `R` (default `/ha`):
//!
//! ```text
//! R/C/leader/latch/<group>/_c_<uuid>-latch-<seq>   ephemeral-sequential candidacies
//! R/C/leader/<component>/connection_info            published leader information (JSON)
//! R/C/jobgraphs/<name>                               pointers, with lock children
//! R/C/jobs/<job>/checkpoints/<name>                  …/<name>/locks/<owner> (ephemeral)
//! R/C/jobs/<job>/checkpoint_id_counter               64-bit counter (decimal text)
//! R/C/job-results/<name>
//! ```

use ha_core::{ClusterId, ComponentId, JobId, StoreNamespace};

/// Absolute paths of one cluster's znodes.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    cluster: String,
}

impl Layout {
    pub(crate) fn new(root: &str, cluster: &ClusterId) -> Self {
        Self {
            cluster: format!("{root}/{cluster}"),
        }
    }

    /// `R/C`: everything of the cluster lives below.
    pub(crate) fn cluster(&self) -> &str {
        &self.cluster
    }

    /// `R/C/leader/latch`
    pub(crate) fn latch_root(&self) -> String {
        format!("{}/leader/latch", self.cluster)
    }

    /// `R/C/leader/latch/<group>`
    pub(crate) fn latch_dir(&self, group: &str) -> String {
        format!("{}/leader/latch/{group}", self.cluster)
    }

    /// `R/C/leader/<component>/connection_info`
    pub(crate) fn leader_info(&self, component: &ComponentId) -> String {
        format!("{}/leader/{component}/connection_info", self.cluster)
    }

    /// `R/C/<namespace>`
    pub(crate) fn namespace(&self, ns: &StoreNamespace) -> String {
        format!("{}/{ns}", self.cluster)
    }

    /// `R/C/jobs/<job>/checkpoint_id_counter`
    pub(crate) fn counter(&self, job: &JobId) -> String {
        format!("{}/jobs/{job}/checkpoint_id_counter", self.cluster)
    }
}

/// The parent of an absolute path (`/a/b` → `/a`; `/a` → ``).
pub(crate) fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let p = Layout::new("/ha", &ClusterId::new("c1").unwrap());
        let job = JobId::new("j1").unwrap();
        assert_eq!(p.latch_dir("cluster"), "/ha/c1/leader/latch/cluster");
        let comp = ComponentId::new("dispatcher").unwrap();
        assert_eq!(p.leader_info(&comp), "/ha/c1/leader/dispatcher/connection_info");
        assert_eq!(
            p.namespace(&StoreNamespace::Checkpoints(job.clone())),
            "/ha/c1/jobs/j1/checkpoints"
        );
        assert_eq!(p.counter(&job), "/ha/c1/jobs/j1/checkpoint_id_counter");
        assert_eq!(parent("/ha/c1"), "/ha");
        assert_eq!(parent("/ha"), "");
    }
}
