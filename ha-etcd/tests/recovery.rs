//! Failover recovery after a leader crash, counted at the server: a new leader recovers
//! each job's graph and checkpoints with a constant number of requests (one listing of
//! the job graphs, then per job a lock `txn` for the graph, a range read of the job's
//! own checkpoint prefix and a lock `txn` per checkpoint), however many jobs the crashed
//! leader left and however many lock keys its expired lease carried.
//!
//! The server is this binary's own, so no other test's requests are counted.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use common::{config, contend, granted_within, init_tracing};
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, CompletedCheckpoint, HaBackend, HaServices, JobGraph, JobId};
use ha_etcd::EtcdBackend;
use ha_testkit::EtcdServer;

/// `grpc_server_handled_total` of the unary KV method `method` (`Range`, `Txn`), read
/// from the member's `/metrics`.
fn handled(endpoint: &str, method: &str) -> u64 {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let needle = format!("grpc_method=\"{method}\",grpc_service=\"etcdserverpb.KV\"");
    body.lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{") && l.contains(&needle))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn services(endpoints: Vec<String>, cluster: &ClusterId) -> (HaServices, EtcdBackend) {
    let etcd = EtcdBackend::connect(cluster, &config(endpoints)).await.unwrap();
    let storage = StateStorage::open(&format!("memory://{cluster}"), cluster, &Default::default()).unwrap();
    (HaServices::new(std::sync::Arc::new(etcd.clone()), storage, 1), etcd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_crash_costs_three_requests_per_job() {
    init_tracing();
    const JOBS: u64 = 40;
    let server = EtcdServer::start().expect("start etcd");
    let eps = server.endpoints();
    let c = ClusterId::random("recovery");
    let (a, a_etcd) = services(eps.clone(), &c).await;
    let (b, _b_etcd) = services(eps.clone(), &c).await;
    let (_sa, mut ea) = contend(&a, "dispatcher").await;
    let ga = granted_within(&mut ea, Duration::from_secs(5)).await;
    let (_sb, mut eb) = contend(&b, "dispatcher").await;
    let graphs = a.job_graph_store().await.unwrap();
    for i in 0..JOBS {
        let job_id = JobId::new(format!("{:032x}", i + 1)).unwrap();
        let graph = JobGraph {
            job_id: job_id.clone(),
            data: Bytes::from_static(b"graph"),
        };
        graphs.put_job_graph(&ga.fence, &graph).await.unwrap();
        let checkpoint = CompletedCheckpoint {
            job_id: job_id.clone(),
            checkpoint_id: 1,
            data: Bytes::from_static(b"checkpoint"),
        };
        let store = a.completed_checkpoint_store(&job_id).await.unwrap();
        store.add_checkpoint(&ga.fence, checkpoint).await.unwrap();
    }
    // Crash: the lease, with every lock key of the leader, ends only by its TTL.
    a_etcd.halt();
    drop((graphs, _sa, ea, a));
    let gb = granted_within(&mut eb, Duration::from_secs(10)).await;

    let (ranges, txns) = (handled(&eps[0], "Range"), handled(&eps[0], "Txn"));
    let graphs = b.job_graph_store().await.unwrap();
    let ids = graphs.job_ids().await.unwrap();
    assert_eq!(ids.len() as u64, JOBS);
    for job in &ids {
        graphs.recover_job_graph(job).await.unwrap().expect("graph");
        let store = b.completed_checkpoint_store(job).await.unwrap();
        assert_eq!(store.recover(&gb.fence).await.unwrap().checkpoints.len(), 1);
    }
    let ranges = handled(&eps[0], "Range") - ranges;
    let txns = handled(&eps[0], "Txn") - txns;
    assert!(
        ranges >= JOBS,
        "the server's request counters were not read: {ranges} range reads"
    );
    assert!(
        ranges <= JOBS + 1 && txns <= 2 * JOBS,
        "recovering {JOBS} jobs took {ranges} range reads and {txns} txns; expected at most {} and {}",
        JOBS + 1,
        2 * JOBS
    );
    b.close().await.unwrap();
}
