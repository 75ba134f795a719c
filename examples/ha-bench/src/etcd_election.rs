//! Peer: etcd's own election API (`v3election` Campaign/Resign) through
//! `etcd-client`, measured like ha-rs: graceful = resign, crash = the leader's lease
//! keep-alive stops and the lease expires.

use std::time::{Duration, Instant};

use etcd_client::{Client, ResignOptions};
use tokio::task::JoinHandle;

use crate::handover::QUEUE_SETTLE;
use crate::{BoxResult, Budget};

/// A lease kept alive every TTL/3 until the task is aborted.
async fn kept_lease(client: &Client, ttl: Duration) -> BoxResult<(i64, JoinHandle<()>)> {
    let mut c = client.clone();
    let lease = c.lease_grant(ttl.as_secs().max(1) as i64, None).await?;
    let id = lease.id();
    let period = Duration::from_secs(lease.ttl().max(1) as u64) / 3;
    let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
    let task = tokio::spawn(async move {
        loop {
            if keeper.keep_alive().await.is_err() || !matches!(stream.message().await, Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(period).await;
        }
    });
    Ok((id, task))
}

async fn once(endpoints: &[String], ttl: Duration, crash: bool) -> BoxResult<Duration> {
    let limit = ttl * 10 + Duration::from_secs(10);
    let name = format!("/ha-bench-election/{}", uuid_like());
    // Separate clients (connections) as separate processes would have.
    let mut a = Client::connect(endpoints, None).await?;
    let mut b = Client::connect(endpoints, None).await?;
    let (lease_a, keep_a) = kept_lease(&a, ttl).await?;
    let (lease_b, keep_b) = kept_lease(&b, ttl).await?;

    let won = tokio::time::timeout(limit, a.campaign(name.as_str(), "a", lease_a)).await??;
    let leader_key = won.leader().cloned().ok_or("campaign returned no leader key")?;

    let follower = {
        let name = name.clone();
        let mut b = b.clone();
        tokio::spawn(async move {
            let r = b.campaign(name.as_str(), "b", lease_b).await;
            (Instant::now(), r.map(|_| ()))
        })
    };
    tokio::time::sleep(QUEUE_SETTLE).await;
    if follower.is_finished() {
        return Err("etcd election follower won while the leader was alive".into());
    }

    let start = Instant::now();
    if crash {
        keep_a.abort();
    } else {
        a.resign(Some(ResignOptions::new().with_leader(leader_key))).await?;
    }
    let (won_at, result) = tokio::time::timeout(limit, follower).await??;
    result?;
    let elapsed = won_at.duration_since(start);

    keep_a.abort();
    keep_b.abort();
    let _ = a.lease_revoke(lease_a).await;
    let _ = b.lease_revoke(lease_b).await;
    Ok(elapsed)
}

/// A unique election name suffix without pulling in another crate.
fn uuid_like() -> String {
    ha_core::ClusterId::random("e").to_string()
}

/// Up to `runs` hand-overs within `budget`.
pub(crate) async fn measure(
    endpoints: &[String],
    ttl: Duration,
    crash: bool,
    runs: usize,
    budget: Budget,
) -> BoxResult<Vec<Duration>> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        if budget.exhausted() && !samples.is_empty() {
            break;
        }
        samples.push(once(endpoints, ttl, crash).await?);
    }
    Ok(samples)
}
