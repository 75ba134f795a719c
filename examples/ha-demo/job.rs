//! The simulated job a leader runs: recover the job graph and the latest checkpoint,
//! then complete a checkpoint every interval, each one fenced by the leader's term.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ha_core::{CompletedCheckpoint, HaServices, JobGraph, JobId, LeaderElection, LeaderGrant, Result};

use crate::timeline::Timeline;

/// What the demo checks across a failover.
#[derive(Default)]
pub(crate) struct Progress {
    /// Highest checkpoint id whose `add_checkpoint` returned Ok.
    pub(crate) last_acknowledged: AtomicU64,
    /// Checkpoint id being written right now (0 if none).
    pub(crate) in_flight: AtomicU64,
    /// Checkpoint id the most recent leader resumed from (u64::MAX until one did).
    pub(crate) resumed_from: AtomicU64,
    /// Checkpoints completed in total.
    pub(crate) completed: AtomicU64,
}

/// What a contender needs to run the job.
pub(crate) struct JobRunner<'a> {
    pub(crate) name: &'a str,
    pub(crate) ha: &'a HaServices,
    pub(crate) job: &'a JobId,
    pub(crate) interval: Duration,
    pub(crate) progress: &'a Arc<Progress>,
    pub(crate) timeline: &'a Timeline,
}

/// Runs the job while `grant` is current. Returns when leadership is lost or the
/// services fail.
pub(crate) async fn run_as_leader(
    run: &JobRunner<'_>,
    election: &mut LeaderElection,
    grant: LeaderGrant,
) -> Result<()> {
    let JobRunner {
        name,
        ha,
        job,
        interval,
        progress,
        timeline,
    } = *run;
    let fence = &grant.fence;
    let graphs = ha.job_graph_store().await?;
    match graphs.recover_job_graph(job).await? {
        Some(g) => timeline.log(format!("{name} recovered job graph of {job} ({} bytes)", g.data.len())),
        None => {
            let graph = JobGraph {
                job_id: job.clone(),
                data: Bytes::from_static(b"source -> map -> sink"),
            };
            graphs.put_job_graph(fence, &graph).await?;
            timeline.log(format!("{name} submitted job {job}"));
        }
    }
    let store = ha.completed_checkpoint_store(job).await?;
    let counter = ha.checkpoint_id_counter(job).await?;
    let recovered = store.recover(fence).await?;
    for q in &recovered.quarantined {
        timeline.log(format!(
            "{name} quarantined checkpoint {}: {}",
            q.checkpoint_id, q.error
        ));
    }
    let resumed = recovered.latest().map_or(0, |c| c.checkpoint_id);
    progress.resumed_from.store(resumed, Ordering::SeqCst);
    match recovered.latest() {
        Some(cp) => timeline.log(format!(
            "{name} resumed job from checkpoint {} (state: {:?})",
            cp.checkpoint_id,
            String::from_utf8_lossy(&cp.data)
        )),
        None => timeline.log(format!("{name} started job from scratch")),
    }

    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = election.revoked(&grant) => {
                timeline.log(format!("{name} lost leadership; job suspended"));
                return Ok(());
            }
        }
        let id = counter.get_and_increment(fence).await?;
        progress.in_flight.store(id, Ordering::SeqCst);
        let data = Bytes::from(format!("records processed up to {}", id * 1000));
        store
            .add_checkpoint(
                fence,
                CompletedCheckpoint {
                    job_id: job.clone(),
                    checkpoint_id: id,
                    data,
                },
            )
            .await?;
        progress.last_acknowledged.store(id, Ordering::SeqCst);
        progress.in_flight.store(0, Ordering::SeqCst);
        progress.completed.fetch_add(1, Ordering::SeqCst);
        timeline.log(format!("{name} checkpoint {id} acknowledged"));
    }
}
