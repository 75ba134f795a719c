//! Hand-over and write-latency figures of the ZooKeeper backend on a real local
//! ZooKeeper 3.8 (standalone, dataDir on tmpfs, forceSync=no), printed as JSON.
//!
//! - `graceful_handover_ms`: leader's service closes (deletes its leader information,
//!   resigns) → the waiting contender is granted;
//! - `crash_handover_minus_session_timeout_ms`: leader process dropped without
//!   closing (its connection goes away, the session is left to expire) → the waiting
//!   contender is granted, minus the negotiated session timeout;
//! - `fenced_*_us` vs `raw_set_data_us`: a checkpoint pointer written through the
//!   backend (one `multi` with the latch check) vs a plain `set_data` of the same bytes
//!   on the same server.
//!
//! Run: `cargo bench -p ha-zookeeper --bench handover` (env `HANDOVER_RUNS`,
//! `WRITE_OPS` change the counts).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, ComponentId, HaBackend, HaServices, StoreNamespace, DEFAULT_ELECTION_GROUP};
use ha_testkit::ZooKeeperServer;
use ha_zookeeper::{ZooKeeperBackend, ZooKeeperConfig};
use serde_json::json;
use zookeeper_client as zk;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn stats(mut xs: Vec<f64>) -> serde_json::Value {
    xs.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    json!({
        "runs": xs.len(),
        "median": pick(0.5),
        "p90": pick(0.9),
        "p99": pick(0.99),
        "min": xs[0],
        "max": xs[xs.len() - 1],
    })
}

struct Bench {
    quorum: String,
    session_timeout: Duration,
    dir: tempfile::TempDir,
}

impl Bench {
    fn config(&self) -> ZooKeeperConfig {
        let mut c = ZooKeeperConfig::new(self.quorum.clone());
        c.session_timeout = self.session_timeout;
        c.retry_wait = Duration::from_millis(20);
        c
    }

    async fn process(&self, cluster: &ClusterId) -> (ZooKeeperBackend, HaServices) {
        let backend = ZooKeeperBackend::connect(cluster.clone(), self.config()).await.unwrap();
        let url = format!("file://{}", self.dir.path().display());
        let storage = StateStorage::open(&url, cluster, &Default::default()).unwrap();
        (backend.clone(), HaServices::new(Arc::new(backend), storage, 1))
    }

    /// One hand-over; returns (elapsed, negotiated session timeout).
    async fn handover(&self, crash: bool) -> (Duration, Duration) {
        let cluster = ClusterId::random("bench");
        let (a_backend, a) = self.process(&cluster).await;
        let (_, b) = self.process(&cluster).await;
        let negotiated = a_backend.negotiated_session_timeout().await.unwrap();
        let sa = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
        let mut ea = sa.register(ComponentId::new("dispatcher").unwrap()).unwrap();
        let ga = ea.granted().await.unwrap();
        ea.confirm(&ga, "addr-a").await.unwrap();
        let sb = b.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
        let mut eb = sb.register(ComponentId::new("dispatcher").unwrap()).unwrap();
        // Let B's watch on A's node settle.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        if crash {
            drop((ea, sa));
            drop(a_backend);
            drop(a);
        } else {
            sa.close().await.unwrap();
        }
        eb.granted().await.unwrap();
        let elapsed = start.elapsed();
        sb.close().await.unwrap();
        b.close_and_cleanup_all_data().await.unwrap();
        (elapsed, negotiated)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: only
    // `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!("handover: skipped (run with `cargo bench -p ha-zookeeper --bench handover`)");
        return;
    }
    let runs = env_count("HANDOVER_RUNS", 21);
    let write_ops = env_count("WRITE_OPS", 2000);
    let zk_server = tokio::task::spawn_blocking(ZooKeeperServer::start)
        .await
        .unwrap()
        .expect("start ZooKeeper");
    let bench = Bench {
        quorum: zk_server.connect_string(),
        session_timeout: Duration::from_secs(2),
        dir: tempfile::tempdir().unwrap(),
    };

    let mut graceful = Vec::new();
    for _ in 0..runs {
        graceful.push(bench.handover(false).await.0.as_secs_f64() * 1e3);
    }
    let mut crash = Vec::new();
    let mut negotiated = Duration::ZERO;
    for _ in 0..runs {
        let (elapsed, session) = bench.handover(true).await;
        negotiated = session;
        crash.push((elapsed.as_secs_f64() - session.as_secs_f64()) * 1e3);
    }

    // Write latency: the pointer bytes a checkpoint store really writes.
    let cluster = ClusterId::random("bench-writes");
    let (backend, ha) = bench.process(&cluster).await;
    let svc = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let fence = e.granted().await.unwrap().fence;
    let handle = ha
        .storage()
        .store(
            "checkpoints/bench",
            "checkpointID-0000000000000000001",
            Bytes::from(vec![7u8; 4096]),
        )
        .await
        .unwrap();
    let pointer = handle.to_bytes();
    let store = backend
        .state_handle_store(&StoreNamespace::Checkpoints(ha_core::JobId::random()))
        .await
        .unwrap();
    let mut add = Vec::new();
    for i in 0..write_ops {
        let name = format!("checkpointID-{i:019}");
        let t = Instant::now();
        store.add_and_lock(&fence, &name, pointer.clone()).await.unwrap();
        add.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut version = store
        .add_and_lock(&fence, "replace-target", pointer.clone())
        .await
        .unwrap();
    let mut replace = Vec::new();
    for _ in 0..write_ops {
        let t = Instant::now();
        version = store
            .replace(&fence, "replace-target", version, pointer.clone())
            .await
            .unwrap();
        replace.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let raw_client = zk::Client::connect(&bench.quorum).await.unwrap();
    let raw_path = format!("/bench-raw-{}", uuid::Uuid::new_v4().simple());
    raw_client
        .create(
            &raw_path,
            &pointer,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    for _ in 0..write_ops {
        let t = Instant::now();
        raw_client.set_data(&raw_path, &pointer, None).await.unwrap();
        raw.push(t.elapsed().as_secs_f64() * 1e6);
    }
    raw_client.delete(&raw_path, None).await.unwrap();
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();

    let report = json!({
        "setup": {
            "server": "ZooKeeper 3.8.0 standalone (Debian package), tickTime 100 ms, dataDir on tmpfs, forceSync=no, -Xmx256m",
            "client": "zookeeper-client 0.11, loopback, release build",
            "session_timeout_ms": negotiated.as_millis() as u64,
            "pointer_bytes": pointer.len(),
        },
        "graceful_handover_ms": stats(graceful),
        "crash_handover_minus_session_timeout_ms": stats(crash),
        "fenced_add_and_lock_us": stats(add),
        "fenced_replace_us": stats(replace),
        "raw_set_data_us": stats(raw),
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
