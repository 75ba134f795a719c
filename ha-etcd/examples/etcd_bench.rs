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
//!   compare-and-set (`StateHandleStore::replace`), OPS sequential 100-byte writes each.

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
    svc.close().await?;
    p.ha.close_and_cleanup_all_data().await?;
    Ok(json!({
        "raw_put": stats_us(raw_put),
        "fenced_txn_put": stats_us(fenced_put),
        "fenced_txn_cas_put": stats_us(fenced_cas),
    }))
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
