//! The job-result store: dirty → clean, hand-over of an unfinished cleanup, and
//! retention of clean results (delete-on-commit, TTL).

use ha_core::{
    checkpoint_key, CleanupRetry, CompletedCheckpoint, Error, JobGraph, JobId, JobResult, JobResultRetention,
    JobStatus, ResultState, StoreNamespace,
};

use super::util::{contend, payload, quick};
use crate::Ctx;

/// A result is written dirty, listed as dirty, marked clean (idempotently), and a
/// second, different result for the same job is refused.
pub async fn dirty_to_clean(ctx: Ctx) {
    let ha = ctx.process().await.with_job_result_retention(JobResultRetention::KEEP);
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let store = ha.job_result_store().await.unwrap();
    let job = JobId::random();
    assert!(!store.has_job_result_entry(&job).await.unwrap());
    let r = JobResult {
        job_id: job.clone(),
        status: JobStatus::Finished,
        data: payload("res", 1),
    };
    store.create_dirty(&f, &r).await.unwrap();
    store.create_dirty(&f, &r).await.expect("identical retry succeeds");
    assert_eq!(store.state(&job).await.unwrap(), Some(ResultState::Dirty));
    assert_eq!(store.dirty_results().await.unwrap(), vec![r.clone()]);
    store.mark_clean(&f, &job).await.unwrap();
    store.mark_clean(&f, &job).await.unwrap();
    assert_eq!(store.state(&job).await.unwrap(), Some(ResultState::Clean));
    assert!(store.dirty_results().await.unwrap().is_empty());
    assert!(store.has_job_result_entry(&job).await.unwrap());
    let different = JobResult {
        job_id: job.clone(),
        status: JobStatus::Failed,
        data: payload("res", 2),
    };
    match store.create_dirty(&f, &different).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match store.mark_clean(&f, &JobId::random()).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    ha.close().await.unwrap();
}

/// A leader that wrote a dirty result and went away leaves it to the next leader, who
/// sees it dirty (and so never re-runs the job) and finishes the cleanup.
pub async fn new_leader_finishes_cleanup(ctx: Ctx) {
    let a = ctx.process().await;
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let fa = ea.granted().await.unwrap().fence;
    let job = JobId::random();
    let r = JobResult {
        job_id: job.clone(),
        status: JobStatus::Cancelled,
        data: payload("res", 1),
    };
    a.job_result_store().await.unwrap().create_dirty(&fa, &r).await.unwrap();
    let b = ctx.process().await.with_job_result_retention(JobResultRetention::KEEP);
    let (_sb, mut eb) = contend(&b, "dispatcher").await;
    sa.close().await.unwrap();
    let fb = tokio::time::timeout(quick(&ctx), eb.granted())
        .await
        .expect("b granted")
        .unwrap()
        .fence;
    let store = b.job_result_store().await.unwrap();
    assert_eq!(store.dirty_results().await.unwrap(), vec![r]);
    store.mark_clean(&fb, &job).await.unwrap();
    assert_eq!(store.state(&job).await.unwrap(), Some(ResultState::Clean));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// The cleanup flow of a finished job removes its checkpoints, counter, graph and
/// blobs and marks its result clean only when nothing is left: while another process
/// still locks a checkpoint the attempt reports it and the result stays dirty; the
/// retrying flow finishes once that lock is gone.
pub async fn cleanup_marks_clean_only_when_nothing_is_left(ctx: Ctx) {
    let a = ctx
        .process_retaining(2)
        .await
        .with_job_result_retention(JobResultRetention::KEEP);
    let (_s, mut e) = contend(&a, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let job = JobId::random();
    let graph = JobGraph {
        job_id: job.clone(),
        data: payload("graph", 1),
    };
    a.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(&f, &graph)
        .await
        .unwrap();
    a.blob_store().put(&job, "blob-1", payload("blob", 1)).await.unwrap();
    let counter = a.checkpoint_id_counter(&job).await.unwrap();
    let store = a.completed_checkpoint_store(&job).await.unwrap();
    for _ in 0..2 {
        let id = counter.get_and_increment(&f).await.unwrap();
        let cp = CompletedCheckpoint {
            job_id: job.clone(),
            checkpoint_id: id,
            data: payload("cp", id),
        };
        store.add_checkpoint(&f, cp).await.unwrap();
    }
    let result = JobResult {
        job_id: job.clone(),
        status: JobStatus::Finished,
        data: payload("res", 1),
    };
    let results = a.job_result_store().await.unwrap();
    results.create_dirty(&f, &result).await.unwrap();

    let b = ctx.process().await;
    let raw_b = b
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    raw_b.get_and_lock(&checkpoint_key(1)).await.unwrap();
    let first = a.cleanup_job(&f, &job, JobStatus::Finished).await.unwrap();
    assert_eq!(first.remaining, vec![checkpoint_key(1)]);
    assert_eq!(
        results.state(&job).await.unwrap(),
        Some(ResultState::Dirty),
        "not clean while entries remain"
    );

    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        raw_b.release(&checkpoint_key(1)).await.unwrap();
    });
    let retry = CleanupRetry {
        initial_backoff: std::time::Duration::from_millis(50),
        max_backoff: std::time::Duration::from_millis(200),
        max_attempts: 100,
    };
    let done = a
        .cleanup_job_until_done(&f, &job, JobStatus::Finished, retry)
        .await
        .unwrap();
    release.await.unwrap();
    assert!(done.is_complete(), "{done:?}");
    assert_eq!(results.state(&job).await.unwrap(), Some(ResultState::Clean));
    assert!(store.checkpoint_ids().await.unwrap().is_empty());
    assert_eq!(counter.get().await.unwrap(), 1, "the counter is gone");
    assert!(a.job_graph_store().await.unwrap().job_ids().await.unwrap().is_empty());
    assert!(matches!(
        a.blob_store().get(&job, "blob-1").await,
        Err(Error::NotFound { .. })
    ));
    a.cleaner().flush().await;
    let payloads = ctx.storage().list_all().await.unwrap();
    assert!(
        payloads.iter().all(|p| p.contains("/job-results/")),
        "only the job result's payload stays: {payloads:?}"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// With `job-result-store.delete-on-commit` (the default, as in Flink) a result is
/// removed with its payload when it is marked clean, so finished jobs do not pile up in
/// the store (FLINK-32806); a dirty result stays until its cleanup finished. With
/// delete-on-commit off and `job-result-store.retention` set, clean results older than
/// the retention are removed on the next write; younger clean ones and dirty ones stay.
pub async fn delete_on_commit_bounds_the_store(ctx: Ctx) {
    let a = ctx.process().await;
    let (_s, mut e) = contend(&a, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let store = a.job_result_store().await.unwrap();
    let raw = a
        .backend()
        .state_handle_store(&StoreNamespace::JobResults)
        .await
        .unwrap();
    let result = |job: &JobId, n: u64| JobResult {
        job_id: job.clone(),
        status: JobStatus::Finished,
        data: payload("res", n),
    };
    let result_payloads = || async {
        ctx.storage()
            .list_all()
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p.contains("/job-results/"))
            .count()
    };
    for n in 0..5 {
        let job = JobId::random();
        store.create_dirty(&f, &result(&job, n)).await.unwrap();
        assert_eq!(store.state(&job).await.unwrap(), Some(ResultState::Dirty));
        let done = a.cleanup_job(&f, &job, JobStatus::Finished).await.unwrap();
        assert!(done.is_complete(), "{done:?}");
        assert_eq!(
            store.state(&job).await.unwrap(),
            None,
            "a clean result is deleted on commit"
        );
    }
    assert!(raw.list().await.unwrap().is_empty(), "the store stays empty");
    let dirty = JobId::random();
    store.create_dirty(&f, &result(&dirty, 9)).await.unwrap();
    assert_eq!(raw.list().await.unwrap().len(), 1);
    assert_eq!(result_payloads().await, 1, "payloads of deleted results are gone");

    // Keep clean results, but only for a while.
    let retention = std::time::Duration::from_millis(800);
    let kept = a.clone().with_job_result_retention(JobResultRetention {
        delete_on_commit: false,
        retention: Some(retention),
    });
    let kept_store = kept.job_result_store().await.unwrap();
    let old = JobId::random();
    kept_store.create_dirty(&f, &result(&old, 10)).await.unwrap();
    kept_store.mark_clean(&f, &old).await.unwrap();
    assert_eq!(kept_store.state(&old).await.unwrap(), Some(ResultState::Clean));
    tokio::time::sleep(retention + std::time::Duration::from_millis(400)).await;
    let young = JobId::random();
    kept_store.create_dirty(&f, &result(&young, 11)).await.unwrap();
    kept_store.mark_clean(&f, &young).await.unwrap();
    assert_eq!(
        kept_store.state(&old).await.unwrap(),
        None,
        "a clean result older than the retention is removed on the next write"
    );
    assert_eq!(kept_store.state(&young).await.unwrap(), Some(ResultState::Clean));
    assert_eq!(
        kept_store.state(&dirty).await.unwrap(),
        Some(ResultState::Dirty),
        "dirty results are never expired"
    );
    assert_eq!(raw.list().await.unwrap().len(), 2);
    assert_eq!(result_payloads().await, 2);
    a.close().await.unwrap();
}
