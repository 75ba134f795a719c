//! Fencing: a leader whose term has ended cannot change HA data through any store.

use bytes::Bytes;
use ha_core::{CompletedCheckpoint, Error, Fence, JobGraph, JobId, JobResult, JobStatus, ResultState, StoreNamespace};

use super::util::{contend, payload, quick};
use crate::Ctx;

fn assert_not_leader<T: std::fmt::Debug>(what: &str, r: ha_core::Result<T>) {
    match r {
        Err(Error::NotLeader { .. }) => {}
        other => panic!("{what}: expected NotLeader, got {other:?}"),
    }
}

/// A resigns (its session stays alive), B is granted; every write A makes with its old
/// fence, to every store kind, is rejected with `NotLeader` and changes nothing.
pub async fn stale_leader_rejected_by_every_store(ctx: Ctx) {
    let a = ctx.process().await;
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let ga = ea.granted().await.unwrap();
    let fa = ga.fence.clone();
    let job = JobId::random();
    let graphs = a.job_graph_store().await.unwrap();
    let checkpoints = a.completed_checkpoint_store(&job).await.unwrap();
    let counter = a.checkpoint_id_counter(&job).await.unwrap();
    let results = a.job_result_store().await.unwrap();
    let original = JobGraph {
        job_id: job.clone(),
        data: payload("graph", 1),
    };
    graphs.put_job_graph(&fa, &original).await.unwrap();
    let id = counter.get_and_increment(&fa).await.unwrap();
    checkpoints
        .add_checkpoint(
            &fa,
            CompletedCheckpoint {
                job_id: job.clone(),
                checkpoint_id: id,
                data: payload("cp", id),
            },
        )
        .await
        .unwrap();
    let done = JobId::random();
    results
        .create_dirty(
            &fa,
            &JobResult {
                job_id: done.clone(),
                status: JobStatus::Finished,
                data: payload("r", 1),
            },
        )
        .await
        .unwrap();

    let b = ctx.process().await;
    let (_sb, mut eb) = contend(&b, "dispatcher").await;
    sa.close().await.unwrap();
    let gb = tokio::time::timeout(quick(&ctx), eb.granted())
        .await
        .expect("b granted")
        .unwrap();
    assert!(gb.epoch > ga.epoch);

    assert_not_leader("confirm with stale grant", ea.confirm(&ga, "addr-stale").await);
    let changed = JobGraph {
        job_id: job.clone(),
        data: payload("graph", 2),
    };
    assert_not_leader("job graph put", graphs.put_job_graph(&fa, &changed).await);
    assert_not_leader("job graph removal", graphs.global_cleanup(&fa, &job).await);
    assert_not_leader("blob deletion", a.blob_store().delete_all(&fa, &graphs, &job).await);
    let cp2 = CompletedCheckpoint {
        job_id: job.clone(),
        checkpoint_id: 2,
        data: payload("cp", 2),
    };
    assert_not_leader("checkpoint add", checkpoints.add_checkpoint(&fa, cp2).await);
    assert_not_leader(
        "checkpoint shutdown",
        checkpoints.shutdown(&fa, JobStatus::Cancelled).await,
    );
    assert_not_leader("counter increment", counter.get_and_increment(&fa).await);
    assert_not_leader("counter set", counter.set_count(&fa, 100).await);
    assert_not_leader("counter removal", counter.shutdown(&fa, JobStatus::Finished).await);
    let other = JobResult {
        job_id: JobId::random(),
        status: JobStatus::Failed,
        data: payload("r", 2),
    };
    assert_not_leader("job result create", results.create_dirty(&fa, &other).await);
    assert_not_leader("job result mark clean", results.mark_clean(&fa, &done).await);
    let raw = a
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    let name = format!("jobGraph-{job}");
    let v = raw.get(&name).await.unwrap().expect("graph entry");
    assert_not_leader(
        "raw replace",
        raw.replace(&fa, &name, v.version, Bytes::from_static(b"x")).await,
    );
    assert_not_leader(
        "raw add",
        raw.add_and_lock(&fa, "jobGraph-stale", Bytes::from_static(b"x")).await,
    );
    assert_not_leader("raw remove", raw.release_and_try_remove(&fa, &name).await);

    // Nothing changed, as seen by the new leader's process.
    let b_graphs = b.job_graph_store().await.unwrap();
    assert_eq!(b_graphs.recover_job_graph(&job).await.unwrap(), Some(original));
    let b_cps = b.completed_checkpoint_store(&job).await.unwrap();
    assert_eq!(b_cps.checkpoint_ids().await.unwrap(), vec![id]);
    assert_eq!(
        b.checkpoint_id_counter(&job).await.unwrap().get().await.unwrap(),
        id + 1
    );
    let b_results = b.job_result_store().await.unwrap();
    assert_eq!(b_results.state(&done).await.unwrap(), Some(ResultState::Dirty));
    assert!(!b_results.has_job_result_entry(&other.job_id).await.unwrap());
    // The new leader can write.
    b_graphs.put_job_graph(&gb.fence, &changed).await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// After a crash hand-over, the crashed leader's fence is rejected by the backend even
/// when presented through another live process's stores.
pub async fn crashed_leader_rejected_after_handover(ctx: Ctx) {
    let a = ctx.process().await;
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let stale: Fence = ea.granted().await.unwrap().fence;
    let b = ctx.process().await;
    let (_sb, mut eb) = contend(&b, "dispatcher").await;
    drop((sa, ea));
    ctx.crash(a).await;
    let gb = tokio::time::timeout(ctx.crash_timeout() * 3, eb.granted())
        .await
        .expect("b granted")
        .unwrap();
    let job = JobId::random();
    let graphs = b.job_graph_store().await.unwrap();
    let g = JobGraph {
        job_id: job.clone(),
        data: payload("graph", 1),
    };
    assert_not_leader("stale fence via live process", graphs.put_job_graph(&stale, &g).await);
    let counter = b.checkpoint_id_counter(&job).await.unwrap();
    assert_not_leader("stale fence counter", counter.get_and_increment(&stale).await);
    graphs.put_job_graph(&gb.fence, &g).await.unwrap();
    assert_eq!(counter.get_and_increment(&gb.fence).await.unwrap(), 1);
    b.close().await.unwrap();
}
