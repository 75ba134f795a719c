//! The job-result store: dirty → clean, and hand-over of an unfinished cleanup.

use ha_core::{Error, JobId, JobResult, JobStatus, ResultState};

use super::util::{contend, payload, quick};
use crate::Ctx;

/// A result is written dirty, listed as dirty, marked clean (idempotently), and a
/// second, different result for the same job is refused.
pub async fn dirty_to_clean(ctx: Ctx) {
    let ha = ctx.process().await;
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
    let b = ctx.process().await;
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
