//! `hactl --flink`: the HA state of a real Apache Flink cluster (Flink's own layout on
//! ZooKeeper and Kubernetes), read from the cluster's Flink configuration file:
//! leaders, jobs, checkpoints with their storage paths, counters, and the records
//! left behind (orphans), which `cleanup` removes.
//!
//! Flink's values are Java-serialized; [`java_serial`] reads that format and
//! [`handles`] what the values mean. [`zookeeper`] and [`kubernetes`] read each
//! store's layout into one [`FlinkStatus`].

pub(crate) mod handles;
pub(crate) mod java_serial;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod render;
mod results;
#[cfg(feature = "zookeeper")]
mod zookeeper;

use std::path::Path;

use ha_core::HaConfig;
use serde::Serialize;

use handles::{LeaderInfo, StateHandle};

/// Everything `hactl --flink status` shows.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FlinkStatus {
    /// `zookeeper` or `kubernetes`.
    pub(crate) store: String,
    /// Where the cluster's records are (`/flink/cluster_one`, `namespace ha-test`).
    pub(crate) location: String,
    /// Flink's cluster-id as it appears in the store.
    pub(crate) cluster_id: String,
    /// Whether a leader is running (ZooKeeper: a latch participant; Kubernetes: an
    /// unexpired lease).
    pub(crate) leader_running: bool,
    /// The leader lock's holder and when it was acquired or last renewed.
    pub(crate) holder: Option<Holder>,
    /// One entry per component with published leader information.
    pub(crate) leaders: Vec<Leader>,
    /// Every job with a record in the store.
    pub(crate) jobs: Vec<Job>,
    /// Records nothing alive uses any more.
    pub(crate) orphans: Vec<Orphan>,
    /// Values that could not be decoded, each naming its key.
    pub(crate) errors: Vec<String>,
}

/// Who holds the leader lock.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Holder {
    /// ZooKeeper: the latch node (and its session); Kubernetes: `holderIdentity`.
    pub(crate) identity: String,
    /// Kubernetes: `renewTime`; ZooKeeper: when the latch node was created.
    pub(crate) renew_time: Option<String>,
    /// Kubernetes: the lease duration; a lease not renewed for that long is over.
    pub(crate) lease_duration: Option<String>,
}

/// One component's published leader.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Leader {
    /// `dispatcher`, `resource_manager`, `rest_server`, `job-<id>`, ...
    pub(crate) component: String,
    /// The record's key.
    pub(crate) key: String,
    /// Address and session id, if the record decoded.
    pub(crate) info: Option<LeaderInfo>,
}

/// One job.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Job {
    /// The job id (32 hex digits).
    pub(crate) job_id: String,
    /// The stored execution plan (job graph), if any.
    pub(crate) execution_plan: Option<StateHandle>,
    /// Retained completed checkpoints, by id.
    pub(crate) checkpoints: Vec<Checkpoint>,
    /// The checkpoint id counter: the next checkpoint's id.
    pub(crate) counter: Option<i64>,
    /// The job's entry in the JobResultStore: it finished.
    pub(crate) result: Option<results::JobResult>,
}

impl Job {
    /// A job with no records yet.
    pub(crate) fn new(id: &str) -> Self {
        Self {
            job_id: id.to_string(),
            execution_plan: None,
            checkpoints: Vec::new(),
            counter: None,
            result: None,
        }
    }
}

/// One retained completed checkpoint.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Checkpoint {
    /// The checkpoint id.
    pub(crate) id: u64,
    /// The record's key.
    pub(crate) key: String,
    /// Where the serialized `CompletedCheckpoint` is stored, if the record decoded.
    pub(crate) handle: Option<StateHandle>,
    /// The checkpoint's own directory (`externalPointer`), read from the payload when
    /// it is a readable `file:` path.
    pub(crate) external_pointer: Option<String>,
}

/// A record that nothing alive uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Orphan {
    /// The znode path, ConfigMap name, or `ConfigMap/key`.
    pub(crate) key: String,
    /// Why it is orphaned.
    pub(crate) reason: String,
    /// Why `cleanup` leaves it alone anyway, if it does.
    pub(crate) kept: Option<String>,
}

/// A job id: 32 lower-case hex digits.
pub(crate) fn is_job_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The external pointer of a checkpoint whose payload is a readable local file.
pub(crate) fn external_pointer(handle: &StateHandle) -> Option<String> {
    let path = handle.path.strip_prefix("file:")?;
    let path = path.strip_prefix("//").unwrap_or(path);
    let bytes = std::fs::read(path).ok()?;
    handles::checkpoint_pointer(&handle.path, &bytes).ok().flatten()
}

/// Loads a Flink configuration file (YAML: `config.yaml` or `flink-conf.yaml`)
/// through ha-core's Flink-compatible loading (Flink's key names and mode names),
/// without checking it as an ha-rs backend config: a file valid for Flink must load
/// even where ha-rs's own rules differ (Flink's 15 s lease with a 15 s renew deadline,
/// `client.acl: creator` with SASL), since only the store's address is used.
pub(crate) fn load_config(path: Option<&Path>) -> ha_core::Result<HaConfig> {
    let path = path.ok_or_else(|| {
        ha_core::Error::config("--config", "--flink needs the Flink configuration file (config.yaml)")
    })?;
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ha_core::Error::config("--config", format!("cannot read {source}: {e}")))?;
    HaConfig::from_yaml_str(&source, &text)
}

/// What `hactl --flink` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read and show.
    Status,
    /// Delete the orphans that may be deleted.
    Cleanup,
}

/// The store of the cluster's records.
enum Store {
    #[cfg(feature = "zookeeper")]
    ZooKeeper(zookeeper::FlinkZooKeeper),
    #[cfg(feature = "kubernetes")]
    Kubernetes(kubernetes::FlinkKubernetes),
}

impl Store {
    async fn connect(config: &HaConfig, cluster_id: Option<&str>) -> ha_core::Result<Self> {
        match config.mode() {
            #[cfg(feature = "zookeeper")]
            "zookeeper" => Ok(Self::ZooKeeper(
                zookeeper::FlinkZooKeeper::connect(config, cluster_id).await?,
            )),
            #[cfg(feature = "kubernetes")]
            "kubernetes" => Ok(Self::Kubernetes(
                kubernetes::FlinkKubernetes::connect(config, cluster_id).await?,
            )),
            other => {
                let _ = cluster_id;
                Err(ha_core::Error::config(
                    ha_core::config::KEY_TYPE,
                    format!(
                        "--flink reads Flink's ZooKeeper or Kubernetes HA (`zookeeper` or `kubernetes`, with their cargo features), not `{other}`"
                    ),
                ))
            }
        }
    }

    async fn status(&self) -> ha_core::Result<FlinkStatus> {
        match *self {
            #[cfg(feature = "zookeeper")]
            Self::ZooKeeper(ref s) => s.status().await,
            #[cfg(feature = "kubernetes")]
            Self::Kubernetes(ref s) => s.status().await,
        }
    }

    async fn cleanup(&self, seen: &FlinkStatus) -> ha_core::Result<usize> {
        match *self {
            #[cfg(feature = "zookeeper")]
            Self::ZooKeeper(ref s) => s.cleanup(seen).await,
            #[cfg(feature = "kubernetes")]
            Self::Kubernetes(ref s) => s.cleanup(seen).await,
        }
    }
}

/// Reads the Flink cluster's state, prints it (table or JSON); with
/// [`Action::Cleanup`] then deletes its orphans (after `confirm`).
pub(crate) async fn run(
    config: &HaConfig,
    cluster_id: Option<&str>,
    action: Action,
    json: bool,
    confirm: impl FnOnce(&str, &[Orphan]) -> ha_core::Result<bool>,
) -> ha_core::Result<()> {
    let store = Store::connect(config, cluster_id).await?;
    let status = store.status().await?;
    show(&status, json)?;
    if action == Action::Cleanup && confirm(&status.cluster_id, &status.orphans)? {
        let deleted = store.cleanup(&status).await?;
        println!(
            "deleted {deleted} orphaned record(s) of Flink cluster {}",
            status.cluster_id
        );
    }
    Ok(())
}

fn show(status: &FlinkStatus, json: bool) -> ha_core::Result<()> {
    if json {
        let text = serde_json::to_string_pretty(status).map_err(|e| ha_core::Error::Other {
            message: e.to_string(),
            source: None,
        })?;
        println!("{text}");
    } else {
        print!("{}", render::status(status));
    }
    Ok(())
}
