//! Election: one leader at a time, hand-over on resign and on crash, multiplexing,
//! epochs, self-healing; participants, observers and targeted hand-off
//! (`participants`).

use std::time::Duration;

mod participants;
pub use participants::{hand_off_to_named_participant, lists_participants, observer_sees_every_leader};

use super::util::{component_id, contend, eventually, quick, single_leader};
use crate::Ctx;

/// A lone contender is granted, and its grant carries a fence of its epoch.
pub async fn single_contender_is_granted(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_svc, mut e) = contend(&ha, "dispatcher").await;
    let grant = tokio::time::timeout(quick(&ctx), e.granted())
        .await
        .expect("granted in time")
        .unwrap();
    assert_eq!(grant.fence.epoch, grant.epoch);
    assert!(e.has_leadership(&grant));
    e.confirm(&grant, "addr-a").await.expect("confirm");
    ha.close().await.unwrap();
}

/// Three processes: exactly one is granted; through several resignations there is
/// never more than one grant at a time, and each time someone leads again.
pub async fn one_leader_at_a_time(ctx: Ctx) {
    let procs = [ctx.process().await, ctx.process().await, ctx.process().await];
    let mut services = Vec::new();
    let mut elections = Vec::new();
    for p in &procs {
        let (s, e) = contend(p, "dispatcher").await;
        services.push(Some(s));
        elections.push(e);
    }
    for _round in 0..2 {
        let refs: Vec<_> = elections.iter().collect();
        let (idx, grant) = single_leader(&refs, quick(&ctx)).await;
        // Hold a moment and check nobody else is granted meanwhile.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let granted = elections.iter().filter(|e| e.current().is_some()).count();
            assert_eq!(granted, 1, "exactly one contender must be granted");
        }
        assert!(elections[idx].has_leadership(&grant));
        services[idx]
            .take()
            .expect("leader service present")
            .close()
            .await
            .unwrap();
    }
    for p in &procs {
        p.close().await.unwrap();
    }
}

/// When the leader resigns, another contender is granted without waiting for a lease.
pub async fn graceful_handover(ctx: Ctx) {
    let a = ctx.process().await;
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let ga = tokio::time::timeout(quick(&ctx), ea.granted())
        .await
        .expect("a granted")
        .unwrap();
    let b = ctx.process().await;
    let (_sb, mut eb) = contend(&b, "dispatcher").await;
    let started = tokio::time::Instant::now();
    sa.close().await.unwrap();
    let gb = tokio::time::timeout(quick(&ctx), eb.granted())
        .await
        .expect("b granted after resign")
        .unwrap();
    tracing::info!(elapsed = ?started.elapsed(), "graceful hand-over");
    assert_ne!(ga.session_id, gb.session_id);
    assert!(!ea.has_leadership(&ga));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// When the leader's process crashes, another contender is granted once the crashed
/// session runs out, and not while the old term could still be valid.
pub async fn crash_handover_after_lease(ctx: Ctx) {
    let a = ctx.process().await;
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let ga = tokio::time::timeout(quick(&ctx), ea.granted())
        .await
        .expect("a granted")
        .unwrap();
    let b = ctx.process().await;
    let (_sb, mut eb) = contend(&b, "dispatcher").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(eb.current().is_none(), "b must not be granted while a leads");
    drop((sa, ea));
    ctx.crash(a).await;
    let gb = tokio::time::timeout(ctx.crash_timeout() * 3, eb.granted())
        .await
        .expect("b granted after a's crash")
        .unwrap();
    assert!(gb.epoch > ga.epoch, "a later term has a higher epoch");
    b.close().await.unwrap();
}

/// All components of one group share one term: the same session id and epoch.
pub async fn components_share_one_term(ctx: Ctx) {
    let ha = ctx.process().await;
    let svc = ha
        .leader_election_service(ha_core::DEFAULT_ELECTION_GROUP)
        .await
        .unwrap();
    let mut d = svc.register(component_id("dispatcher")).unwrap();
    let mut r = svc.register(component_id("resourcemanager")).unwrap();
    let gd = d.granted().await.unwrap();
    let gr = r.granted().await.unwrap();
    assert_eq!(gd, gr);
    // A component registered while leading is granted the same term at once.
    let mut j = svc.register(component_id("job-0123")).unwrap();
    assert_eq!(j.granted().await.unwrap(), gd);
    assert!(
        svc.register(component_id("dispatcher")).is_err(),
        "duplicate component must be refused"
    );
    ha.close().await.unwrap();
}

/// Every new term has a higher epoch than the one before.
pub async fn later_terms_have_higher_epochs(ctx: Ctx) {
    let mut last = None;
    for _ in 0..3 {
        let ha = ctx.process().await;
        let (svc, mut e) = contend(&ha, "dispatcher").await;
        let g = tokio::time::timeout(quick(&ctx), e.granted())
            .await
            .expect("granted")
            .unwrap();
        if let Some(prev) = last {
            assert!(g.epoch > prev, "epoch {} not above previous {}", g.epoch, prev);
        }
        last = Some(g.epoch);
        svc.close().await.unwrap();
        ha.close().await.unwrap();
    }
}

/// If the published leader information is deleted from outside while we lead, the
/// service writes it back.
pub async fn self_heals_deleted_leader_information(ctx: Ctx) {
    heals_tampered_record(ctx, None).await;
}

/// If the published leader information is overwritten with garbage while we lead, the
/// service writes it back (on every backend alike: the rule lives in the service).
pub async fn self_heals_corrupt_leader_information(ctx: Ctx) {
    let garbage = bytes::Bytes::from_static(b"{not leader information");
    heals_tampered_record(ctx, Some(garbage)).await;
}

/// A confirmed leader's record is replaced by `tampered` (deleted with `None`) from
/// outside; the leader restores it, and the stored record is readable again.
async fn heals_tampered_record(ctx: Ctx, tampered: Option<bytes::Bytes>) {
    let ha = ctx.process().await;
    let (_svc, mut e) = contend(&ha, "dispatcher").await;
    let g = e.granted().await.unwrap();
    e.confirm(&g, "addr-heal").await.unwrap();
    let retrieval = ha.leader_retrieval_service(&component_id("dispatcher")).await.unwrap();
    let want = Some(g.session_id);
    eventually(quick(&ctx), "leader published", || {
        let cur = retrieval.current();
        async move { cur.map(|i| i.session_id) == want }
    })
    .await;
    ctx.harness()
        .write_leader_record(ctx.cluster_id(), &component_id("dispatcher"), tampered)
        .await
        .unwrap();
    // Give the change time to reach the retriever, then wait for the repair.
    tokio::time::sleep(Duration::from_millis(200)).await;
    eventually(quick(&ctx), "leader information restored", || {
        let cur = retrieval.current();
        async move { cur.is_some_and(|i| i.address == "addr-heal" && Some(i.session_id) == want) }
    })
    .await;
    let fresh = ha.leader_retrieval_service(&component_id("dispatcher")).await.unwrap();
    assert_eq!(
        fresh.current().map(|i| i.session_id),
        want,
        "the stored record is repaired"
    );
    ha.close().await.unwrap();
}

/// A leader whose process stops dead (every task frozen, as under SIGSTOP or a long
/// GC pause) past its term's `valid_until` reports `has_leadership() == false` the
/// moment it runs again, before any background task has run, and its fenced writes
/// are refused locally. The process runs on a runtime of its own whose only thread is
/// blocked for the pause, so no timer of it can fire.
pub async fn no_action_after_deadline(ctx: Ctx) {
    let process = ctx.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = rt.block_on(async move {
            let ha = process.process().await;
            let (_svc, mut e) = contend(&ha, "dispatcher").await;
            let g = tokio::time::timeout(quick(&process), e.granted())
                .await
                .expect("granted")
                .unwrap();
            let counter = ha.checkpoint_id_counter(&ha_core::JobId::random()).await.unwrap();
            counter.get_and_increment(&g.fence).await.expect("a write while valid");
            let until = g
                .valid_until()
                .expect("a granted term carries the backend's valid_until");
            let lease_bound = process.crash_timeout() * 2;
            assert!(
                until <= tokio::time::Instant::now() + lease_bound,
                "valid_until {:?} from now is beyond any lease",
                until.saturating_duration_since(tokio::time::Instant::now())
            );
            // The whole process stops: this thread is its only one.
            let pause = until.saturating_duration_since(tokio::time::Instant::now()) + Duration::from_millis(50);
            std::thread::sleep(pause);
            // The first thing it does on waking, before yielding to any other task:
            let leading = e.has_leadership(&g);
            let current = e.current().is_some();
            let write = counter.get_and_increment(&g.fence).await;
            (leading, current, write.map_err(|err| err.is_not_leader()), ha)
        });
        drop(rt);
        result
    })
    .await
    .unwrap();
    let (leading, current, write, ha) = outcome;
    assert!(!leading, "has_leadership() still true after valid_until");
    assert!(!current, "current() still shows the grant after valid_until");
    assert_eq!(
        write,
        Err(true),
        "a fenced write after valid_until must be refused as NotLeader"
    );
    drop(ha);
}
