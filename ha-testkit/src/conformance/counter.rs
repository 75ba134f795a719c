//! The checkpoint-id counter: starts at 1, strictly increasing under concurrency.

use std::collections::BTreeSet;

use ha_core::{JobId, JobStatus};

use super::util::contend;
use crate::Ctx;

/// A fresh counter reads 1 and hands out 1, 2, 3.
pub async fn starts_at_one_and_increments(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let counter = ha.checkpoint_id_counter(&JobId::random()).await.unwrap();
    assert_eq!(counter.get().await.unwrap(), 1);
    for want in 1..=3 {
        assert_eq!(counter.get_and_increment(&f).await.unwrap(), want);
    }
    assert_eq!(counter.get().await.unwrap(), 4);
    ha.close().await.unwrap();
}

/// 16 tasks (in two processes) increment concurrently: no value is handed out twice,
/// each task's values increase, and the final count matches the number of calls.
pub async fn strictly_increasing_under_16_tasks(ctx: Ctx) {
    const TASKS: usize = 16;
    const PER_TASK: usize = 25;
    let a = ctx.process().await;
    let b = ctx.process().await;
    let (_s, mut e) = contend(&a, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let job = JobId::random();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let counter = if t % 2 == 0 { &a } else { &b }
            .checkpoint_id_counter(&job)
            .await
            .unwrap();
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                got.push(counter.get_and_increment(&f).await.expect("increment"));
            }
            got
        }));
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "a task saw non-increasing ids: {got:?}"
        );
        for v in got {
            assert!(all.insert(v), "id {v} handed out twice");
        }
    }
    let n = (TASKS * PER_TASK) as u64;
    assert_eq!(all.len() as u64, n);
    assert_eq!(all.iter().next().copied(), Some(1));
    assert_eq!(all.iter().last().copied(), Some(n));
    assert_eq!(a.checkpoint_id_counter(&job).await.unwrap().get().await.unwrap(), n + 1);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// `set_count` restores a value (beyond 32 bits); suspension keeps the counter, a
/// terminal status removes it.
pub async fn set_count_and_shutdown(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let counter = ha.checkpoint_id_counter(&JobId::random()).await.unwrap();
    let big = (1u64 << 40) + 7;
    counter.set_count(&f, big).await.unwrap();
    assert_eq!(counter.get_and_increment(&f).await.unwrap(), big);
    assert_eq!(counter.get().await.unwrap(), big + 1);
    counter.shutdown(&f, JobStatus::Suspended).await.unwrap();
    assert_eq!(counter.get().await.unwrap(), big + 1);
    counter.shutdown(&f, JobStatus::Cancelled).await.unwrap();
    assert_eq!(counter.get().await.unwrap(), 1, "a removed counter starts over");
    ha.close().await.unwrap();
}

/// A checkpoint id handed out is never handed out again: `set_count` below the
/// current value is refused (and changes nothing); equal or higher values are fine.
pub async fn set_count_never_goes_backwards(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let counter = ha.checkpoint_id_counter(&JobId::random()).await.unwrap();
    counter.set_count(&f, 10).await.unwrap();
    assert_eq!(counter.get_and_increment(&f).await.unwrap(), 10);
    assert_eq!(counter.get_and_increment(&f).await.unwrap(), 11);
    match counter.set_count(&f, 5).await {
        Err(ha_core::Error::InvalidRequest { .. }) => {}
        other => panic!("set_count(5) after 11 was handed out must be refused, got {other:?}"),
    }
    assert_eq!(counter.get().await.unwrap(), 12);
    counter
        .set_count(&f, 12)
        .await
        .expect("setting the current value is a no-op");
    assert_eq!(counter.get_and_increment(&f).await.unwrap(), 12);
    counter.set_count(&f, 20).await.unwrap();
    assert_eq!(counter.get_and_increment(&f).await.unwrap(), 20);
    ha.close().await.unwrap();
}
