//! Chaos on a single ZooKeeper server of its own: contenders behind fault proxies (frozen as
//! SIGSTOP would), contender kills, server restarts and server freezes, checked against
//! the HA invariants. A long run on demand: `HA_CHAOS_SEED=7 HA_CHAOS_FAULTS=100 cargo
//! test -p ha-zookeeper --test chaos_single -- --ignored --nocapture`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ha_testkit::chaos::{self, ChaosConfig};
use ha_testkit::ZooKeeperServer;

async fn run_and_check(config: ChaosConfig) {
    common::init_tracing();
    let server = Arc::new(
        tokio::task::spawn_blocking(ZooKeeperServer::start)
            .await
            .unwrap()
            .unwrap(),
    );
    let harness = common::ZkHarness::owning(server, Duration::from_secs(2));
    let report = chaos::run(Arc::new(harness), config).await;
    report.assert_clean("zookeeper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_seeded_run_has_no_violations() {
    run_and_check(ChaosConfig::short(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long run: set HA_CHAOS_SEED / HA_CHAOS_FAULTS and pass --ignored"]
async fn long_run() {
    run_and_check(
        ChaosConfig {
            faults: 60,
            ..ChaosConfig::short(42)
        }
        .from_env(),
    )
    .await;
}
