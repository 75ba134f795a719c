//! `ha-bench`: measures ha-rs on real servers it starts itself (ZooKeeper, etcd, the
//! Kubernetes API emulator; plus the embedded backend) next to the peers users would
//! otherwise pick: Apache Curator's `LeaderLatch` and etcd's own election API.
//!
//! Prints one JSON object per measurement on stdout (`backend`, `name`, `n`,
//! `median`, `p90`, `unit`, and `ratio`/`ratio_of` where a comparison is made),
//! then a short table. Every measurement is bounded in count (flags) and in time
//! (`--budget-secs` per measurement). `--quick` is a smoke run of ~30 s.
//!
//! ```text
//! cargo run --release -p ha-bench
//! cargo run --release -p ha-bench -- --quick --backends zookeeper,etcd
//! ```

mod contender;
mod counter;
mod curator;
mod etcd_election;
mod failover;
mod flink;
mod handover;
mod plot;
mod procs;
mod raw;
mod report;
mod scale;
mod systems;
mod writes;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use report::{Measurement, Report};
use systems::{Endpoints, Kind, Servers};

/// Errors of the benchmark (reported, never hidden).
pub(crate) type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A per-measurement time budget: loops stop early (with at least one sample) once
/// it is spent, and report the samples they have.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget(Instant);

impl Budget {
    fn new(d: Duration) -> Self {
        Self(Instant::now() + d)
    }

    pub(crate) fn exhausted(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// What to measure.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Section {
    /// Graceful and crash hand-over (with peers).
    Handover,
    /// Fenced pointer add, pointer write (vs a raw write) and leader-information write.
    Writes,
    /// Counter increments/s vs a raw CAS loop.
    Counter,
    /// Many components in one process.
    Scale,
    /// Failover (crash → granted, → all jobs recovered) by number of jobs.
    Failover,
}

#[derive(Parser, Debug)]
#[command(
    name = "ha-bench",
    about = "Benchmarks ha-rs against raw clients and peers on real servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Internal: one process of the many-components measurement.
    #[command(hide = true)]
    ScaleChild {
        #[arg(long)]
        kind: Kind,
        #[arg(long)]
        components: usize,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Internal: one etcd election API contender or retriever process.
    #[command(hide = true)]
    EtcdElection {
        #[arg(long)]
        name: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        role: procs::Role,
        /// Once won, proclaim the address with a fresh term id before saying LEADER.
        #[arg(long)]
        proclaim: bool,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Internal: one ha-rs contender or retriever process of the hand-over measurement.
    #[command(hide = true)]
    Contender {
        #[arg(long)]
        kind: Kind,
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        role: procs::Role,
        /// Jobs to submit once granted (failover measurement).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        #[command(flatten)]
        endpoints: Endpoints,
    },
}

#[derive(clap::Args, Debug)]
struct Opts {
    /// Small counts for a smoke test (~30 s); explicit count flags still win.
    #[arg(long)]
    quick: bool,
    /// Backends to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Kind::Embedded, Kind::Zookeeper, Kind::Etcd, Kind::Kubernetes])]
    backends: Vec<Kind>,
    /// Measurements to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Section::Handover, Section::Writes, Section::Counter, Section::Scale, Section::Failover])]
    only: Vec<Section>,
    /// Skip the peers (Curator LeaderLatch, etcd election API).
    #[arg(long)]
    no_peers: bool,
    /// Session timeout / lease TTL / lease duration of every system, in ms.
    #[arg(long, default_value_t = 1000)]
    ttl_ms: u64,
    /// Graceful hand-overs per system [default: 20, quick: 3].
    #[arg(long)]
    handover_runs: Option<usize>,
    /// Crash hand-overs per system [default: 20, quick: 1].
    #[arg(long)]
    crash_runs: Option<usize>,
    /// Writes of each kind per system [default: 300, quick: 20].
    #[arg(long)]
    write_ops: Option<usize>,
    /// Counter increments per round, spread over 16 tasks [default: 800, quick: 64].
    #[arg(long)]
    counter_ops: Option<usize>,
    /// Counter rounds [default: 3, quick: 1].
    #[arg(long)]
    counter_rounds: Option<usize>,
    /// Components in one process [default: 10000, quick: 500].
    #[arg(long)]
    components: Option<usize>,
    /// Job counts of the failover measurement, e.g. `1,100,1000,10000`
    /// [default: 1,100,1000, quick: 1,10].
    #[arg(long, value_delimiter = ',')]
    failover_jobs: Vec<usize>,
    /// Renew periods counted while idle [default: 5, quick: 1].
    #[arg(long)]
    idle_periods: Option<u32>,
    /// Also draw the hand-over distributions and failover times into this SVG file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Time budget of each measurement, in seconds [default: 90, quick: 15].
    #[arg(long)]
    budget_secs: Option<u64>,
}

/// The effective counts.
struct Plan {
    handover_runs: usize,
    crash_runs: usize,
    write_ops: usize,
    counter_ops: usize,
    counter_rounds: usize,
    components: usize,
    failover_jobs: Vec<usize>,
    idle_periods: u32,
    budget: Duration,
}

impl Opts {
    fn plan(&self) -> Plan {
        let q = self.quick;
        let pick = |v: Option<usize>, full: usize, quick: usize| v.unwrap_or(if q { quick } else { full }).max(1);
        Plan {
            handover_runs: pick(self.handover_runs, 20, 3),
            crash_runs: pick(self.crash_runs, 20, 1),
            write_ops: pick(self.write_ops, 300, 20),
            counter_ops: pick(self.counter_ops, 800, 64),
            counter_rounds: pick(self.counter_rounds, 3, 1),
            components: pick(self.components, 10_000, 500),
            failover_jobs: match (&self.failover_jobs[..], q) {
                ([], false) => vec![1, 100, 1000],
                ([], true) => vec![1, 10],
                (jobs, _) => jobs.to_vec(),
            },
            idle_periods: self.idle_periods.unwrap_or(if q { 1 } else { 5 }).max(1),
            budget: Duration::from_secs(self.budget_secs.unwrap_or(if q { 15 } else { 90 })),
        }
    }
}

#[tokio::main]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()))
        .with_writer(std::io::stderr)
        .try_init();
    ha_zookeeper::register();
    ha_etcd::register();
    ha_kubernetes::register();
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::ScaleChild {
            kind,
            components,
            endpoints,
        }) => match scale::child(&endpoints, kind, components).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ha-bench scale-child: {e}");
                1
            }
        },
        Some(Command::Contender {
            kind,
            cluster,
            id,
            role,
            jobs,
            endpoints,
        }) => match contender::run(&endpoints, kind, &cluster, &id, role, jobs).await {
            Ok(()) => 0,
            Err(e) => {
                println!("FATAL {e}");
                1
            }
        },
        Some(Command::EtcdElection {
            name,
            id,
            role,
            proclaim,
            endpoints,
        }) => match etcd_election::run(&endpoints, &name, &id, role, proclaim).await {
            Ok(()) => 0,
            Err(e) => {
                println!("FATAL {e}");
                1
            }
        },
        None => match run(&cli.opts).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ha-bench: {e}");
                1
            }
        },
    };
    std::process::exit(code);
}

async fn run(opts: &Opts) -> BoxResult<()> {
    let plan = opts.plan();
    let servers = tokio::task::block_in_place(|| Servers::start(&opts.backends, opts.ttl_ms))?;
    let e = &servers.endpoints;
    let ttl = e.ttl();
    let mut report = Report::default();
    let curator =
        if !opts.no_peers && opts.backends.contains(&Kind::Zookeeper) && opts.only.contains(&Section::Handover) {
            match curator::compile().await {
                Ok(c) => Some(c),
                Err(err) => {
                    report.failed("curator-leaderlatch", "compile", &err.to_string());
                    None
                }
            }
        } else {
            None
        };

    let flink = if !opts.no_peers
        && opts.only.contains(&Section::Handover)
        && opts
            .backends
            .iter()
            .any(|k| matches!(k, Kind::Zookeeper | Kind::Kubernetes))
    {
        match flink::compile().await {
            Ok(Some(c)) => Some(c),
            Ok(None) => {
                eprintln!(
                    "ha-bench: Flink peer skipped: no {}/flink-dist-2.3.0.jar (run scripts/fetch-flink.sh or set HA_FLINK_DIR)",
                    flink::lib_dir().display()
                );
                None
            }
            Err(err) => {
                report.failed("flink-ha", "compile", &err.to_string());
                None
            }
        }
    } else {
        None
    };

    for &kind in &opts.backends {
        let b = kind.name();
        if opts.only.contains(&Section::Handover) {
            let ours = if kind == Kind::Embedded {
                // One process by nature: the embedded backend lives in its process.
                handovers(&mut report, b, ttl, &plan, |crash, runs, budget| {
                    handover::measure(e, kind, crash, runs, budget)
                })
                .await
            } else {
                let cluster = ha_core::ClusterId::random("bench-handover").to_string();
                let spawn = |id: &str, role: procs::Role| {
                    let mut cmd = e.self_command(&["contender", "--kind", b, "--cluster", &cluster, "--id", id])?;
                    cmd.args(["--role", role.name()]);
                    Ok(cmd)
                };
                let spawn = &spawn;
                handovers(&mut report, b, ttl, &plan, |crash, runs, budget| {
                    procs::measure(spawn, ttl, crash, runs, budget)
                })
                .await
            };
            if !opts.no_peers {
                let mut peers = Vec::new();
                if let (Some(cp), Some(target)) = (&flink, flink_target(e, kind)) {
                    let target = &target;
                    let system = format!("flink-ha-{b}");
                    peers.push(
                        handovers(&mut report, &system, ttl, &plan, |crash, runs, budget| {
                            flink::measure(cp, target.as_target(), ttl, crash, runs, budget)
                        })
                        .await,
                    );
                }
                match kind {
                    Kind::Zookeeper => {
                        if let Some(cp) = &curator {
                            let connect = e.zk_connect_string()?;
                            peers.push(curator_handovers(&mut report, cp, &connect, ttl, &plan, false).await);
                            // Like ha-rs's confirm: the address published, fenced, once granted.
                            peers.push(curator_handovers(&mut report, cp, &connect, ttl, &plan, true).await);
                        }
                    }
                    Kind::Etcd => {
                        peers.push(
                            handovers(&mut report, "etcd-election-api", ttl, &plan, |crash, runs, budget| {
                                etcd_election::measure(e, crash, runs, budget, false)
                            })
                            .await,
                        );
                        // The same peer doing what ha-rs's confirm does after a grant:
                        // publishing a record with a fresh term id, fenced by the term.
                        let system = "etcd-election-api-proclaim";
                        peers.push(
                            handovers(&mut report, system, ttl, &plan, |crash, runs, budget| {
                                etcd_election::measure(e, crash, runs, budget, true)
                            })
                            .await,
                        );
                    }
                    _ => {}
                }
                for peer in &peers {
                    report_ratios(&mut report, &ours, peer, kind);
                }
            }
        }
        if opts.only.contains(&Section::Writes) {
            measure_writes(&mut report, e, kind, &plan).await;
        }
        if opts.only.contains(&Section::Counter) {
            measure_counter(&mut report, e, kind, &plan).await;
        }
        if opts.only.contains(&Section::Failover) && kind != Kind::Embedded {
            measure_failover(&mut report, e, kind, &plan.failover_jobs).await;
        }
        if opts.only.contains(&Section::Scale) {
            match scale::measure(&servers, kind, plan.components, plan.idle_periods).await {
                Ok(ms) => ms.into_iter().for_each(|m| report.push(m)),
                Err(err) => report.failed(b, "scale", &err.to_string()),
            }
        }
    }
    report.print_table();
    if let Some(path) = &opts.plot {
        let title = format!("ha-bench: ha-rs and its peers, T = {} ms", ttl.as_millis());
        plot::draw(path, report.rows(), &title)?;
        println!("plot: {}", path.display());
    }
    Ok(())
}

/// Failover by number of jobs on a backend with a server (the embedded backend lives
/// in one process), with the ratio of the largest count to one job.
async fn measure_failover(report: &mut Report, e: &Endpoints, kind: Kind, jobs: &[usize]) {
    let b = kind.name();
    let mut first: Option<(Measurement, Measurement)> = None;
    for &n in jobs {
        match failover::once(e, kind, n).await {
            Ok((granted, recovered)) => {
                let ttl = e.ttl().as_millis() as u64;
                let mut g = Measurement::from_durations(b, "failover_granted", &[granted])
                    .with("jobs", n)
                    .with("ttl_ms", ttl);
                let mut r = Measurement::from_durations(b, "failover_all_recovered", &[recovered])
                    .with("jobs", n)
                    .with("ttl_ms", ttl);
                if let Some((g1, r1)) = &first {
                    g = g.with_ratio_to(g1, &format!("{n} jobs / 1 job"));
                    r = r.with_ratio_to(r1, &format!("{n} jobs / 1 job"));
                } else if n == 1 {
                    first = Some((g.clone(), r.clone()));
                }
                report.push(g);
                report.push(r);
            }
            Err(err) => report.failed(b, &format!("failover_{n}_jobs"), &err.to_string()),
        }
    }
}

/// Graceful and crash hand-over figures of one system, for peer ratios.
#[derive(Default)]
struct Handovers {
    system: String,
    /// Leader closed → another contender granted (before it confirms, where that is a
    /// step of its own).
    graceful_granted: Option<Measurement>,
    /// Leader closed → another contender granted and confirmed.
    graceful: Option<Measurement>,
    /// Leader closed → a separate retriever sees the new leader (where measured).
    graceful_retrieved: Option<Measurement>,
    /// Leader killed → another contender granted.
    crash_granted: Option<Measurement>,
    /// Raw crash hand-over and the same minus the session timeout / TTL.
    crash: Option<(Measurement, Measurement)>,
    /// Leader killed → a separate retriever sees the new leader (where measured).
    crash_retrieved: Option<Measurement>,
}

/// Measures graceful and crash hand-over of one system with `f(crash, runs, budget)`.
async fn handovers<F, Fut>(report: &mut Report, system: &str, ttl: Duration, plan: &Plan, f: F) -> Handovers
where
    F: Fn(bool, usize, Budget) -> Fut,
    Fut: std::future::Future<Output = BoxResult<procs::Samples>>,
{
    let mut out = Handovers {
        system: system.to_string(),
        ..Handovers::default()
    };
    let push = |report: &mut Report, name: &str, samples: &[Duration]| {
        (!samples.is_empty()).then(|| {
            let m = Measurement::from_durations(system, name, samples).with("ttl_ms", ttl.as_millis() as u64);
            report.push(m.clone());
            m
        })
    };
    match f(false, plan.handover_runs, Budget::new(plan.budget)).await {
        Ok(s) => {
            out.graceful_granted = push(report, "graceful_handover_granted", &s.granted);
            out.graceful = push(report, "graceful_handover", &s.confirmed);
            out.graceful_retrieved = push(report, "graceful_handover_retrieved", &s.retrieved);
        }
        Err(err) => report.failed(system, "graceful_handover", &err.to_string()),
    }
    match f(true, plan.crash_runs, Budget::new(plan.budget)).await {
        Ok(s) => {
            out.crash_granted = push(report, "crash_handover_granted", &s.granted);
            out.crash = Some(push_crash(report, system, &s.confirmed, ttl));
            out.crash_retrieved = push(report, "crash_handover_retrieved", &s.retrieved);
        }
        Err(err) => report.failed(system, "crash_handover", &err.to_string()),
    }
    out
}

/// Where Flink's peer runs for `kind`, if Flink supports that backend.
enum FlinkTarget {
    Zookeeper(String),
    Kubernetes(String),
}

impl FlinkTarget {
    fn as_target(&self) -> flink::Target<'_> {
        match self {
            FlinkTarget::Zookeeper(s) => flink::Target::Zookeeper(s),
            FlinkTarget::Kubernetes(s) => flink::Target::Kubernetes(s),
        }
    }
}

fn flink_target(e: &Endpoints, kind: Kind) -> Option<FlinkTarget> {
    match kind {
        Kind::Zookeeper => e.zk.clone().map(FlinkTarget::Zookeeper),
        Kind::Kubernetes => e.kube.clone().map(FlinkTarget::Kubernetes),
        _ => None,
    }
}

/// Reports a crash hand-over raw and minus the session timeout / TTL.
fn push_crash(report: &mut Report, system: &str, samples: &[Duration], ttl: Duration) -> (Measurement, Measurement) {
    let raw = Measurement::from_durations(system, "crash_handover", samples).with("ttl_ms", ttl.as_millis() as u64);
    report.push(raw.clone());
    // Signed: a lease renewed last some time before the crash can expire before a full
    // TTL has passed since the crash.
    let minus: Vec<f64> = samples
        .iter()
        .map(|d| (d.as_secs_f64() - ttl.as_secs_f64()) * 1e3)
        .collect();
    let m = Measurement::from_samples(system, "crash_handover_minus_ttl", "ms", &minus)
        .with("ttl_ms", ttl.as_millis() as u64);
    report.push(m.clone());
    (raw, m)
}

/// Curator's LeaderLatch; with `publish` the variant whose contender publishes its
/// address (fenced by its latch node) once granted.
async fn curator_handovers(
    report: &mut Report,
    cp: &curator::Compiled,
    connect: &str,
    ttl: Duration,
    plan: &Plan,
    publish: bool,
) -> Handovers {
    let system = if publish {
        "curator-leaderlatch-publish"
    } else {
        "curator-leaderlatch"
    };
    let mut out = Handovers {
        system: system.to_string(),
        ..Handovers::default()
    };
    match curator::measure(
        cp,
        connect,
        ttl,
        false,
        plan.handover_runs,
        Budget::new(plan.budget),
        publish,
    )
    .await
    {
        Ok(s) => {
            let m = Measurement::from_durations(system, "graceful_handover_granted", &s.granted);
            report.push(m.clone());
            out.graceful_granted = Some(m);
            let m = Measurement::from_durations(system, "graceful_handover", &s.durations);
            report.push(m.clone());
            out.graceful = Some(m);
        }
        Err(err) => report.failed(system, "graceful_handover", &err.to_string()),
    }
    match curator::measure(
        cp,
        connect,
        ttl,
        true,
        plan.crash_runs,
        Budget::new(plan.budget),
        publish,
    )
    .await
    {
        // Subtract what the server granted, as for ha-rs.
        Ok(s) => {
            let m = Measurement::from_durations(system, "crash_handover_granted", &s.granted);
            report.push(m.clone());
            out.crash_granted = Some(m);
            out.crash = Some(push_crash(report, system, &s.durations, s.session));
        }
        Err(err) => report.failed(system, "crash_handover", &err.to_string()),
    }
    out
}

/// ha-rs vs a peer on the same server: ratio = ha-rs median / peer median, for the
/// graceful and crash hand-over, granted, granted and confirmed, and (where both
/// measure it) retrieved. The
/// crash ratio compares whole crash hand-overs (same TTL on both sides): the part beyond
/// the TTL can be near zero or negative (a session expires a TTL after its last
/// renewal, which precedes the crash), so a ratio of it says little; both are listed.
fn report_ratios(report: &mut Report, ours: &Handovers, peer: &Handovers, kind: Kind) {
    let label = format!("ha-rs {} / {}", kind.name(), peer.system);
    let mut compare = |name: &str, o: &Option<Measurement>, p: &Option<Measurement>| {
        if let (Some(o), Some(p)) = (o, p) {
            let mut m = o.clone().with_ratio_to(p, &label).with("peer", p.backend.clone());
            m.name = name.into();
            report.push(m.with("peer_median", p.median).with("peer_p90", p.p90));
        }
    };
    compare(
        "graceful_granted_vs_peer",
        &ours.graceful_granted,
        &peer.graceful_granted,
    );
    compare("graceful_handover_vs_peer", &ours.graceful, &peer.graceful);
    compare(
        "graceful_retrieved_vs_peer",
        &ours.graceful_retrieved,
        &peer.graceful_retrieved,
    );
    compare(
        "crash_handover_vs_peer",
        &ours.crash.as_ref().map(|c| c.0.clone()),
        &peer.crash.as_ref().map(|c| c.0.clone()),
    );
    compare("crash_granted_vs_peer", &ours.crash_granted, &peer.crash_granted);
    compare("crash_retrieved_vs_peer", &ours.crash_retrieved, &peer.crash_retrieved);
}

async fn measure_writes(report: &mut Report, e: &Endpoints, kind: Kind, plan: &Plan) {
    let b = kind.name();
    let (fenced, raw) = match writes::fenced(e, kind, plan.write_ops, Budget::new(plan.budget)).await {
        Ok(w) => {
            report.push(Measurement::from_durations(b, "fenced_pointer_add", &w.add));
            report.push(Measurement::from_durations(b, "fenced_leader_info_write", &w.confirm));
            (
                Measurement::from_durations(b, "fenced_pointer_write", &w.replace),
                w.raw,
            )
        }
        Err(err) => return report.failed(b, "fenced_pointer_write", &err.to_string()),
    };
    // The raw writes alternate with the fenced replaces (see `writes`).
    match raw {
        Ok(Some(s)) => {
            let raw = Measurement::from_durations(b, "raw_write", &s).with("client", raw_client(kind));
            report.push(fenced.with_ratio_to(&raw, "fenced / raw"));
            report.push(raw);
        }
        Ok(None) => report.push(fenced),
        Err(err) => {
            report.push(fenced);
            report.failed(b, "raw_write", &err.to_string());
        }
    }
}

async fn measure_counter(report: &mut Report, e: &Endpoints, kind: Kind, plan: &Plan) {
    let b = kind.name();
    let (ops, rounds) = (plan.counter_ops, plan.counter_rounds);
    let ours = match counter::ours(e, kind, ops, rounds, Budget::new(plan.budget)).await {
        Ok(s) => Measurement::from_samples(b, "counter_increments", "ops/s", &s).with("tasks", counter::TASKS),
        Err(err) => return report.failed(b, "counter_increments", &err.to_string()),
    };
    match counter::raw(e, kind, ops, rounds, Budget::new(plan.budget)).await {
        Ok(Some(s)) => {
            let raw = Measurement::from_samples(b, "raw_cas_increments", "ops/s", &s)
                .with("tasks", counter::TASKS)
                .with("client", raw_client(kind));
            report.push(ours.with_ratio_to(&raw, "ha-core / raw CAS"));
            report.push(raw);
        }
        Ok(None) => report.push(ours),
        Err(err) => {
            report.push(ours);
            report.failed(b, "raw_cas_increments", &err.to_string());
        }
    }
}

fn raw_client(kind: Kind) -> &'static str {
    match kind {
        Kind::Zookeeper => "zookeeper-client set_data",
        Kind::Etcd => "etcd-client put / txn",
        Kind::Kubernetes => "kube ConfigMap replace",
        Kind::Embedded => "",
    }
}
