//! Flink's HA layout on Kubernetes: `<cluster-id>-cluster-config-map` (the
//! `control-plane.alpha.kubernetes.io/leader` annotation, leader entries
//! `org.apache.flink.k8s.leader.<component>` = `"<session>,<address>"`,
//! `executionPlan-<job>` / `jobGraph-<job>`), `<cluster-id>-<job>-config-map`
//! (`checkpointID-<%019d>`, `counter`), and the older per-component ConfigMaps
//! (`<cluster-id>-dispatcher-leader`, `<cluster-id>-<job>-jobmanager-leader`, ...,
//! with `address`/`sessionId` entries).

use std::collections::BTreeMap;

use ha_core::{Error, HaConfig, Result};
use ha_kubernetes::KubernetesConfig;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use serde::Deserialize;

use super::handles::{self, StateHandle};
use super::results::{finished_orphan, ResultStore};
use super::{external_pointer, is_job_id, Checkpoint, FlinkStatus, Holder, Job, Leader, Orphan};

const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const LEADER_PREFIX: &str = "org.apache.flink.k8s.leader.";
/// Flink's default `kubernetes.namespace`.
const FLINK_NAMESPACE: &str = "default";
/// Flink's default lease duration, for a record that names none.
const DEFAULT_LEASE: SignedDuration = SignedDuration::from_secs(15);

/// A connection to the Kubernetes API of a Flink cluster.
pub(crate) struct FlinkKubernetes {
    api: Api<ConfigMap>,
    namespace: String,
    cluster_id: String,
    results: ResultStore,
}

/// The leader annotation (fabric8's `LeaderElectionRecord`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaderRecord {
    #[serde(default)]
    holder_identity: String,
    lease_duration: Option<String>,
    renew_time: Option<String>,
}

impl LeaderRecord {
    /// Whether the lease is held and not over at `now`.
    fn is_live(&self, now: Timestamp) -> bool {
        let lease = self
            .lease_duration
            .as_deref()
            .and_then(|d| d.parse::<SignedDuration>().ok())
            .unwrap_or(DEFAULT_LEASE);
        let renewed = self.renew_time.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
        !self.holder_identity.is_empty() && renewed.is_some_and(|r| r.checked_add(lease).is_ok_and(|end| end > now))
    }
}

fn leader_record(cm: &ConfigMap) -> Option<LeaderRecord> {
    let raw = cm.metadata.annotations.as_ref()?.get(LEADER_ANNOTATION)?;
    serde_json::from_str(raw).ok()
}

fn unavailable(what: String, e: impl std::fmt::Display) -> Error {
    Error::unavailable(what, e.to_string())
}

impl FlinkKubernetes {
    /// Builds the client from the config's kubeconfig (`kubernetes.config.file`) and
    /// namespace (`kubernetes.namespace`, Flink's default `default`).
    pub(crate) async fn connect(config: &HaConfig, cluster_id: Option<&str>) -> Result<Self> {
        // The client settings only: the lease timings are Flink's, read from its record.
        let o = config.backend_options();
        let k8s = KubernetesConfig {
            namespace: o.get("namespace").filter(|s| !s.is_empty()).map(str::to_string),
            kubeconfig: o
                .get("kubeconfig")
                .filter(|s| !s.is_empty())
                .map(std::path::PathBuf::from),
            context: o.get("context").filter(|s| !s.is_empty()).map(str::to_string),
            ..KubernetesConfig::default()
        };
        let client_config = k8s.client_config().await?;
        let client =
            kube::Client::try_from(client_config).map_err(|e| unavailable("Kubernetes client".to_string(), e))?;
        let namespace = k8s.namespace.unwrap_or_else(|| FLINK_NAMESPACE.to_string());
        let cluster_id = cluster_id.map_or_else(|| config.cluster_id().to_string(), str::to_string);
        Ok(Self {
            api: Api::namespaced(client, &namespace),
            namespace,
            results: ResultStore::new(config, &cluster_id),
            cluster_id,
        })
    }

    async fn config_maps(&self) -> Result<Vec<ConfigMap>> {
        let prefix = format!("{}-", self.cluster_id);
        let list = self
            .api
            .list(&ListParams::default())
            .await
            .map_err(|e| unavailable(format!("Kubernetes list of ConfigMaps in {}", self.namespace), e))?;
        let mut out: Vec<ConfigMap> = list
            .items
            .into_iter()
            .filter(|cm| cm.metadata.name.as_deref().is_some_and(|n| n.starts_with(&prefix)))
            .collect();
        out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(out)
    }

    /// The job a ConfigMap belongs to, from its name.
    fn job_of(&self, name: &str) -> Option<String> {
        let rest = name.strip_prefix(&format!("{}-", self.cluster_id))?;
        let id = rest
            .strip_suffix("-config-map")
            .or_else(|| rest.strip_suffix("-jobmanager-leader"))?;
        is_job_id(id).then(|| id.to_string())
    }

    /// Reads the whole cluster.
    pub(crate) async fn status(&self) -> Result<FlinkStatus> {
        let now = Timestamp::now();
        let cms = self.config_maps().await?;
        let cluster_cm = format!("{}-cluster-config-map", self.cluster_id);
        let mut errors = Vec::new();
        let mut leaders = Vec::new();
        let mut holder = None;
        let mut leader_running = false;
        let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
        let mut job_cms = Vec::new();
        let mut marked = Vec::new();
        let mut plan_keys = BTreeMap::new();
        for cm in &cms {
            let name = cm.metadata.name.clone().unwrap_or_default();
            let record = leader_record(cm);
            let live = record.as_ref().is_some_and(|r| r.is_live(now));
            let old_component = name
                .strip_prefix(&format!("{}-", self.cluster_id))
                .and_then(|r| r.strip_suffix("-leader"));
            if name == cluster_cm || (holder.is_none() && old_component.is_some()) {
                if let Some(r) = &record {
                    holder = Some(Holder {
                        identity: r.holder_identity.clone(),
                        renew_time: r.renew_time.clone(),
                        lease_duration: r.lease_duration.clone(),
                    });
                }
                leader_running |= live;
            }
            let data = cm.data.clone().unwrap_or_default();
            let job = self.job_of(&name);
            if let Some(component) = old_component.filter(|_| data.contains_key("address")) {
                leaders.push(Leader {
                    component: component.to_string(),
                    key: format!("{name}/address"),
                    info: Some(handles::LeaderInfo {
                        address: data.get("address").cloned().unwrap_or_default(),
                        session_id: data.get("sessionId").cloned().unwrap_or_default(),
                    }),
                });
            }
            for (key, value) in &data {
                let full = format!("{name}/{key}");
                if let Some(component) = key.strip_prefix(LEADER_PREFIX) {
                    let info = handles::kubernetes_leader(&full, value)
                        .map_err(|e| errors.push(e.to_string()))
                        .ok();
                    leaders.push(Leader {
                        component: component.to_string(),
                        key: full,
                        info,
                    });
                } else if let Some(id) = key
                    .strip_prefix("executionPlan-")
                    .or_else(|| key.strip_prefix("jobGraph-"))
                    .filter(|id| is_job_id(id))
                {
                    let plan = decode(&full, value, &mut errors);
                    if plan.as_ref().is_some_and(|p| p.marked_for_deletion) {
                        marked.push(full.clone());
                    }
                    plan_keys.insert(id.to_string(), full.clone());
                    let job = jobs.entry(id.to_string()).or_insert_with(|| Job::new(id));
                    job.execution_plan = job.execution_plan.take().or(plan);
                } else if let (Some(id), Some(job_id)) = (key.strip_prefix("checkpointID-"), &job) {
                    let Ok(cid) = id.parse::<u64>() else { continue };
                    let handle = decode(&full, value, &mut errors);
                    if handle.as_ref().is_some_and(|p| p.marked_for_deletion) {
                        marked.push(full.clone());
                    }
                    let external_pointer = handle.as_ref().and_then(external_pointer);
                    let job = jobs.entry(job_id.clone()).or_insert_with(|| Job::new(job_id));
                    job.checkpoints.push(Checkpoint {
                        id: cid,
                        key: full,
                        handle,
                        external_pointer,
                    });
                } else if let (true, Some(job_id)) = (key == "counter", &job) {
                    match value.trim().parse::<i64>() {
                        Ok(n) => jobs.entry(job_id.clone()).or_insert_with(|| Job::new(job_id)).counter = Some(n),
                        Err(e) => errors.push(format!("{full}: counter `{value}` is no integer: {e}")),
                    }
                }
            }
            if let Some(job_id) = job {
                jobs.entry(job_id.clone()).or_insert_with(|| Job::new(&job_id));
                job_cms.push((name.clone(), job_id, live));
            }
        }
        for job in jobs.values_mut() {
            job.checkpoints.sort_by_key(|c| c.id);
        }

        let mut orphans = Vec::new();
        let ids: Vec<String> = jobs.keys().cloned().collect();
        let results = self.results.read(&ids, &mut errors);
        for (id, result) in &results {
            let Some(job) = jobs.get_mut(id) else { continue };
            job.result = Some(result.clone());
            if let (Some(_), Some(key)) = (&job.execution_plan, plan_keys.get(id)) {
                orphans.push(finished_orphan(key.clone(), id, result, leader_running));
            }
            for (name, _, live) in job_cms.iter().filter(|(_, j, _)| j == id) {
                let mut orphan = finished_orphan(name.clone(), id, result, leader_running);
                if *live {
                    orphan.kept = Some("its leader lease is live".to_string());
                }
                orphans.push(orphan);
            }
        }
        for (name, job_id, live) in job_cms {
            if jobs.get(&job_id).is_some_and(|j| j.execution_plan.is_some()) || results.contains_key(&job_id) {
                continue;
            }
            let job_leader = leaders.iter().any(|l| l.component == format!("job-{job_id}"));
            let kept = if live {
                Some("its leader lease is live".to_string())
            } else if job_leader && leader_running {
                Some("its JobManager leader is running".to_string())
            } else {
                None
            };
            orphans.push(Orphan {
                key: name,
                reason: format!("job {job_id} has no execution plan (finished, or its HA data leaked)"),
                kept,
            });
        }
        if !leader_running {
            for l in leaders.iter().filter(|l| l.key.starts_with(&format!("{cluster_cm}/"))) {
                orphans.push(Orphan {
                    key: l.key.clone(),
                    reason: "no running leader (the leader lease expired)".into(),
                    kept: None,
                });
            }
        }
        for key in marked {
            orphans.push(Orphan {
                key,
                reason: "marked for deletion by Flink, the removal did not finish".into(),
                kept: leader_running.then(|| "the running leader finishes the removal".to_string()),
            });
        }
        Ok(FlinkStatus {
            store: "kubernetes".into(),
            location: format!("namespace {}", self.namespace),
            cluster_id: self.cluster_id.clone(),
            leader_running,
            holder,
            leaders,
            jobs: jobs.into_values().collect(),
            orphans,
            errors,
        })
    }

    /// Deletes every orphan of `seen` that is still an orphan cleanup may delete
    /// (checked again right before; every write is conditional on the
    /// resourceVersion read); returns how many were deleted.
    pub(crate) async fn cleanup(&self, seen: &FlinkStatus) -> Result<usize> {
        let mut deleted = 0;
        for orphan in seen.orphans.iter().filter(|o| o.kept.is_none()) {
            let now = self.status().await?;
            if !now.orphans.iter().any(|o| o.key == orphan.key && o.kept.is_none()) {
                println!("skipped {}: no longer an orphan", orphan.key);
                continue;
            }
            match self.delete(&orphan.key).await {
                Ok(()) => {
                    println!("deleted {}", orphan.key);
                    deleted += 1;
                }
                Err(e) => println!("skipped {}: {e}", orphan.key),
            }
        }
        Ok(deleted)
    }

    /// Deletes a ConfigMap (`name`) or one entry of it (`name/key`).
    async fn delete(&self, key: &str) -> Result<()> {
        let (name, entry) = match key.split_once('/') {
            Some((n, e)) => (n, Some(e)),
            None => (key, None),
        };
        let what = |e: kube::Error| unavailable(format!("Kubernetes update of ConfigMap {name}"), e);
        let mut cm = self.api.get(name).await.map_err(what)?;
        match entry {
            None => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: cm.metadata.resource_version.clone(),
                        uid: cm.metadata.uid.clone(),
                    }),
                    ..DeleteParams::default()
                };
                self.api.delete(name, &params).await.map_err(what)?;
            }
            Some(entry) => {
                if let Some(data) = cm.data.as_mut() {
                    data.remove(entry);
                }
                self.api
                    .replace(name, &PostParams::default(), &cm)
                    .await
                    .map_err(what)?;
            }
        }
        Ok(())
    }
}

fn decode(key: &str, value: &str, errors: &mut Vec<String>) -> Option<StateHandle> {
    handles::state_handle_base64(key, value)
        .map_err(|e| errors.push(e.to_string()))
        .ok()
}
