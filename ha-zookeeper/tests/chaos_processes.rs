//! Process chaos on a 3-member ZooKeeper ensemble: every contender is a child process
//! (this test binary re-executed, see `ha_testkit::chaos::run_processes`) pinned to
//! one member, under SIGKILL, SIGSTOP past the session timeout then SIGCONT, SIGSTOP
//! within it, a follower cut from the other members while its clients still reach it
//! (member-to-member links through `FaultProxy`s), and the ZooKeeper leader killed
//! during a contender hand-over. Writes and every leader action are checked against
//! newer grants on one clock. A long run on demand:
//! `HA_CHAOS_SEED=7 HA_CHAOS_FAULTS=30 cargo test -p ha-zookeeper --test chaos_processes -- --ignored --nocapture`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ha_core::{ClusterId, Error, HaBackend, Result};
use ha_testkit::chaos::{self, ChaosConfig, ProcessTarget, SplitMix64};
use ha_testkit::{Harness, ZooKeeperOptions, ZooKeeperServer};
use ha_zookeeper::ZooKeeperBackend;

use common::ZkHarness;

/// Session timeout of the contenders: short, so a run sees many hand-overs. The
/// ensemble's `syncLimit·tickTime` (3 s) is longer: a cut follower keeps serving its
/// clients after the quorum could have expired their sessions.
const SESSION: Duration = Duration::from_secs(2);

/// The body of every child contender (returns at once in the parent).
#[test]
fn chaos_child() {
    chaos::child_main(|spec, cluster: ClusterId| async move {
        let mut config = common::config(&spec, SESSION);
        config.connection_timeout = Duration::from_millis(800);
        let backend: Arc<dyn HaBackend> = Arc::new(ZooKeeperBackend::connect(&cluster, &config).await?);
        Ok(backend)
    });
}

struct ZkProcesses {
    zk: Arc<ZooKeeperServer>,
    harness: Arc<ZkHarness>,
}

impl ZkProcesses {
    fn start() -> Self {
        common::init_tracing();
        let zk = Arc::new(
            ZooKeeperServer::start_with(ZooKeeperOptions {
                members: 3,
                peer_proxies: true,
                ..Default::default()
            })
            .expect("start a 3-member ZooKeeper ensemble"),
        );
        let harness = Arc::new(ZkHarness::new(zk.connect_string(), SESSION));
        Self { zk, harness }
    }
}

#[async_trait]
impl ProcessTarget for ZkProcesses {
    fn harness(&self) -> Arc<dyn Harness> {
        self.harness.clone()
    }

    fn lease(&self) -> Duration {
        SESSION
    }

    /// Contender `slot` talks to member `slot % 3` only.
    fn child_spec(&self, slot: usize) -> String {
        self.zk
            .client_addr(slot % self.zk.len())
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    fn backend_faults(&self) -> Vec<&'static str> {
        vec!["isolate-zk-follower", "kill-zk-leader"]
    }

    async fn inject_backend_fault(&self, name: &str, rng: &mut SplitMix64) -> Result<()> {
        let leader = common::zk_leader(&self.zk).await.ok_or_else(|| Error::Other {
            message: "no ZooKeeper leader".into(),
            source: None,
        })?;
        match name {
            // Past the session timeout and past syncLimit·tickTime: the quorum expires
            // the sessions of the follower's clients while the follower still answers
            // them, then the follower gives up and drops them.
            "isolate-zk-follower" => {
                let follower = (leader + 1 + rng.below(2) as usize) % self.zk.len();
                self.zk
                    .isolate(follower)
                    .map_err(|e| Error::unavailable("isolate", e))?;
                tokio::time::sleep(SESSION * 2 + Duration::from_millis(rng.below(1000))).await;
                self.zk.heal_peers();
            }
            "kill-zk-leader" => {
                common::member_op(&self.zk, "kill", leader, ZooKeeperServer::kill).await;
                tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
                common::member_op(&self.zk, "restart", leader, ZooKeeperServer::restart).await;
            }
            other => return Err(Error::config("fault", format!("unknown fault `{other}`"))),
        }
        Ok(())
    }

    fn handover_fault(&self) -> Option<&'static str> {
        Some("kill-zk-leader")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_seeded_process_run_has_no_violations() {
    let report = chaos::run_processes(
        Arc::new(ZkProcesses::start()),
        ChaosConfig {
            faults: 6,
            ..ChaosConfig::short(5)
        },
    )
    .await;
    report.assert_clean("zookeeper processes");
    assert!(report.check.actions > 0, "no leader action was checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long run: set HA_CHAOS_SEED / HA_CHAOS_FAULTS and pass --ignored"]
async fn long_process_run() {
    let report = chaos::run_processes(
        Arc::new(ZkProcesses::start()),
        ChaosConfig {
            faults: 30,
            ..ChaosConfig::short(14)
        }
        .from_env(),
    )
    .await;
    report.assert_clean("zookeeper processes");
}
