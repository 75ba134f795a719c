//! Lease loss and cleanup on a real etcd (one server for this binary, cases isolated
//! by cluster-id).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cluster, contend, granted_within, process, shared_harness, shared_server, PREFIX, TTL};
use etcd_client::GetOptions;
use ha_core::{Error, JobGraph, JobId};

/// An operator revokes the leader's lease: the other contender is granted within
/// TTL + 1 s, the old leader is revoked, its next write is `NotLeader`, and its session
/// recovers on a new lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_lease_hands_over_and_fences_old_leader() {
    let harness = shared_harness();
    let eps = shared_server().endpoints();
    let c = cluster("revoked");
    let a = process(eps.clone(), &c).await;
    let b = process(eps.clone(), &c).await;
    let (_sa, mut ea) = contend(&a.ha, "dispatcher").await;
    let ga = granted_within(&mut ea, Duration::from_secs(5)).await;
    let (_sb, mut eb) = contend(&b.ha, "dispatcher").await;
    let job = JobId::random();
    let counter_a = a.ha.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter_a.get_and_increment(&ga.fence).await.unwrap(), 1);

    let lease = a.etcd.lease_id().expect("a has a lease");
    harness.client().await.lease_revoke(lease).await.unwrap();
    let gb = granted_within(&mut eb, TTL + Duration::from_secs(1)).await;
    assert!(gb.epoch > ga.epoch);
    tokio::time::timeout(TTL + Duration::from_secs(1), ea.revoked(&ga))
        .await
        .expect("old leader revoked")
        .unwrap();
    match counter_a.get_and_increment(&ga.fence).await {
        Err(Error::NotLeader { .. }) => {}
        other => panic!("old leader's write: expected NotLeader, got {other:?}"),
    }
    let counter_b = b.ha.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter_b.get_and_increment(&gb.fence).await.unwrap(), 2);

    // a's session carries on with a new lease; a stands by behind b.
    let deadline = tokio::time::Instant::now() + TTL * 3;
    while a.etcd.lease_id().is_none_or(|l| l == lease) {
        assert!(tokio::time::Instant::now() < deadline, "a never got a new lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ea.current().is_none());
    a.ha.close().await.unwrap();
    b.ha.close().await.unwrap();
}

/// Cleanup deletes every key of the cluster-id and revokes the lease; a closed
/// process leaves no lease either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_leaves_no_key_and_no_lease() {
    let harness = shared_harness();
    let eps = shared_server().endpoints();
    let c = cluster("cleanup");
    let a = process(eps.clone(), &c).await;
    let b = process(eps.clone(), &c).await;
    let (sa, mut ea) = contend(&a.ha, "dispatcher").await;
    let ga = granted_within(&mut ea, Duration::from_secs(5)).await;
    ea.confirm(&ga, "addr").await.unwrap();
    let (sb, _eb) = contend(&b.ha, "dispatcher").await;
    let job = JobId::random();
    let graph = JobGraph {
        job_id: job.clone(),
        data: bytes::Bytes::from_static(b"graph"),
    };
    a.ha.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(&ga.fence, &graph)
        .await
        .unwrap();
    b.ha.job_graph_store()
        .await
        .unwrap()
        .recover_job_graph(&job)
        .await
        .unwrap();
    a.ha.checkpoint_id_counter(&job)
        .await
        .unwrap()
        .get_and_increment(&ga.fence)
        .await
        .unwrap();
    let leases = [a.etcd.lease_id().unwrap(), b.etcd.lease_id().unwrap()];
    let mut raw = harness.client().await;
    let root = format!("{PREFIX}/{c}/");
    let keys = raw
        .get(root.clone(), Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .unwrap();
    assert!(
        keys.kvs().len() >= 5,
        "latches, leader record, graph, lock, counter expected"
    );

    sb.close().await.unwrap();
    b.ha.close().await.unwrap();
    sa.close().await.unwrap();
    a.ha.close_and_cleanup_all_data().await.unwrap();

    let keys = raw
        .get(root, Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .unwrap();
    let left: Vec<_> = keys
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    assert!(left.is_empty(), "keys left behind: {left:?}");
    let live = raw.leases().await.unwrap();
    for lease in leases {
        assert!(
            !live.leases().iter().any(|l| l.id() == lease),
            "lease {lease:x} left behind"
        );
    }
}

/// Mode `etcd` is reachable through the registry from a Flink-style config, and an
/// unreachable endpoint fails the connect as `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_etcd_from_config() {
    ha_etcd::register();
    let eps = shared_server().endpoints().join(",");
    let c = cluster("config");
    let entries = |endpoints: &str| {
        std::collections::BTreeMap::from([
            ("high-availability.type".to_string(), "etcd".to_string()),
            ("high-availability.cluster-id".to_string(), c.to_string()),
            ("high-availability.storageDir".to_string(), format!("memory://{c}")),
            ("high-availability.etcd.endpoints".to_string(), endpoints.to_string()),
            ("high-availability.etcd.lease-ttl".to_string(), "2 s".to_string()),
        ])
    };
    let config = ha_core::HaConfig::from_entries(entries(&eps)).unwrap();
    let ha = ha_core::HaServices::from_config(&config).await.unwrap();
    let (svc, mut e) = contend(&ha, "dispatcher").await;
    let g = granted_within(&mut e, Duration::from_secs(5)).await;
    assert!(g.fence.token.starts_with(&format!("{PREFIX}/{c}/leader/latch/")));
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = ha_core::HaConfig::from_entries(entries(&format!("http://127.0.0.1:{port}"))).unwrap();
    match ha_core::HaServices::from_config(&dead).await {
        Err(Error::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
}
