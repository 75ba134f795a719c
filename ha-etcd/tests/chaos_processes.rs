//! Process chaos on a 3-member etcd cluster: every contender is a child process (this
//! test binary re-executed, see `ha_testkit::chaos::run_processes`) pinned to one
//! member, under SIGKILL, SIGSTOP past the lease TTL then SIGCONT, SIGSTOP within it,
//! members killed (the raft leader also during a contender hand-over), paused, and cut
//! from the other members while their contenders still reach them.
//! Writes and every leader action are checked against newer grants on one clock. A
//! long run on demand:
//! `HA_CHAOS_SEED=7 HA_CHAOS_FAULTS=30 cargo test -p ha-etcd --test chaos_processes -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ha_core::{ClusterId, Error, HaBackend, Result};
use ha_etcd::{EtcdBackend, EtcdConfig};
use ha_testkit::chaos::{self, ChaosConfig, ProcessTarget, SplitMix64};
use ha_testkit::{EtcdServer, Harness};

use common::{EtcdHarness, PREFIX};

/// Lease TTL of the contenders.
const TTL: Duration = Duration::from_secs(2);

/// The body of every child contender (returns at once in the parent).
#[test]
fn chaos_child() {
    chaos::child_main(|spec, cluster: ClusterId| async move {
        let config = EtcdConfig::new(vec![spec]).with_lease_ttl(TTL).with_key_prefix(PREFIX);
        let backend: Arc<dyn HaBackend> = Arc::new(EtcdBackend::connect(&cluster, &config).await?);
        Ok(backend)
    });
}

struct EtcdProcesses {
    server: Arc<Mutex<EtcdServer>>,
    endpoints: Vec<String>,
    harness: Arc<EtcdHarness>,
}

impl EtcdProcesses {
    fn start() -> Self {
        common::init_tracing();
        let server = EtcdServer::start_partitionable(3).expect("start a partitionable 3-member etcd cluster");
        let endpoints = server.endpoints();
        Self {
            // The contenders' TTL, so the leaderless-gap bound follows their lease.
            harness: Arc::new(EtcdHarness::with_ttl(endpoints.clone(), TTL)),
            endpoints,
            server: Arc::new(Mutex::new(server)),
        }
    }
}

#[async_trait]
impl ProcessTarget for EtcdProcesses {
    fn harness(&self) -> Arc<dyn Harness> {
        self.harness.clone()
    }

    fn lease(&self) -> Duration {
        TTL
    }

    /// Contender `slot` talks to member `slot % 3` only.
    fn child_spec(&self, slot: usize) -> String {
        self.endpoints[slot % self.endpoints.len()].clone()
    }

    fn backend_faults(&self) -> Vec<&'static str> {
        vec!["kill-raft-leader", "pause-etcd-member", "isolate-etcd-member"]
    }

    async fn inject_backend_fault(&self, name: &str, rng: &mut SplitMix64) -> Result<()> {
        match name {
            "kill-raft-leader" => {
                let leader = common::find_raft_leader(&self.endpoints)
                    .await
                    .ok_or_else(|| Error::Other {
                        message: "no raft leader to kill".into(),
                        source: None,
                    })?;
                common::member_op(&self.server, "kill", leader, |s, i| {
                    s.kill(i);
                    Ok(())
                })
                .await;
                tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
                common::member_op(&self.server, "restart", leader, EtcdServer::restart).await;
            }
            "pause-etcd-member" => {
                let i = rng.below(self.endpoints.len() as u64) as usize;
                common::member_op(&self.server, "pause", i, |s, i| s.pause(i)).await;
                tokio::time::sleep(Duration::from_millis(300 + rng.below(2 * TTL.as_millis() as u64))).await;
                common::member_op(&self.server, "resume", i, |s, i| s.resume(i)).await;
            }
            // A member cut from the others while its clients (a pinned contender)
            // still reach it; sometimes shorter, sometimes longer than the TTL.
            "isolate-etcd-member" => {
                let i = rng.below(self.endpoints.len() as u64) as usize;
                common::isolate_for(&self.server, i, TTL, rng).await;
            }
            other => return Err(Error::config("fault", format!("unknown fault `{other}`"))),
        }
        Ok(())
    }

    fn handover_fault(&self) -> Option<&'static str> {
        Some("kill-raft-leader")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_seeded_process_run_has_no_violations() {
    let report = chaos::run_processes(
        Arc::new(EtcdProcesses::start()),
        ChaosConfig {
            faults: 6,
            ..ChaosConfig::short(9)
        }
        .from_env(),
    )
    .await;
    report.assert_clean("etcd processes");
    assert!(report.check.actions > 0, "no leader action was checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long run: set HA_CHAOS_SEED / HA_CHAOS_FAULTS and pass --ignored"]
async fn long_process_run() {
    let report = chaos::run_processes(
        Arc::new(EtcdProcesses::start()),
        ChaosConfig {
            faults: 30,
            ..ChaosConfig::short(14)
        }
        .from_env(),
    )
    .await;
    report.assert_clean("etcd processes");
}
