//! The jobs a chaos contender runs as leader: each has a checkpoint store, a
//! checkpoint-id counter and a job graph. A new term recovers every job (checkpoints,
//! then graph) in parallel, as a dispatcher's job masters do, before it writes them
//! round-robin under its fence.

use std::time::{Duration, Instant};

use futures::future::join_all;
use ha_core::{
    CheckpointIdCounter, CompletedCheckpointStore, Error, Fence, HaServices, JobGraph, JobGraphStore, JobId,
};

use super::history::{checkpoint_payload, is_job_graph_payload, job_graph_payload, Event, History, Incarnation};

/// Id of job `index` of a run of `count` jobs (`chaos-job` when it is the only one).
pub(super) fn job_id(index: u32, count: usize) -> JobId {
    let name = if count == 1 {
        "chaos-job".to_string()
    } else {
        format!("chaos-job-{index}")
    };
    JobId::new(name).unwrap_or_else(|_| JobId::random())
}

/// One job's HA stores.
pub(super) struct Job {
    /// Index among the run's jobs.
    pub(super) index: u32,
    pub(super) id: JobId,
    pub(super) store: CompletedCheckpointStore,
    pub(super) counter: CheckpointIdCounter,
}

/// The jobs of one contender incarnation.
pub(super) struct Jobs {
    pub(super) jobs: Vec<Job>,
    pub(super) graphs: JobGraphStore,
}

/// What one job's recovery found.
struct Found {
    latest: Option<u64>,
    graph: bool,
    data_intact: bool,
}

impl Jobs {
    /// Opens the stores of `count` jobs (at least one).
    pub(super) async fn open(services: &HaServices, count: usize) -> ha_core::Result<Self> {
        let count = count.max(1);
        let mut jobs = Vec::with_capacity(count);
        for index in 0..count as u32 {
            let id = job_id(index, count);
            jobs.push(Job {
                index,
                store: services.completed_checkpoint_store(&id).await?,
                counter: services.checkpoint_id_counter(&id).await?,
                id,
            });
        }
        Ok(Self {
            jobs,
            graphs: services.job_graph_store().await?,
        })
    }

    /// The graph job `job` writes in a term of `epoch`.
    pub(super) fn graph(&self, job: &Job, epoch: u64) -> JobGraph {
        JobGraph {
            job_id: job.id.clone(),
            data: job_graph_payload(job.index, epoch),
        }
    }

    async fn recover_one(&self, job: &Job, fence: &Fence) -> ha_core::Result<Found> {
        let rec = job.store.recover(fence).await?;
        let graph = self.graphs.recover_job_graph(&job.id).await?;
        let data_intact = rec
            .checkpoints
            .iter()
            .all(|c| c.data == checkpoint_payload(c.checkpoint_id))
            && graph.as_ref().is_none_or(|g| is_job_graph_payload(&g.data, job.index));
        Ok(Found {
            latest: rec.latest().map(|c| c.checkpoint_id),
            graph: graph.is_some(),
            data_intact,
        })
    }

    /// Recovers every job in the term of `fence`, in parallel, recording each
    /// recovery. A job's recovery is retried while `retry()` holds (storage may be
    /// unavailable for a while, as a job master would); `NotLeader` ends it. Returns
    /// whether every job was recovered.
    pub(super) async fn recover_all(
        &self,
        who: Incarnation,
        fence: &Fence,
        history: &History,
        retry: impl Fn() -> bool,
    ) -> bool {
        let each = self
            .jobs
            .iter()
            .map(|job| self.recover_job(who, job, fence, history, &retry));
        join_all(each).await.into_iter().all(|ok| ok)
    }

    async fn recover_job(
        &self,
        who: Incarnation,
        job: &Job,
        fence: &Fence,
        history: &History,
        retry: &impl Fn() -> bool,
    ) -> bool {
        loop {
            let start = Instant::now();
            match self.recover_one(job, fence).await {
                Ok(found) => {
                    history.record(Event::Recovered {
                        who,
                        epoch: fence.epoch.0,
                        job: job.index,
                        latest: found.latest,
                        graph: Some(found.graph),
                        data_intact: found.data_intact,
                        start,
                        end: Instant::now(),
                    });
                    return true;
                }
                Err(Error::NotLeader { .. }) => return false,
                Err(err) if retry() => {
                    tracing::debug!(?who, job = job.index, error = %err, "recovery failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => {
                    tracing::debug!(?who, job = job.index, error = %err, "recovery failed");
                    return false;
                }
            }
        }
    }
}
