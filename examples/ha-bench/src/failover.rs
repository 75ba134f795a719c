//! Failover by number of jobs: a leader process (`ha-bench contender --jobs N`) submits
//! N jobs (a job graph and one checkpoint each, in a shared `file://` storage root) and
//! is SIGKILLed after a settle period; the standby (this process) measures crash →
//! granted, and crash → every job's graph and checkpoints recovered, 16 jobs at a time,
//! as a new JobManager does.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use ha_core::{
    ClusterId, CompletedCheckpoint, ComponentId, Fence, HaServices, JobGraph, JobId, DEFAULT_ELECTION_GROUP,
};

use crate::procs::{Proc, SETTLE};
use crate::systems::{Endpoints, Kind};
use crate::BoxResult;

/// Jobs set up or recovered at a time.
const PARALLEL: usize = 16;

/// Submits `jobs` running jobs, each with a job graph and one completed checkpoint.
pub(crate) async fn submit_jobs(ha: &HaServices, fence: &Fence, jobs: usize) -> BoxResult<()> {
    let graphs = ha.job_graph_store().await?;
    let graphs = &graphs;
    let results: Vec<BoxResult<()>> = futures::stream::iter(0..jobs)
        .map(|i| async move {
            let job_id = JobId::new(format!("{:032x}", i + 1))?;
            let graph = JobGraph {
                job_id: job_id.clone(),
                data: Bytes::from_static(b"job graph"),
            };
            graphs.put_job_graph(fence, &graph).await?;
            let store = ha.completed_checkpoint_store(&job_id).await?;
            let checkpoint = CompletedCheckpoint {
                job_id,
                checkpoint_id: 1,
                data: Bytes::from_static(b"checkpoint metadata"),
            };
            store.add_checkpoint(fence, checkpoint).await?;
            Ok(())
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Recovers every job's graph and checkpoints; fails if one is missing.
async fn recover_all(ha: &HaServices, fence: &Fence, expected: usize) -> BoxResult<()> {
    let graphs = ha.job_graph_store().await?;
    let ids = graphs.job_ids().await?;
    if ids.len() != expected {
        return Err(format!("recovered {} job ids, expected {expected}", ids.len()).into());
    }
    let graphs = &graphs;
    let results: Vec<BoxResult<()>> = futures::stream::iter(ids)
        .map(|job| async move {
            graphs.recover_job_graph(&job).await?.ok_or("job graph missing")?;
            let store = ha.completed_checkpoint_store(&job).await?;
            let recovered = store.recover(fence).await?;
            if recovered.checkpoints.len() != 1 {
                return Err(format!("job {job}: {} checkpoints", recovered.checkpoints.len()).into());
            }
            Ok(())
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    results.into_iter().collect()
}

/// One failover: (crash → granted, crash → all recovered).
pub(crate) async fn once(endpoints: &Endpoints, kind: Kind, jobs: usize) -> BoxResult<(Duration, Duration)> {
    let dir = tempfile::tempdir()?;
    let endpoints = Endpoints {
        storage: Some(format!("file://{}", dir.path().display())),
        ..endpoints.clone()
    };
    let cluster = ClusterId::random("bench-failover");
    let mut cmd = endpoints.self_command(&["contender", "--kind", kind.name(), "--cluster", cluster.as_ref()])?;
    cmd.args(["--id", "a", "--role", "contender", "--jobs", &jobs.to_string()]);
    let mut leader = Proc::spawn(cmd, "failover leader")?;
    // Submitting 10,000 jobs takes a while on a shared machine.
    let setup_limit = Duration::from_secs(60) + Duration::from_millis(50) * jobs as u32;
    leader.expect("LEADER", setup_limit).await?;

    let standby = endpoints.connect(kind, &cluster).await?;
    let svc = standby.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut election = svc.register(ComponentId::new("dispatcher")?)?;
    tokio::time::sleep(SETTLE).await;
    if election.current().is_some() {
        return Err("standby granted while the leader was alive".into());
    }
    let crashed = Instant::now();
    leader.child.start_kill()?;
    let limit = endpoints.ttl() * 10 + Duration::from_secs(30);
    let grant = tokio::time::timeout(limit, election.granted()).await??;
    let granted = crashed.elapsed();
    recover_all(&standby.ha, &grant.fence, jobs).await?;
    let recovered = crashed.elapsed();
    let _ = leader.child.wait().await;
    svc.close().await?;
    standby.cleanup().await;
    Ok((granted, recovered))
}
