//! Faults on a 3-member etcd cluster: a partitioned leader (its member paused) is
//! revoked before the lease expires and anyone else is granted; a member killed while
//! the leader writes; a compaction while a retriever's member is down.
//!
//! Each case starts its own cluster; cases run one at a time to keep the 2-core test
//! machine's raft timings sane.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cluster, contend, granted_within, init_tracing, process, process_with_ttl, raft_leader, TTL};
use etcd_client::{Client, CompactionOptions};
use ha_core::{ComponentId, Error, JobId};
use ha_testkit::EtcdServer;
use tokio::time::Instant;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start_cluster() -> EtcdServer {
    init_tracing();
    EtcdServer::start_cluster(3).expect("start 3-member etcd")
}

/// The leader talks only to a member that gets paused (SIGSTOP): it cannot renew
/// its lease. It is revoked by its own clock *before* the other contender is
/// granted, the hand-over happens within TTL + 1 s, and the stale term's next
/// write is `NotLeader` once the member is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_is_revoked_before_the_next_is_granted() {
    let _serial = SERIAL.lock().await;
    let server = start_cluster();
    let leader = raft_leader(&server).await;
    let p = (leader + 1) % 3;
    let others: Vec<String> = (0..3).filter(|i| *i != p).map(|i| server.endpoint(i)).collect();
    let c = cluster("partition");
    let a = process(vec![server.endpoint(p)], &c).await;
    let b = process(others, &c).await;
    let (_sa, mut ea) = contend(&a.ha, "dispatcher").await;
    let ga = granted_within(&mut ea, Duration::from_secs(5)).await;
    let (_sb, mut eb) = contend(&b.ha, "dispatcher").await;
    let job = JobId::random();
    let counter_a = a.ha.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter_a.get_and_increment(&ga.fence).await.unwrap(), 1);

    server.pause(p).unwrap();
    let paused_at = Instant::now();
    let revoked = tokio::spawn({
        let ga = ga.clone();
        async move {
            ea.revoked(&ga).await.unwrap();
            (Instant::now(), ea)
        }
    });
    let gb = granted_within(&mut eb, TTL + Duration::from_secs(1)).await;
    let granted_at = Instant::now();
    let (revoked_at, ea) = tokio::time::timeout(Duration::from_secs(1), revoked)
        .await
        .expect("a must already be revoked")
        .unwrap();
    assert!(
        revoked_at < granted_at,
        "a revoked {:?} after the pause, b granted {:?} after: revocation must come first",
        revoked_at - paused_at,
        granted_at - paused_at
    );
    assert!(gb.epoch > ga.epoch);
    assert!(ea.current().is_none());

    server.resume(p).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match counter_a.get_and_increment(&ga.fence).await {
            Err(Error::NotLeader { .. }) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("stale term after the partition: expected NotLeader, got {other:?}"),
        }
    }
    let counter_b = b.ha.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter_b.get_and_increment(&gb.fence).await.unwrap(), 2);
    b.ha.close().await.unwrap();
    a.ha.close().await.unwrap();
}

/// The raft leader member is killed while the HA leader increments a counter: the
/// writes carry on through the other members, every handed-out id is unique and
/// increasing, no write is refused as `NotLeader`, and the HA leader keeps office.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_killed_while_the_leader_writes() {
    let _serial = SERIAL.lock().await;
    let mut server = start_cluster();
    let c = cluster("memberkill");
    // A TTL well above a raft election plus the client's switch to another member, so
    // that the lease's keep-alive outlives the crash even on a loaded machine.
    let a = process_with_ttl(server.endpoints(), &c, Duration::from_secs(3)).await;
    let (_sa, mut ea) = contend(&a.ha, "dispatcher").await;
    let ga = granted_within(&mut ea, Duration::from_secs(5)).await;
    let counter = a.ha.checkpoint_id_counter(&JobId::random()).await.unwrap();

    let mut ids = Vec::new();
    let mut failures = 0u32;
    let mut killed_after = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.len() < 300 && Instant::now() < deadline {
        if ids.len() == 100 && killed_after.is_none() {
            let leader = raft_leader(&server).await;
            tokio::task::block_in_place(|| server.kill(leader));
            killed_after = Some(ids.len());
        }
        match counter.get_and_increment(&ga.fence).await {
            Ok(id) => ids.push(id),
            Err(e @ Error::NotLeader { .. }) => panic!("leader fenced off by a member crash: {e}"),
            Err(e) => {
                assert!(e.is_retryable(), "unexpected error kind: {e:?}");
                failures += 1;
            }
        }
    }
    assert!(killed_after.is_some(), "the member was never killed");
    assert_eq!(
        ids.len(),
        300,
        "writes did not carry on after the kill ({failures} failures)"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not strictly increasing");
    assert!(
        ea.has_leadership(&ga),
        "a member crash must not cost the HA leader its term"
    );
    tracing::info!(failures, "writes failed around the member kill");
    a.ha.close().await.unwrap();
}

/// A retriever's only member is down while the leader publishes several times and
/// the history is compacted: when the member is back, the retriever's watch cannot
/// resume from its revision, lists again, converges on the latest record and keeps
/// following.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_during_a_watch() {
    let _serial = SERIAL.lock().await;
    let mut server = start_cluster();
    let c = cluster("compaction");
    let leader = process(vec![server.endpoint(1), server.endpoint(2)], &c).await;
    let observer = process(vec![server.endpoint(0)], &c).await;
    let (_s, mut e) = contend(&leader.ha, "dispatcher").await;
    let g = granted_within(&mut e, Duration::from_secs(5)).await;
    e.confirm(&g, "addr-0").await.unwrap();
    let retrieval = observer
        .ha
        .leader_retrieval_service(&ComponentId::new("dispatcher").unwrap())
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        retrieval.wait_for(|v| v.as_ref().is_some_and(|i| i.address == "addr-0")),
    )
    .await
    .expect("retriever sees addr-0")
    .unwrap();

    tokio::task::block_in_place(|| server.kill(0));
    // A member crash can cost in-flight requests their reply (a raft re-election
    // drops pending proposals): retry those, as the service's callers do.
    for n in 1..=5 {
        let addr = format!("addr-{n}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match e.confirm(&g, &addr).await {
                Ok(()) => break,
                Err(err) if err.is_retryable() && Instant::now() < deadline => {}
                Err(err) => panic!("confirm {addr}: {err:?}"),
            }
        }
    }
    let mut raw = Client::connect([server.endpoint(1)], None).await.unwrap();
    let rev = raw.get("/", None).await.unwrap().header().unwrap().revision();
    raw.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    tokio::task::block_in_place(|| server.restart(0)).unwrap();

    tokio::time::timeout(
        Duration::from_secs(10),
        retrieval.wait_for(|v| v.as_ref().is_some_and(|i| i.address == "addr-5")),
    )
    .await
    .expect("retriever converges on the latest record after compaction")
    .unwrap();
    e.confirm(&g, "addr-6").await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        retrieval.wait_for(|v| v.as_ref().is_some_and(|i| i.address == "addr-6")),
    )
    .await
    .expect("retriever keeps following after the re-list")
    .unwrap();
    observer.ha.close().await.unwrap();
    leader.ha.close().await.unwrap();
}
