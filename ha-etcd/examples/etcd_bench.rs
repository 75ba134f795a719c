//! Benchmark of the etcd backend on a real local etcd 3.4; prints one JSON object.
//!
//! ```text
//! cargo run --release -p ha-etcd --example etcd_bench [-- RUNS OPS]
//! ```
//!
//! - graceful hand-over: leader resigns → the standby is granted (median of RUNS);
//! - crash hand-over: leader halts without revoking its lease → the standby is
//!   granted; the lease TTL is subtracted (what is left is etcd's expiry sweep plus
//!   our detection);
//! - write latency: raw `put` vs fenced `txn` put (leader information) vs fenced
//!   compare-and-set (`StateHandleStore::replace`), OPS sequential 100-byte writes each;
//! - throughput with 16 concurrent tasks: raw `put` vs fenced compare-and-set, each
//!   task on its own key, for OPS writes in total.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, ComponentId, HaServices, StoreNamespace, DEFAULT_ELECTION_GROUP};
use ha_etcd::{EtcdBackend, EtcdConfig};
use ha_testkit::EtcdServer;
use serde_json::json;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(1);

struct Proc {
    ha: HaServices,
    etcd: EtcdBackend,
}

async fn process(endpoints: &[String], cluster: &ClusterId) -> Result<Proc, Box<dyn std::error::Error>> {
    let config = EtcdConfig::new(endpoints.to_vec()).with_lease_ttl(TTL);
    let etcd = EtcdBackend::connect(cluster, &config).await?;
    let storage = StateStorage::open(&format!("memory://{cluster}"), cluster, &Default::default())?;
    Ok(Proc {
        ha: HaServices::new(Arc::new(etcd.clone()), storage, 1),
        etcd,
    })
}

fn stats_ms(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    json!({
        "runs": samples.len(),
        "median_ms": ms(pick(0.5)),
        "p90_ms": ms(pick(0.9)),
        "min_ms": ms(samples[0]),
        "max_ms": ms(samples[samples.len() - 1]),
    })
}

fn stats_us(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    let us = |d: Duration| (d.as_secs_f64() * 1e7).round() / 10.0;
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    json!({
        "ops": samples.len(),
        "median_us": us(pick(0.5)),
        "p99_us": us(pick(0.99)),
    })
}

/// One hand-over: `a` leads, `b` stands by; `crash` halts `a`, otherwise `a` resigns.
async fn handover(endpoints: &[String], crash: bool) -> Result<Duration, Box<dyn std::error::Error>> {
    let cluster = ClusterId::random("bench");
    let a = process(endpoints, &cluster).await?;
    let b = process(endpoints, &cluster).await?;
    let component = ComponentId::new("dispatcher")?;
    let sa = a.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut ea = sa.register(component.clone())?;
    ea.granted().await?;
    let sb = b.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut eb = sb.register(component)?;
    // Let b's candidacy settle behind a's.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    if crash {
        a.etcd.halt();
        drop((ea, sa, a));
    } else {
        sa.close().await?;
        a.ha.close().await?;
    }
    eb.granted().await?;
    let elapsed = started.elapsed();
    sb.close().await?;
    b.ha.close_and_cleanup_all_data().await?;
    Ok(elapsed)
}

async fn latencies(endpoints: &[String], ops: usize) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let cluster = ClusterId::random("benchlat");
    let p = process(endpoints, &cluster).await?;
    let svc = p.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut e = svc.register(ComponentId::new("dispatcher")?)?;
    let g = e.granted().await?;
    let value = Bytes::from(vec![b'x'; 100]);
    let mut raw = etcd_client::Client::connect(endpoints, None).await?;
    let raw_key = format!("{}raw", p.etcd.key_root());

    let mut raw_put = Vec::with_capacity(ops);
    let mut fenced_put = Vec::with_capacity(ops);
    let mut fenced_cas = Vec::with_capacity(ops);
    let store = p.ha.backend().state_handle_store(&StoreNamespace::JobGraphs).await?;
    let mut version = store.add_and_lock(&g.fence, "jobGraph-bench", value.clone()).await?;
    for i in 0..ops {
        let t = Instant::now();
        raw.put(raw_key.clone(), value.to_vec(), None).await?;
        raw_put.push(t.elapsed());

        let t = Instant::now();
        e.confirm(&g, &format!("addr-{i:090}")).await?;
        fenced_put.push(t.elapsed());

        let t = Instant::now();
        version = store
            .replace(&g.fence, "jobGraph-bench", version, value.clone())
            .await?;
        fenced_cas.push(t.elapsed());
    }
    let raw_tput = throughput(ops, |task| {
        let mut raw = raw.clone();
        let (key, value) = (format!("{raw_key}-{task}"), value.clone());
        async move {
            raw.put(key, value.to_vec(), None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await?;
    for task in 0..TASKS {
        store
            .add_and_lock(&g.fence, &format!("jobGraph-t{task}"), value.clone())
            .await?;
    }
    let versions: Vec<_> = entry_versions(&*store, TASKS).await?;
    let versions = Arc::new(std::sync::Mutex::new(versions));
    let cas_tput = throughput(ops, |task| {
        let (store, fence, value, versions) = (store.clone(), g.fence.clone(), value.clone(), versions.clone());
        async move {
            let name = format!("jobGraph-t{task}");
            let expected = versions.lock().map_err(|e| e.to_string())?[task];
            let v = store
                .replace(&fence, &name, expected, value)
                .await
                .map_err(|e| e.to_string())?;
            versions.lock().map_err(|e| e.to_string())?[task] = v;
            Ok(())
        }
    })
    .await?;
    svc.close().await?;
    p.ha.close_and_cleanup_all_data().await?;
    Ok(json!({
        "raw_put": stats_us(raw_put),
        "fenced_txn_put": stats_us(fenced_put),
        "fenced_txn_cas_put": stats_us(fenced_cas),
        "raw_put_16_tasks_ops_per_s": raw_tput,
        "fenced_txn_cas_put_16_tasks_ops_per_s": cas_tput,
    }))
}

const TASKS: usize = 16;

/// Current versions of the per-task entries `jobGraph-t<i>`.
async fn entry_versions(
    store: &dyn ha_core::driver::StateHandleStore,
    n: usize,
) -> Result<Vec<ha_core::Version>, Box<dyn std::error::Error>> {
    let mut out = Vec::with_capacity(n);
    for task in 0..n {
        let v = store.get(&format!("jobGraph-t{task}")).await?.ok_or("entry missing")?;
        out.push(v.version);
    }
    Ok(out)
}

/// Runs `total` operations spread over [`TASKS`] concurrent tasks (each task's
/// operations in sequence); returns operations per second.
async fn throughput<F, Fut>(total: usize, op: F) -> Result<f64, Box<dyn std::error::Error>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let per_task = total / TASKS;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(TASKS);
    for task in 0..TASKS {
        let ops: Vec<Fut> = (0..per_task).map(|_| op(task)).collect();
        handles.push(tokio::spawn(async move {
            for f in ops {
                f.await?;
            }
            Ok::<(), String>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(((per_task * TASKS) as f64 / started.elapsed().as_secs_f64()).round())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);
    let ops: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let server = tokio::task::spawn_blocking(EtcdServer::start).await??;
    let endpoints = server.endpoints();

    let mut graceful = Vec::with_capacity(runs);
    for _ in 0..runs {
        graceful.push(handover(&endpoints, false).await?);
    }
    let mut crash = Vec::with_capacity(runs);
    for _ in 0..runs {
        crash.push(handover(&endpoints, true).await?.saturating_sub(TTL));
    }
    let out = json!({
        "etcd": "3.4 single member, loopback, data dir on /dev/shm",
        "lease_ttl_s": TTL.as_secs(),
        "graceful_handover": stats_ms(graceful),
        "crash_handover_minus_ttl": stats_ms(crash),
        "write_latency_100b": latencies(&endpoints, ops).await?,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
