//! Server-side partitions of a 3-member etcd cluster: one member cut from the other
//! members (its raft streams, pipeline and lease forwarding closed by the testkit's
//! peer proxies) while its clients still reach it.
//!
//! Each case starts its own cluster; cases run one at a time to keep the 2-core test
//! machine's raft timings sane.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cluster, contend, granted_within, init_tracing, process_with_ttl, raft_leader, try_process};
use ha_core::{ComponentId, Error, JobId};
use ha_testkit::EtcdServer;
use tokio::time::Instant;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The contenders' lease TTL. Healing a cut member forces a raft election (etcd 3.4 has
/// no pre-vote); on a loaded 2-core machine that election and the client's retries
/// outlived a 1 s lease, so B's own term ran out after the heal.
const LEASE: Duration = Duration::from_secs(3);

/// Contender A's client talks only to member M, a raft follower; B's to the other
/// two. M is cut from the others: A loses its term (its lease renewals, forwarded by
/// M to the raft leader, fail) no later than B is granted, by the same clock, and A
/// acts as leader no later than that either. Once healed, A's stale fence is refused
/// and the cluster converges on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_cut_from_cluster_revokes_before_new_grant() {
    member_cut(false).await;
}

/// As [`member_cut_from_cluster_revokes_before_new_grant`], with M the raft leader:
/// it steps down once it misses a quorum, and the others elect a new raft leader
/// (whose lessor extends every lease) before A's lease can expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_leader_cut_from_cluster_revokes_before_new_grant() {
    member_cut(true).await;
}

async fn member_cut(cut_raft_leader: bool) {
    let _serial = SERIAL.lock().await;
    init_tracing();
    let server = EtcdServer::start_partitionable(3).expect("start a partitionable 3-member etcd cluster");
    let leader = raft_leader(&server).await;
    let m = if cut_raft_leader { leader } else { (leader + 1) % 3 };
    let others: Vec<String> = (0..3).filter(|i| *i != m).map(|i| server.endpoint(i)).collect();
    let c = cluster("member-cut");
    let a = process_with_ttl(vec![server.endpoint(m)], &c, LEASE).await;
    let b = process_with_ttl(others, &c, LEASE).await;
    let (_sa, mut ea) = contend(&a.ha, "dispatcher").await;
    let ga = granted_within(&mut ea, Duration::from_secs(5)).await;
    let (_sb, mut eb) = contend(&b.ha, "dispatcher").await;
    let job = JobId::random();
    let counter_a = a.ha.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter_a.get_and_increment(&ga.fence).await.unwrap(), 1);
    assert!(ea.has_leadership(&ga) && eb.current().is_none());

    let cut = Instant::now();
    server.isolate(m).unwrap();
    // A acts as leader every few ms for as long as it has leadership, and notes when
    // it is told it lost it.
    let a_side = tokio::spawn({
        let ga = ga.clone();
        async move {
            let mut last_action = Instant::now();
            loop {
                if ea.has_leadership(&ga) {
                    last_action = Instant::now();
                }
                if let Ok(r) = tokio::time::timeout(Duration::from_millis(2), ea.revoked(&ga)).await {
                    r.unwrap();
                    return (last_action, Instant::now(), ea);
                }
            }
        }
    });
    // A's write during the cut is not acknowledged (M has no quorum).
    let during = counter_a.get_and_increment(&ga.fence).await;
    assert!(
        during.is_err(),
        "a write through the cut member was acknowledged: {during:?}"
    );
    let gb = granted_within(&mut eb, LEASE * 4 + Duration::from_secs(3)).await;
    let granted_at = Instant::now();
    let (last_action, revoked_at, ea) = tokio::time::timeout(Duration::from_secs(10), a_side)
        .await
        .expect("A is revoked")
        .unwrap();
    let ms = |t: Instant| t.saturating_duration_since(cut).as_millis();
    println!(
        "member {m} cut (raft leader: {cut_raft_leader}): A last acted at {} ms, revoked at {} ms, B granted at {} ms after the cut; write during the cut: {during:?}",
        ms(last_action),
        ms(revoked_at),
        ms(granted_at)
    );
    assert!(gb.epoch > ga.epoch);
    assert!(
        last_action <= granted_at,
        "A acted {} ms after B was granted",
        last_action.saturating_duration_since(granted_at).as_millis()
    );
    assert!(
        revoked_at <= granted_at,
        "A was revoked {} ms after B was granted",
        revoked_at.saturating_duration_since(granted_at).as_millis()
    );
    let counter_b = b.ha.checkpoint_id_counter(&job).await.unwrap();
    let from_b = counter_b.get_and_increment(&gb.fence).await.unwrap();

    // Healed: A's stale fence is refused, B keeps office, and every member agrees.
    server.heal_peers();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match counter_a.get_and_increment(&ga.fence).await {
            Err(Error::NotLeader { .. }) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("stale term after the heal: expected NotLeader, got {other:?}"),
        }
    }
    assert!(eb.has_leadership(&gb), "B lost office over the heal");
    assert!(ea.current().is_none(), "A was granted again while B leads");
    // A healed raft leader forces an election (etcd 3.4 has no pre-vote): B's requests
    // may meet "leader changed" for a moment; B's term is not affected.
    loop {
        match eb.confirm(&gb, "b-address").await {
            Ok(()) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("B could not confirm after the heal: {e:?}"),
        }
    }
    let next = loop {
        match counter_b.get_and_increment(&gb.fence).await {
            Ok(v) => break v,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("B's counter after the heal: {e:?}"),
        }
    };
    assert!(next > from_b, "B's counter went back: {next} after {from_b}");
    assert!(eb.has_leadership(&gb), "B lost office over the heal");
    // The healed member serves again once it has rejoined the raft group.
    let observer = loop {
        match try_process(vec![server.endpoint(m)], &c).await {
            Ok(p) => break p,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the healed member did not serve again: {e:?}"),
        }
    };
    let retrieval = observer
        .ha
        .leader_retrieval_service(&ComponentId::new("dispatcher").unwrap())
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        retrieval.wait_for(|v| v.as_ref().is_some_and(|i| i.address == "b-address")),
    )
    .await
    .expect("the healed member serves B's leader record")
    .unwrap();
    drop(ea);
    observer.ha.close().await.unwrap();
    b.ha.close().await.unwrap();
    a.ha.close().await.unwrap();
}
