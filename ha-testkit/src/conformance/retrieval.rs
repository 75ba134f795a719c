//! Retrieval: only confirmed leaders are visible, and changes arrive by watch.

use super::util::{component_id, contend, eventually, quick};
use crate::Ctx;

/// A granted but unconfirmed leader is invisible; after confirming it is visible with
/// its session and address.
pub async fn sees_only_confirmed_leaders(ctx: Ctx) {
    let ha = ctx.process().await;
    let observer = ctx.process().await;
    let retrieval = observer
        .leader_retrieval_service(&component_id("dispatcher"))
        .await
        .unwrap();
    let (_svc, mut e) = contend(&ha, "dispatcher").await;
    let g = e.granted().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(retrieval.current(), None, "unconfirmed leader must not be visible");
    e.confirm(&g, "addr-1").await.unwrap();
    let info = tokio::time::timeout(quick(&ctx), retrieval.wait_for(|v| v.is_some()))
        .await
        .expect("confirmed leader visible")
        .unwrap()
        .unwrap();
    assert_eq!(info.address, "addr-1");
    assert_eq!(info.session_id, g.session_id);
    assert_eq!(info.epoch, g.epoch.0, "the record names the term's epoch");
    assert!(info.confirmed_at_ms > 0);
    ha.close().await.unwrap();
    observer.close().await.unwrap();
}

/// After a hand-over the retriever sees the new leader's address and session.
pub async fn follows_handover(ctx: Ctx) {
    let observer = ctx.process().await;
    let retrieval = observer
        .leader_retrieval_service(&component_id("dispatcher"))
        .await
        .unwrap();
    let a = ctx.process().await;
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let ga = ea.granted().await.unwrap();
    ea.confirm(&ga, "addr-a").await.unwrap();
    retrieval
        .wait_for(|v| v.as_ref().is_some_and(|i| i.address == "addr-a"))
        .await
        .unwrap();
    let b = ctx.process().await;
    let (_sb, mut eb) = contend(&b, "dispatcher").await;
    sa.close().await.unwrap();
    let gb = tokio::time::timeout(quick(&ctx), eb.granted())
        .await
        .expect("b granted")
        .unwrap();
    eb.confirm(&gb, "addr-b").await.unwrap();
    let want = gb.session_id;
    eventually(quick(&ctx), "retriever sees b", || {
        let cur = retrieval.current();
        async move { cur.is_some_and(|i| i.address == "addr-b" && i.session_id == want) }
    })
    .await;
    a.close().await.unwrap();
    b.close().await.unwrap();
    observer.close().await.unwrap();
}

/// A retriever started after the leader confirmed sees it immediately: the current
/// record is read before `leader_retrieval_service` returns.
pub async fn starts_with_current_leader(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_svc, mut e) = contend(&ha, "restserver").await;
    let g = e.granted().await.unwrap();
    e.confirm(&g, "http://rest:8081").await.unwrap();
    let observer = ctx.process().await;
    let retrieval = observer
        .leader_retrieval_service(&component_id("restserver"))
        .await
        .unwrap();
    // The current value is there as soon as the service is started, without waiting.
    let info = retrieval
        .current()
        .expect("current leader visible when retrieval starts");
    assert_eq!(info.address, "http://rest:8081");
    ha.close().await.unwrap();
    observer.close().await.unwrap();
}

/// A record that cannot be decoded reads as "no leader" for retrievers, whether it is
/// there when they start or appears later; a valid record after it is seen again.
pub async fn corrupt_record_reads_as_no_leader(ctx: Ctx) {
    use ha_core::{LeaderInformation, LeaderSessionId};
    let observer = ctx.process().await;
    let component = component_id("dispatcher");
    let info = LeaderInformation {
        session_id: LeaderSessionId::random(),
        address: "addr-valid".into(),
        epoch: 1,
        confirmed_at_ms: 1,
    };
    let valid = bytes::Bytes::from(info.to_json());
    let garbage = bytes::Bytes::from_static(b"\x00garbage");
    ctx.harness()
        .write_leader_record(ctx.cluster_id(), &component, Some(valid.clone()))
        .await
        .unwrap();
    let retrieval = observer.leader_retrieval_service(&component).await.unwrap();
    assert_eq!(retrieval.current(), Some(info.clone()));
    ctx.harness()
        .write_leader_record(ctx.cluster_id(), &component, Some(garbage.clone()))
        .await
        .unwrap();
    tokio::time::timeout(quick(&ctx), retrieval.wait_for(|v| v.is_none()))
        .await
        .expect("a corrupt record reads as no leader")
        .unwrap();
    let late = observer.leader_retrieval_service(&component).await.unwrap();
    assert_eq!(
        late.current(),
        None,
        "a retriever starting on a corrupt record sees no leader"
    );
    ctx.harness()
        .write_leader_record(ctx.cluster_id(), &component, Some(valid))
        .await
        .unwrap();
    tokio::time::timeout(quick(&ctx), late.wait_for(|v| v.as_ref() == Some(&info)))
        .await
        .expect("a valid record after a corrupt one is seen")
        .unwrap();
    observer.close().await.unwrap();
}
