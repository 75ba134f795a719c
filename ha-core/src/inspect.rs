//! Read-only views of a cluster's HA state for operators (`hactl`): leaders, jobs,
//! checkpoints with their payload status, and single decoded entries.
//!
//! Everything here reads; nothing takes locks or needs leadership.

use serde::Serialize;

use crate::driver::{Participant, StoreNamespace};
use crate::error::{Error, Result};
use crate::ids::{ComponentId, JobId, LeaderInformation};
use crate::services::{
    parse_checkpoint_key, HaServices, JobResultEntry, ResultState, JOB_GRAPH_PREFIX, QUARANTINE_PREFIX,
};
use crate::storage::StateHandle;

/// The contenders of one election group (the leader first).
#[derive(Clone, Debug, Serialize)]
pub struct GroupParticipants {
    /// The election group.
    pub group: String,
    /// Its contenders: the leader, then the standbys.
    pub participants: Vec<Participant>,
}

/// A component and its confirmed leader, if any.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentLeader {
    /// The component.
    pub component: String,
    /// Its published leader record.
    pub leader: Option<LeaderInformation>,
}

/// Whether a checkpoint's payload can be read.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "state", content = "error", rename_all = "lowercase")]
pub enum PayloadState {
    /// Present and matching its checksum.
    Readable,
    /// The pointer or payload is damaged.
    Corrupt(String),
    /// The payload object does not exist.
    Missing(String),
}

/// One checkpoint entry.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointView {
    /// Checkpoint id.
    pub id: u64,
    /// Entry name.
    pub key: String,
    /// The decoded pointer, if it decodes.
    pub pointer: Option<StateHandle>,
    /// Payload state.
    pub payload: PayloadState,
}

/// One job.
#[derive(Clone, Debug, Serialize)]
pub struct JobView {
    /// The job.
    pub job_id: String,
    /// Whether its job graph is stored.
    pub has_job_graph: bool,
    /// Retained checkpoint ids, ascending.
    pub checkpoint_ids: Vec<u64>,
    /// Quarantined entries.
    pub quarantined: Vec<String>,
    /// The next checkpoint id the counter hands out.
    pub next_checkpoint_id: u64,
    /// Its result's cleanup state, if finished.
    pub result: Option<ResultState>,
}

/// The HA state of a cluster at a glance.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    /// The cluster.
    pub cluster_id: String,
    /// Leaders of every component with a leader record, and of every job.
    pub leaders: Vec<ComponentLeader>,
    /// Contenders of the default election group.
    pub participants: Vec<GroupParticipants>,
    /// Every job with HA data.
    pub jobs: Vec<JobView>,
    /// Job results whose cleanup has not finished (dirty), ascending by job id.
    pub dirty_results: Vec<JobResultEntry>,
}

/// Reads the confirmed leader of `component`.
pub async fn leader(ha: &HaServices, component: &ComponentId) -> Result<Option<LeaderInformation>> {
    Ok(ha.leader_retrieval_service(component).await?.current())
}

/// Every job id with a job graph or a job result, ascending.
pub async fn job_ids(ha: &HaServices) -> Result<Vec<JobId>> {
    let mut jobs = ha.job_graph_store().await?.job_ids().await?;
    let results = ha.backend().state_handle_store(&StoreNamespace::JobResults).await?;
    for name in results.list().await? {
        if let Some(job) = name
            .strip_prefix(crate::services::JOB_RESULT_PREFIX)
            .and_then(|j| JobId::new(j).ok())
        {
            jobs.push(job);
        }
    }
    jobs.sort();
    jobs.dedup();
    Ok(jobs)
}

/// The contenders of each of `groups`.
pub async fn participants(ha: &HaServices, groups: &[String]) -> Result<Vec<GroupParticipants>> {
    let mut out = Vec::new();
    for group in groups {
        out.push(GroupParticipants {
            group: group.clone(),
            participants: ha.participants(group).await?,
        });
    }
    Ok(out)
}

/// Every component with a leader record and every job's component, ascending.
pub async fn components(ha: &HaServices, jobs: &[JobId]) -> Result<Vec<ComponentId>> {
    let mut components = ha.backend().leader_components().await?;
    components.extend(jobs.iter().map(ComponentId::for_job));
    components.sort();
    components.dedup();
    Ok(components)
}

/// Gathers leaders (of every component with a record), the default group's
/// contenders, jobs, checkpoints and counters.
pub async fn status(ha: &HaServices) -> Result<ClusterStatus> {
    let jobs = job_ids(ha).await?;
    let components = components(ha, &jobs).await?;
    let mut leaders = Vec::new();
    for c in components {
        leaders.push(ComponentLeader {
            leader: leader(ha, &c).await?,
            component: c.to_string(),
        });
    }
    let graphs = ha.job_graph_store().await?.job_ids().await?;
    let results = ha.job_result_store().await?;
    let mut views = Vec::new();
    for job in jobs {
        let store = ha.completed_checkpoint_store(&job).await?;
        views.push(JobView {
            has_job_graph: graphs.contains(&job),
            checkpoint_ids: store.checkpoint_ids().await?,
            quarantined: store.quarantined_keys().await?,
            next_checkpoint_id: ha.checkpoint_id_counter(&job).await?.get().await?,
            result: results.state(&job).await?,
            job_id: job.to_string(),
        });
    }
    let dirty_results = results
        .entries()
        .await?
        .into_iter()
        .filter(|r| r.state == ResultState::Dirty)
        .collect();
    Ok(ClusterStatus {
        cluster_id: ha.cluster_id().to_string(),
        leaders,
        participants: participants(ha, &[crate::DEFAULT_ELECTION_GROUP.to_string()]).await?,
        jobs: views,
        dirty_results,
    })
}

/// Every checkpoint entry of `job` (quarantined ones included), with its payload state.
pub async fn checkpoints(ha: &HaServices, job: &JobId) -> Result<Vec<CheckpointView>> {
    let store = ha
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await?;
    let mut out = Vec::new();
    for key in store.list().await? {
        let Some(id) = parse_checkpoint_key(key.strip_prefix(QUARANTINE_PREFIX).unwrap_or(&key)) else {
            continue;
        };
        let Some(entry) = store.get(&key).await? else { continue };
        let (pointer, payload) = check_pointer(ha, &key, &entry.value).await?;
        out.push(CheckpointView {
            id,
            key,
            pointer,
            payload,
        });
    }
    out.sort_by_key(|c| (c.id, c.key.clone()));
    Ok(out)
}

async fn check_pointer(ha: &HaServices, key: &str, bytes: &[u8]) -> Result<(Option<StateHandle>, PayloadState)> {
    let handle = match StateHandle::from_bytes(key, bytes) {
        Ok(h) => h,
        Err(e) => return Ok((None, PayloadState::Corrupt(e.to_string()))),
    };
    let state = match ha.storage().retrieve(key, &handle).await {
        Ok(_) => PayloadState::Readable,
        Err(e @ Error::MissingPayload { .. }) => PayloadState::Missing(e.to_string()),
        Err(e @ Error::CorruptData { .. }) => PayloadState::Corrupt(e.to_string()),
        Err(e) => return Err(e),
    };
    Ok((Some(handle), state))
}

/// A decoded entry.
#[derive(Clone, Debug, Serialize)]
pub struct EntryView {
    /// The key as given.
    pub key: String,
    /// The raw value, as text.
    pub raw: String,
    /// The decoded pointer, if the value is one (directly or inside a job-result entry).
    pub pointer: Option<StateHandle>,
    /// Payload state, if there is a pointer.
    pub payload: Option<PayloadState>,
}

/// Reads and decodes one entry. `key` is `leader/<component>`, `jobgraphs/<name>`,
/// `job-results/<name>` or `jobs/<job>/checkpoints/<name>`.
pub async fn entry(ha: &HaServices, key: &str) -> Result<EntryView> {
    let not_found = || Error::NotFound { key: key.to_string() };
    if let Some(component) = key.strip_prefix("leader/") {
        let info = leader(ha, &ComponentId::new(component)?).await?.ok_or_else(not_found)?;
        let raw = String::from_utf8_lossy(&info.to_json()).into_owned();
        return Ok(EntryView {
            key: key.to_string(),
            raw,
            pointer: None,
            payload: None,
        });
    }
    let (namespace, name) = if let Some(name) = key.strip_prefix("jobgraphs/") {
        (StoreNamespace::JobGraphs, name)
    } else if let Some(name) = key.strip_prefix("job-results/") {
        (StoreNamespace::JobResults, name)
    } else if let Some(rest) = key.strip_prefix("jobs/") {
        let (job, name) = rest.split_once("/checkpoints/").ok_or_else(not_found)?;
        (StoreNamespace::Checkpoints(JobId::new(job)?), name)
    } else {
        return Err(Error::NotFound {
            key: format!("{key} (keys look like leader/<component>, jobgraphs/{JOB_GRAPH_PREFIX}<job>, job-results/<name>, jobs/<job>/checkpoints/<name>)"),
        });
    };
    let store = ha.backend().state_handle_store(&namespace).await?;
    let value = store.get(name).await?.ok_or_else(not_found)?.value;
    let raw = String::from_utf8_lossy(&value).into_owned();
    // Job-result entries wrap the pointer in {"handle": …}.
    let pointer_bytes = serde_json::from_slice::<serde_json::Value>(&value)
        .ok()
        .and_then(|v| v.get("handle").map(|h| h.to_string().into_bytes()))
        .unwrap_or_else(|| value.to_vec());
    let (pointer, payload) = check_pointer(ha, name, &pointer_bytes).await?;
    Ok(EntryView {
        key: key.to_string(),
        raw,
        pointer,
        payload: Some(payload),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::embedded::EmbeddedCluster;
    use crate::storage::StateStorage;
    use crate::{ClusterId, CompletedCheckpoint, JobGraph, DEFAULT_ELECTION_GROUP};

    #[tokio::test]
    async fn status_checkpoints_and_entries() {
        let cluster = ClusterId::random("insp");
        let storage = StateStorage::open("memory://inspect-test", &cluster, &Default::default()).unwrap();
        let ha = HaServices::new(
            Arc::new(EmbeddedCluster::new(cluster, Duration::from_secs(1)).connect()),
            storage.clone(),
            3,
        );
        let election = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
        let mut d = election.register(ComponentId::new("dispatcher").unwrap()).unwrap();
        let g = d.granted().await.unwrap();
        d.confirm(&g, "http://d:1").await.unwrap();
        // A component outside any fixed list of names.
        let mut custom = election.register(ComponentId::new("my-operator").unwrap()).unwrap();
        let gc = custom.granted().await.unwrap();
        custom.confirm(&gc, "http://op:2").await.unwrap();
        let job = JobId::random();
        let f = &g.fence;
        ha.job_graph_store()
            .await
            .unwrap()
            .put_job_graph(
                f,
                &JobGraph {
                    job_id: job.clone(),
                    data: Bytes::from_static(b"g"),
                },
            )
            .await
            .unwrap();
        let cps = ha.completed_checkpoint_store(&job).await.unwrap();
        let counter = ha.checkpoint_id_counter(&job).await.unwrap();
        for _ in 0..2 {
            let id = counter.get_and_increment(f).await.unwrap();
            cps.add_checkpoint(
                f,
                CompletedCheckpoint {
                    job_id: job.clone(),
                    checkpoint_id: id,
                    data: Bytes::from(vec![1; 10]),
                },
            )
            .await
            .unwrap();
        }
        let s = status(&ha).await.unwrap();
        assert_eq!(s.leaders[0].leader.as_ref().unwrap().address, "http://d:1");
        let names: Vec<&str> = s.leaders.iter().map(|l| l.component.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "dispatcher".to_string(),
                ComponentId::for_job(&job).to_string(),
                "my-operator".into()
            ]
        );
        assert!(
            s.leaders[1].leader.is_none(),
            "a job without a leader record is still shown"
        );
        assert_eq!(s.participants[0].group, DEFAULT_ELECTION_GROUP);
        assert_eq!(
            s.participants[0].participants,
            vec![Participant {
                id: ha.backend().instance_id().to_string(),
                leader: true
            }]
        );
        assert_eq!(s.jobs.len(), 1);
        assert_eq!(s.jobs[0].checkpoint_ids, vec![1, 2]);
        assert_eq!(s.jobs[0].next_checkpoint_id, 3);
        assert!(s.jobs[0].has_job_graph);
        assert!(serde_json::to_string(&s).unwrap().contains("http://d:1"));

        // Damage checkpoint 2's payload: the view says so, naming key and path.
        let views = checkpoints(&ha, &job).await.unwrap();
        storage.discard(views[1].pointer.as_ref().unwrap()).await.unwrap();
        let views = checkpoints(&ha, &job).await.unwrap();
        assert_eq!(views[0].payload, PayloadState::Readable);
        assert!(
            matches!(&views[1].payload, PayloadState::Missing(m) if m.contains("checkpointID-0000000000000000002"))
        );

        let e = entry(&ha, &format!("jobs/{job}/checkpoints/checkpointID-0000000000000000001"))
            .await
            .unwrap();
        assert_eq!(e.payload, Some(PayloadState::Readable));
        assert!(e.raw.contains("sha256"));
        let e = entry(&ha, "leader/dispatcher").await.unwrap();
        assert!(e.raw.contains("http://d:1"));
        assert!(matches!(entry(&ha, "nonsense").await, Err(Error::NotFound { .. })));
        ha.close_and_cleanup_all_data().await.unwrap();
    }
}
