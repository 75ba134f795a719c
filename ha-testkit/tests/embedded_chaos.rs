//! Chaos on the embedded backend: a short seeded run in the normal suite, and a long
//! run on demand (`HA_CHAOS_SEED=7 HA_CHAOS_FAULTS=200 cargo test -p ha-testkit --test
//! embedded_chaos -- --ignored --nocapture`).

use std::sync::Arc;

use ha_testkit::chaos::{self, ChaosConfig};
use ha_testkit::EmbeddedHarness;

async fn run_and_check(config: ChaosConfig) {
    let report = chaos::run(Arc::new(EmbeddedHarness::default()), config).await;
    report.assert_clean("embedded");
    assert!(report.check.operations > report.check.acknowledged / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_seeded_run_has_no_violations() {
    run_and_check(ChaosConfig::short(1)).await;
    run_and_check(ChaosConfig {
        contenders: 5,
        ..ChaosConfig::short(2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long run: set HA_CHAOS_SEED / HA_CHAOS_FAULTS and pass --ignored"]
async fn long_run() {
    run_and_check(
        ChaosConfig {
            faults: 100,
            ..ChaosConfig::short(42)
        }
        .from_env(),
    )
    .await;
}
