//! Cleanup: `close_and_cleanup_all_data` leaves no record and no payload behind, also
//! while this process still contends (cleanup resigns its candidacies first).

use ha_core::{CompletedCheckpoint, JobGraph, JobId, JobResult, JobStatus};

use super::util::{component_id, contend, eventually, payload, quick};
use crate::Ctx;

/// Populates every kind of HA data from two processes, then cleans up: the backend
/// holds nothing for the cluster-id and the payload storage is empty.
pub async fn leaves_nothing(ctx: Ctx) {
    cleanup_after_populating(ctx, true).await;
}

/// As [`leaves_nothing`], but the cleaning process does not close its election
/// service first: cleanup must resign its own candidacies before deleting, so no latch
/// or lock record is re-created behind it.
pub async fn leaves_nothing_while_contending(ctx: Ctx) {
    cleanup_after_populating(ctx, false).await;
}

async fn cleanup_after_populating(ctx: Ctx, close_election_first: bool) {
    let a = ctx.process_retaining(2).await;
    let b = ctx.process().await;
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let rm = sa.register(component_id("resourcemanager")).unwrap();
    let (sb, _eb) = contend(&b, "dispatcher").await;
    let g = ea.granted().await.unwrap();
    ea.confirm(&g, "addr").await.unwrap();
    rm.confirm(&g, "addr-rm").await.unwrap();
    let f = g.fence.clone();
    let job = JobId::random();
    a.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(
            &f,
            &JobGraph {
                job_id: job.clone(),
                data: payload("g", 1),
            },
        )
        .await
        .unwrap();
    let counter = a.checkpoint_id_counter(&job).await.unwrap();
    let cps = a.completed_checkpoint_store(&job).await.unwrap();
    for _ in 0..3 {
        let id = counter.get_and_increment(&f).await.unwrap();
        cps.add_checkpoint(
            &f,
            CompletedCheckpoint {
                job_id: job.clone(),
                checkpoint_id: id,
                data: payload("cp", id),
            },
        )
        .await
        .unwrap();
    }
    a.job_result_store()
        .await
        .unwrap()
        .create_dirty(
            &f,
            &JobResult {
                job_id: JobId::random(),
                status: JobStatus::Finished,
                data: payload("r", 1),
            },
        )
        .await
        .unwrap();
    a.blob_store().put(&job, "blob-1", payload("blob", 1)).await.unwrap();
    b.job_graph_store()
        .await
        .unwrap()
        .recover_job_graph(&job)
        .await
        .unwrap();
    assert!(!ctx.harness().list_records(ctx.cluster_id()).await.unwrap().is_empty());
    assert!(!ctx.storage().list_all().await.unwrap().is_empty());

    sb.close().await.unwrap();
    b.close().await.unwrap();
    if close_election_first {
        sa.close().await.unwrap();
    } else {
        // Still contending, still leading: the elections of `a` stay registered.
        assert!(ea.has_leadership(&g));
    }
    a.close_and_cleanup_all_data().await.unwrap();
    // Give a candidacy that survived the cleanup time to re-create its records.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    eventually(quick(&ctx), "backend empty after cleanup", || async {
        ctx.harness().list_records(ctx.cluster_id()).await.unwrap().is_empty()
    })
    .await;
    let left = ctx.harness().list_records(ctx.cluster_id()).await.unwrap();
    assert!(left.is_empty(), "records left behind: {left:?}");
    let payloads = ctx.storage().list_all().await.unwrap();
    assert!(payloads.is_empty(), "payloads left behind: {payloads:?}");
}
