//! Process chaos on the Kubernetes backend: the API emulator runs in this test process
//! and every contender is a child process (this test binary re-executed, see
//! `ha_testkit::chaos::run_processes`) that reaches it over loopback HTTP, under
//! SIGKILL, SIGSTOP past the lease then SIGCONT, SIGSTOP within the lease, and the API
//! server slow or unavailable (also during a contender hand-over). Writes and every
//! leader action are checked against newer grants on one clock. A long run on demand:
//! `HA_CHAOS_SEED=7 HA_CHAOS_FAULTS=30 cargo test -p ha-kubernetes --test chaos_processes -- --ignored --nocapture`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ha_core::{ClusterId, HaBackend, Result};
use ha_kubernetes::KubernetesBackend;
use ha_testkit::chaos::{self, ChaosConfig, ProcessTarget, SplitMix64};
use ha_testkit::Harness;

use common::{test_timings, KubeHarness, TEST_NAMESPACE};

/// The body of every child contender (returns at once in the parent).
#[test]
fn chaos_child() {
    chaos::child_main(|spec, cluster: ClusterId| async move {
        let url = spec
            .parse()
            .map_err(|e| ha_core::Error::config("chaos", format!("emulator url `{spec}`: {e}")))?;
        let mut config = kube::Config::new(url);
        config.default_retry = false;
        let client = kube::Client::try_from(config).map_err(|e| ha_core::Error::unavailable("kube client", e))?;
        let backend: Arc<dyn HaBackend> = Arc::new(KubernetesBackend::with_client(
            client,
            TEST_NAMESPACE,
            &cluster,
            test_timings(),
        )?);
        Ok(backend)
    });
}

/// The emulator harness, with its contenders as child processes.
struct KubeProcesses(Arc<KubeHarness>);

#[async_trait]
impl ProcessTarget for KubeProcesses {
    fn harness(&self) -> Arc<dyn Harness> {
        self.0.clone()
    }

    fn lease(&self) -> Duration {
        self.0.timings.lease_duration
    }

    fn child_spec(&self, _slot: usize) -> String {
        self.0.emulator_ref().map(|e| e.url().to_string()).unwrap_or_default()
    }

    fn backend_faults(&self) -> Vec<&'static str> {
        vec!["api-slow", "api-unavailable"]
    }

    async fn inject_backend_fault(&self, name: &str, rng: &mut SplitMix64) -> Result<()> {
        let emulator = self.0.emulator_ref().expect("process chaos runs on the emulator");
        let lease = self.lease();
        match name {
            "api-slow" => {
                emulator
                    .faults()
                    .set_latency(Duration::from_millis(200 + rng.below(900)));
                tokio::time::sleep(lease + Duration::from_millis(rng.below(1000))).await;
                emulator.faults().set_latency(Duration::ZERO);
            }
            "api-unavailable" => {
                emulator.set_unavailable(true);
                tokio::time::sleep(lease / 2 + Duration::from_millis(rng.below(lease.as_millis() as u64))).await;
                emulator.set_unavailable(false);
            }
            other => return Err(ha_core::Error::config("fault", format!("unknown fault `{other}`"))),
        }
        Ok(())
    }

    fn handover_fault(&self) -> Option<&'static str> {
        Some("api-unavailable")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_seeded_process_run_has_no_violations() {
    let report = chaos::run_processes(
        Arc::new(KubeProcesses(Arc::new(KubeHarness::emulator()))),
        ChaosConfig {
            faults: 6,
            ..ChaosConfig::short(5)
        },
    )
    .await;
    report.assert_clean("kubernetes processes");
    assert!(report.check.actions > 0, "no leader action was checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long run: set HA_CHAOS_SEED / HA_CHAOS_FAULTS and pass --ignored"]
async fn long_process_run() {
    let report = chaos::run_processes(
        Arc::new(KubeProcesses(Arc::new(KubeHarness::emulator()))),
        ChaosConfig {
            faults: 30,
            ..ChaosConfig::short(14)
        }
        .from_env(),
    )
    .await;
    report.assert_clean("kubernetes processes");
}
