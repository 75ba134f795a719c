//! The job-graph store.

use ha_core::{JobGraph, JobId};

use super::util::{contend, payload};
use crate::Ctx;

/// Put, recover, list, replace (old payload discarded) and remove.
pub async fn put_recover_replace_remove(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let store = ha.job_graph_store().await.unwrap();
    let (j1, j2) = (JobId::random(), JobId::random());
    assert_eq!(store.recover_job_graph(&j1).await.unwrap(), None);
    let g1 = JobGraph {
        job_id: j1.clone(),
        data: payload("g1", 1),
    };
    store.put_job_graph(&f, &g1).await.unwrap();
    store
        .put_job_graph(
            &f,
            &JobGraph {
                job_id: j2.clone(),
                data: payload("g2", 1),
            },
        )
        .await
        .unwrap();
    let mut want = vec![j1.clone(), j2.clone()];
    want.sort();
    assert_eq!(store.job_ids().await.unwrap(), want);
    let other = ctx.process().await;
    let other_store = other.job_graph_store().await.unwrap();
    assert_eq!(other_store.recover_job_graph(&j1).await.unwrap(), Some(g1));
    other_store.local_cleanup(&j1).await.unwrap();
    let g1b = JobGraph {
        job_id: j1.clone(),
        data: payload("g1", 2),
    };
    store.put_job_graph(&f, &g1b).await.unwrap();
    assert_eq!(other_store.recover_job_graph(&j1).await.unwrap(), Some(g1b));
    other_store.local_cleanup(&j1).await.unwrap();
    ha.cleaner().flush().await;
    let graph_payloads = || async {
        ctx.storage()
            .list_all()
            .await
            .unwrap()
            .iter()
            .filter(|p| p.contains("/jobgraphs/"))
            .count()
    };
    assert_eq!(graph_payloads().await, 2, "the replaced payload is discarded");
    assert!(store.global_cleanup(&f, &j1).await.unwrap());
    assert!(store.global_cleanup(&f, &j2).await.unwrap());
    assert!(store.job_ids().await.unwrap().is_empty());
    assert_eq!(graph_payloads().await, 0);
    ha.close().await.unwrap();
    other.close().await.unwrap();
}

/// A graph recovered (locked) by another process is not removed until it releases it.
pub async fn locks_prevent_removal(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let store = ha.job_graph_store().await.unwrap();
    let job = JobId::random();
    let g = JobGraph {
        job_id: job.clone(),
        data: payload("g", 1),
    };
    store.put_job_graph(&f, &g).await.unwrap();
    let other = ctx.process().await;
    let other_store = other.job_graph_store().await.unwrap();
    assert!(other_store.recover_job_graph(&job).await.unwrap().is_some());
    assert!(
        !store.global_cleanup(&f, &job).await.unwrap(),
        "locked by the other process"
    );
    assert_eq!(store.recover_job_graph(&job).await.unwrap(), Some(g));
    store.local_cleanup(&job).await.unwrap();
    other_store.local_cleanup(&job).await.unwrap();
    assert!(store.global_cleanup(&f, &job).await.unwrap());
    assert!(store.job_ids().await.unwrap().is_empty());
    ha.close().await.unwrap();
    other.close().await.unwrap();
}
