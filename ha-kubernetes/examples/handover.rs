//! Benchmark: graceful and crash leader hand-over on the Kubernetes backend over a
//! `KubeApiEmulator` (in-process, loopback). Prints one JSON object.
//!
//! ```sh
//! cargo run --release -p ha-kubernetes --example handover -- --runs 20 \
//!   --lease-ms 2000 --deadline-ms 1400 --retry-ms 300
//! ```
//!
//! - graceful: leader A resigns (`LeaderElectionService::close`, which releases the
//!   lock); time until follower B is granted (B learns the release from its watch);
//! - crash: A's process is dropped without releasing anything, at a random phase of
//!   its renewal cycle; time until B is granted (B waits until the record it last saw
//!   change is a lease old, by its own clock).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::storage::StateStorage;
use ha_core::{ClusterId, ComponentId, HaServices, LeaderElection, LeaderElectionService, DEFAULT_ELECTION_GROUP};
use ha_kubernetes::{KubernetesBackend, LeaseTimings};
use ha_testkit::KubeApiEmulator;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Bench {
    emulator: KubeApiEmulator,
    timings: LeaseTimings,
}

impl Bench {
    fn process(&self, cluster_id: &ClusterId) -> Result<HaServices, BoxError> {
        let mut config = kube::Config::new(self.emulator.url().parse()?);
        config.default_retry = false;
        let client = kube::Client::try_from(config)?;
        let backend = KubernetesBackend::with_client(client, "bench", cluster_id, self.timings)?;
        let storage = StateStorage::open("memory://bench", cluster_id, &Default::default())?;
        Ok(HaServices::new(Arc::new(backend), storage, 1))
    }

    async fn contend(ha: &HaServices) -> Result<(LeaderElectionService, LeaderElection), BoxError> {
        let svc = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
        let e = svc.register(ComponentId::new("dispatcher")?)?;
        Ok((svc, e))
    }

    /// A leads, B follows in steady state; returns both.
    async fn pair(
        &self,
    ) -> Result<
        (
            (HaServices, LeaderElectionService, LeaderElection),
            (HaServices, LeaderElectionService, LeaderElection),
        ),
        BoxError,
    > {
        let cluster_id = ClusterId::random("bench");
        let a = self.process(&cluster_id)?;
        let (sa, mut ea) = Self::contend(&a).await?;
        tokio::time::timeout(Duration::from_secs(10), ea.granted()).await??;
        let b = self.process(&cluster_id)?;
        let (sb, eb) = Self::contend(&b).await?;
        // Steady state, and a random phase of A's renewal cycle.
        let jitter =
            u64::from(uuid::Uuid::new_v4().as_u128() as u16) % self.timings.retry_period.as_millis().max(1) as u64;
        tokio::time::sleep(self.timings.retry_period * 2 + Duration::from_millis(jitter)).await;
        if eb.current().is_some() {
            return Err("follower granted while the leader is alive".into());
        }
        Ok(((a, sa, ea), (b, sb, eb)))
    }

    async fn graceful(&self) -> Result<Duration, BoxError> {
        let ((a, sa, _ea), (b, sb, mut eb)) = self.pair().await?;
        let start = Instant::now();
        sa.close().await?;
        tokio::time::timeout(Duration::from_secs(30), eb.granted()).await??;
        let took = start.elapsed();
        sb.close().await?;
        a.close().await?;
        b.close_and_cleanup_all_data().await?;
        Ok(took)
    }

    async fn crash(&self) -> Result<Duration, BoxError> {
        let ((a, sa, ea), (b, sb, mut eb)) = self.pair().await?;
        let start = Instant::now();
        drop((sa, ea, a));
        tokio::time::timeout(Duration::from_secs(30), eb.granted()).await??;
        let took = start.elapsed();
        sb.close().await?;
        b.close_and_cleanup_all_data().await?;
        Ok(took)
    }
}

fn summary(mut v: Vec<Duration>) -> serde_json::Value {
    v.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    serde_json::json!({
        "median_ms": ms(at(0.5)),
        "p10_ms": ms(at(0.1)),
        "p90_ms": ms(at(0.9)),
        "min_ms": ms(v[0]),
        "max_ms": ms(v[v.len() - 1]),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let runs = arg("--runs", 20).max(1) as usize;
    let timings = LeaseTimings::new(
        Duration::from_millis(arg("--lease-ms", 2000)),
        Duration::from_millis(arg("--deadline-ms", 1400)),
        Duration::from_millis(arg("--retry-ms", 300)),
    )?;
    let bench = Bench {
        emulator: KubeApiEmulator::start()?,
        timings,
    };
    let mut graceful = Vec::with_capacity(runs);
    let mut crash = Vec::with_capacity(runs);
    for _ in 0..runs {
        graceful.push(bench.graceful().await?);
        crash.push(bench.crash().await?);
    }
    let out = serde_json::json!({
        "benchmark": "leader hand-over",
        "backend": "kubernetes",
        "server": "ha_testkit::KubeApiEmulator (in-process, 127.0.0.1)",
        "runs": runs,
        "lease_duration_ms": timings.lease_duration.as_millis() as u64,
        "renew_deadline_ms": timings.renew_deadline.as_millis() as u64,
        "retry_period_ms": timings.retry_period.as_millis() as u64,
        "graceful": summary(graceful),
        "crash": summary(crash),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
