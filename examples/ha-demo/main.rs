//! `ha-demo`: three contenders on the configured backend (default: embedded). The
//! leader runs a job that completes a checkpoint every 100 ms; the demo crashes the
//! leader (drops it without resigning), a new leader recovers the job graph and the
//! latest checkpoint and continues. Exits 0 only if the job resumed from the last
//! acknowledged checkpoint.
//!
//! ```text
//! cargo run --example ha-demo
//! cargo run --example ha-demo -- --metrics-addr 127.0.0.1:9464 --linger-ms 60000
//! cargo run --features zookeeper --example ha-demo -- --config zk.yaml --processes
//! ```
//!
//! With `--metrics-addr` the demo serves `/metrics` and `/healthz` (200 while every
//! contender of the process is healthy, 503 once one is wedged or stopped contending:
//! a Kubernetes liveness probe; `high-availability.health.tolerance` sets the slack).

mod child;
mod health;
mod job;
mod processes;
mod timeline;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ha_core::{ComponentId, HaConfig, HaServices, JobId, DEFAULT_ELECTION_GROUP};
use tokio::sync::oneshot;

use job::Progress;
use timeline::Timeline;

/// Command line of the demo.
#[derive(Parser, Debug)]
#[command(about = "Leader failover with checkpoint recovery on any ha-rs backend")]
struct Args {
    /// HA config file (.yaml/.yml/.toml); environment overrides apply (HA_HIGH_AVAILABILITY_TYPE, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Number of contenders.
    #[arg(long, default_value_t = 3)]
    contenders: usize,
    /// Checkpoints the first leader completes before it is crashed.
    #[arg(long, default_value_t = 10)]
    before_crash: u64,
    /// Checkpoints the next leader completes before the demo ends.
    #[arg(long, default_value_t = 10)]
    after_crash: u64,
    /// Checkpoint interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics and leader health at
    /// http://ADDR/healthz (200/503) while the demo runs.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Keep running (and serving metrics) this many milliseconds after the demo ends.
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
    /// Run the contenders as separate processes (needs a shared backend): SIGKILL the
    /// leader, then SIGSTOP the next one past its lease and check its writes are rejected.
    #[arg(long)]
    processes: bool,
    /// Internal: run as the contender process NAME.
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Internal: the job a child process runs.
    #[arg(long, hide = true)]
    job: Option<String>,
}

struct Contender {
    name: String,
    crash: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_contender(
    name: String,
    ha: HaServices,
    job: JobId,
    interval: Duration,
    progress: Arc<Progress>,
    timeline: Timeline,
    leader_tx: tokio::sync::mpsc::UnboundedSender<String>,
) -> Contender {
    let (crash_tx, crash_rx) = oneshot::channel::<()>();
    let task_name = name.clone();
    let task = tokio::spawn(async move {
        let name = task_name;
        let work = async {
            let service = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
            let mut election = service.register(ComponentId::new("dispatcher")?)?;
            health::register(&name, &service);
            loop {
                let grant = election.granted().await?;
                timeline.log(format!(
                    "{name} granted leadership (epoch {}, session {})",
                    grant.epoch, grant.session_id
                ));
                election.confirm(&grant, &format!("{name}.local:8081")).await?;
                let _ = leader_tx.send(name.clone());
                let runner = job::JobRunner {
                    name: &name,
                    ha: &ha,
                    job: &job,
                    interval,
                    progress: &progress,
                    timeline: &timeline,
                };
                job::run_as_leader(&runner, &mut election, grant).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), ha_core::Error>(())
        };
        tokio::select! {
            r = work => if let Err(e) = r { timeline.log(format!("{name} stopped: {e}")) },
            _ = crash_rx => {
                health::remove(&name);
                // Leave without resigning or closing: to the backend this is a crash.
                timeline.log(format!("{name} CRASHED (no resign, no close)"));
            }
        }
    });
    Contender {
        name,
        crash: Some(crash_tx),
        task,
    }
}

async fn wait_until(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

async fn run(args: Args) -> Result<bool, ha_core::Error> {
    ha_examples::register_backends();
    if let Some(addr) = args.metrics_addr {
        let cannot = |e: &dyn std::fmt::Display| ha_core::Error::Other {
            message: format!("cannot serve metrics on {addr}: {e}"),
            source: None,
        };
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| cannot(&e))?;
        health::serve(addr, handle).await.map_err(|e| cannot(&e))?;
        println!("metrics: http://{addr}/metrics  health: http://{addr}/healthz");
    }
    let config = HaConfig::load(args.config.as_deref())?;
    health::set_tolerance(config.health_tolerance());
    let interval = Duration::from_millis(args.interval_ms);
    if let Some(name) = &args.child {
        let job = JobId::new(args.job.clone().unwrap_or_default())?;
        child::run(name, &config, &job, interval).await?;
        return Ok(true);
    }
    let config = config.with(
        ha_core::config::KEY_CLUSTER_ID,
        ha_core::ClusterId::random("demo").to_string(),
    )?;
    if args.processes {
        return processes::run(
            &config,
            args.config.as_deref(),
            args.contenders,
            args.before_crash,
            args.interval_ms,
        )
        .await;
    }
    let timeline = Timeline::new(false);
    println!(
        "ha-demo: mode={} cluster-id={} contenders={} storage={}",
        config.mode(),
        config.cluster_id(),
        args.contenders,
        config.storage_dir()
    );
    let job = JobId::random();
    let progress = Arc::new(Progress::default());
    progress.resumed_from.store(u64::MAX, Ordering::SeqCst);
    let (leader_tx, mut leader_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut contenders = Vec::new();
    for i in 1..=args.contenders.max(2) {
        let ha = HaServices::from_config(&config).await?;
        contenders.push(spawn_contender(
            format!("contender-{i}"),
            ha,
            job.clone(),
            interval,
            progress.clone(),
            timeline.clone(),
            leader_tx.clone(),
        ));
    }
    let deadline = Duration::from_secs(60);
    let Some(first) = tokio::time::timeout(deadline, leader_rx.recv()).await.ok().flatten() else {
        println!("no leader was elected within {deadline:?}");
        return Ok(false);
    };
    let target = args.before_crash;
    if !wait_until(|| progress.completed.load(Ordering::SeqCst) >= target, deadline).await {
        println!("the first leader did not complete {target} checkpoints");
        return Ok(false);
    }
    let leader = contenders
        .iter_mut()
        .find(|c| c.name == first)
        .expect("leader is a contender");
    let crashed_at = timeline.elapsed_ms();
    if let Some(crash) = leader.crash.take() {
        let _ = crash.send(());
    }
    let _ = (&mut leader.task).await;
    let acked_at_crash = progress.last_acknowledged.load(Ordering::SeqCst);
    let in_flight_at_crash = progress.in_flight.load(Ordering::SeqCst);
    progress.resumed_from.store(u64::MAX, Ordering::SeqCst);
    timeline.log(format!(
        "last acknowledged checkpoint before the crash: {acked_at_crash}"
    ));

    let Some(second) = tokio::time::timeout(deadline, leader_rx.recv()).await.ok().flatten() else {
        println!("no new leader within {deadline:?} of the crash");
        return Ok(false);
    };
    let failover_ms = timeline.elapsed_ms() - crashed_at;
    let resumed_ok = wait_until(|| progress.resumed_from.load(Ordering::SeqCst) != u64::MAX, deadline).await;
    let resumed = progress.resumed_from.load(Ordering::SeqCst);
    let goal = progress.completed.load(Ordering::SeqCst) + args.after_crash;
    let continued = wait_until(|| progress.completed.load(Ordering::SeqCst) >= goal, deadline).await;

    for c in &mut contenders {
        if let Some(crash) = c.crash.take() {
            drop(crash);
        }
        c.task.abort();
    }
    let cleanup = HaServices::from_config(&config).await?;
    cleanup.close_and_cleanup_all_data().await?;

    // A checkpoint that was being written at the crash may have landed without being
    // acknowledged; resuming from it is correct too. Anything older loses acknowledged work.
    let ok = resumed_ok
        && continued
        && (resumed == acked_at_crash || (in_flight_at_crash != 0 && resumed == in_flight_at_crash));
    println!();
    println!("summary:");
    println!("  first leader        {first}, crashed after checkpoint {acked_at_crash}");
    println!("  new leader          {second}, granted and confirmed {failover_ms} ms after the crash");
    println!("  resumed from        checkpoint {resumed} (last acknowledged: {acked_at_crash})");
    println!("  continued           {}", if continued { "yes" } else { "no" });
    println!(
        "  result              {}",
        if ok {
            "OK: no acknowledged checkpoint lost"
        } else {
            "FAILED"
        }
    );
    if args.linger_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.linger_ms)).await;
    }
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_target(false)
        .init();
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ha-demo: {e}");
            ExitCode::from(2)
        }
    }
}
