//! The chaos suite: contenders that lead, checkpoint and count under a seeded, bounded
//! schedule of faults, and a checker of invariants over the recorded history.
//!
//! A backend opts in by implementing [`ChaosTarget`] on top of its [`Harness`]: a way
//! to freeze one contender's link to the backend (as SIGSTOP would), and optionally
//! backend-side faults (kill or restart a server, expire a session, fail requests).
//! [`run`] drives 3–5 contenders running one job or many ([`ChaosConfig::jobs`]); each
//! new leader recovers every job (latest checkpoint and job graph), then writes the
//! jobs in turn: the job's graph once per term, then a checkpoint id from the job's
//! counter and a checkpoint, all fenced. The checker checks every job on its own.
//! Faults: kill a contender (restarted later), freeze a contender past its lease then
//! thaw it (half of the time a leader right before a write, so it sends that write with
//! its old fence when thawed), payload storage unavailable or slow for a while, the
//! target's backend faults, and where the target's links recognise writes on the wire
//! ([`Links::stall_writes_matching`]) `stall-write`: a leader's write that passed every
//! local check is held on the wire until a newer term has read or written its job, then
//! delivered, and the backend must refuse it (see `stall`); after each fault the
//! next waits until a leader writes again. The [`CheckReport`] lists violations (must
//! be none), operations and leader actions checked and the worst leaderless gap after
//! a heal.
//!
//! [`run_processes`] runs each contender as a child process instead (see
//! [`ProcessTarget`]): SIGKILL, SIGSTOP past the lease then SIGCONT, SIGSTOP within
//! the lease, and the target's backend faults; every action a leader takes is checked
//! against newer grants on one clock shared by all processes.

mod checker;
mod contender;
mod history;
mod jobs;
mod links;
mod process;
mod rng;
mod stall;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ha_core::{ClusterId, HaBackend, Result};

pub use checker::{check, CheckReport};
pub use history::{checkpoint_payload, job_graph_payload, Event, History, Incarnation, OpKind, Outcome};
pub use links::{Link, Links, WriteMatcher};
pub use process::{child_main, run_processes, ProcessTarget, CHILD_ENV, CHILD_TEST};
pub use rng::SplitMix64;
pub use stall::StalledWrite;

use crate::{Harness, StorageMode};

/// Makes the payload storage unavailable or slow for one to two leases, then heals it.
async fn storage_fault(ctx: &crate::Ctx, lease: Duration, rng: &mut SplitMix64) -> String {
    let hold = lease + Duration::from_millis(rng.below(lease.as_millis() as u64 + 1));
    let (mode, name) = if rng.below(2) == 0 {
        (StorageMode::Unavailable, "payload storage unavailable")
    } else {
        let latency = Duration::from_millis(20 + rng.below(180));
        (StorageMode::Slow(latency), "payload storage slow")
    };
    ctx.storage_condition().set(mode);
    tokio::time::sleep(hold).await;
    ctx.storage_condition().set(StorageMode::Healthy);
    format!("{name} ({mode:?}) for {} ms", hold.as_millis())
}

/// Stops and restarts one contender's link to the backend (its whole session), as a
/// process freeze would.
pub trait Freeze: Send + Sync {
    /// Stops all traffic of the contender's backend instance.
    fn freeze(&self);
    /// Resumes it.
    fn thaw(&self);

    /// The proxied link it freezes, if any (the `stall-write` fault stalls it at a
    /// write while the contender keeps running).
    fn link(&self) -> Option<Arc<Link>> {
        None
    }
}

/// A backend that can be put under chaos.
#[async_trait]
pub trait ChaosTarget: Harness {
    /// Connects an instance whose link can be frozen.
    async fn connect_freezable(&self, cluster_id: &ClusterId) -> Result<(Arc<dyn HaBackend>, Box<dyn Freeze>)>;

    /// How long a frozen leader keeps its term (session timeout / lease / TTL).
    fn lease(&self) -> Duration;

    /// Names of backend-side faults this target can inject.
    fn backend_faults(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Injects backend fault `name`, keeps it for a while, heals it. Bounded in time.
    async fn inject_backend_fault(&self, name: &str, rng: &mut SplitMix64) -> Result<()> {
        let _ = rng;
        Err(ha_core::Error::Other {
            message: format!("backend fault `{name}` not supported"),
            source: None,
        })
    }
}

/// Parameters of a chaos run.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Seed of the fault schedule.
    pub seed: u64,
    /// Number of contenders (3–5 is typical).
    pub contenders: usize,
    /// Number of faults to inject.
    pub faults: usize,
    /// Pause between faults (after the previous one healed).
    pub settle: Duration,
    /// Pause between a leader's writes.
    pub write_interval: Duration,
    /// Number of jobs each leader runs (each with a graph, a counter and checkpoints).
    pub jobs: usize,
    /// One in this many faults is followed by a `stall-write` (0: never; only where
    /// the target's links recognise writes).
    pub stall_writes: u64,
}

impl ChaosConfig {
    /// A short run for the normal test suite.
    pub fn short(seed: u64) -> Self {
        Self {
            seed,
            contenders: 3,
            faults: 6,
            settle: Duration::from_millis(300),
            write_interval: Duration::from_millis(10),
            jobs: 1,
            stall_writes: 0,
        }
    }

    /// A short run with `jobs` jobs, for the normal test suite.
    pub fn many_jobs(seed: u64, jobs: usize) -> Self {
        Self {
            jobs,
            write_interval: Duration::from_millis(2),
            ..Self::short(seed)
        }
    }

    /// Reads `HA_CHAOS_SEED`, `HA_CHAOS_FAULTS` and `HA_CHAOS_JOBS` over `self`, for
    /// long runs.
    pub fn from_env(mut self) -> Self {
        if let Some(seed) = std::env::var("HA_CHAOS_SEED").ok().and_then(|s| s.parse().ok()) {
            self.seed = seed;
        }
        if let Some(n) = std::env::var("HA_CHAOS_FAULTS").ok().and_then(|s| s.parse().ok()) {
            self.faults = n;
        }
        if let Some(n) = std::env::var("HA_CHAOS_JOBS").ok().and_then(|s| s.parse().ok()) {
            self.jobs = n;
        }
        self
    }
}

/// The outcome of a chaos run.
#[derive(Clone, Debug)]
pub struct ChaosReport {
    /// The seed used.
    pub seed: u64,
    /// Jobs each leader ran.
    pub jobs: usize,
    /// Faults injected, by description.
    pub faults: Vec<String>,
    /// Leaders frozen right before a write for longer than their lease: each thaws
    /// and sends that write with its old fence, which the backend must refuse.
    pub stale_leader_freezes: usize,
    /// For each of those, the outcome of the thawed leader's first write (`None` if
    /// it sent none, e.g. because it was killed first).
    pub stale_writes: Vec<Option<Outcome>>,
    /// The `stall-write` faults that caught a write, and what the backend answered.
    pub stalled_writes: Vec<StalledWrite>,
    /// What the checker found.
    pub check: CheckReport,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl ChaosReport {
    /// Prints the report and its faults, then asserts the run proved something and
    /// broke nothing: no invariant violation, at least one acknowledged write, and if a
    /// leader was frozen right before a write past its lease, at least one such stale
    /// write was fenced (one may instead fail on its reconnecting link, not all); no
    /// write held on the wire and delivered after a newer grant was accepted.
    pub fn assert_clean(&self, backend: &str) {
        println!("{backend} chaos: {self}");
        for f in &self.faults {
            println!("  fault: {f}");
        }
        assert!(
            self.check.violations.is_empty(),
            "invariant violations:\n{}",
            self.check.violations.join("\n")
        );
        assert!(
            self.check.acknowledged > 0,
            "no write was acknowledged: the run proved nothing"
        );
        let accepted: Vec<_> = self.late_deliveries().filter(|s| s.accepted == Some(true)).collect();
        assert!(
            accepted.is_empty(),
            "stale writes held on the wire were accepted after a newer grant: {accepted:?}"
        );
        if self.stale_leader_freezes > 0 {
            assert!(
                self.stale_writes.contains(&Some(Outcome::NotLeader)),
                "leaders were frozen before a write past their lease, yet none of their stale writes was fenced: {:?}",
                self.stale_writes
            );
        }
    }
}

impl ChaosReport {
    /// The stalled writes delivered to the backend after a newer grant.
    pub fn late_deliveries(&self) -> impl Iterator<Item = &StalledWrite> {
        self.stalled_writes.iter().filter(|s| s.after_newer_grant)
    }
}

impl std::fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} jobs, {} faults ({} leaders frozen before a write; their stale writes: {} fenced, {} failed, {} accepted; stale writes delivered after a newer grant: {} refused, {} accepted, {} unanswered), {} operations checked ({} acknowledged, {} fenced), {} actions checked, {} violations, worst leaderless gap {} ms, {:.1} s",
            self.seed,
            self.jobs,
            self.faults.len(),
            self.stale_leader_freezes,
            self.stale_writes.iter().filter(|o| **o == Some(Outcome::NotLeader)).count(),
            self.stale_writes
                .iter()
                .filter(|o| matches!(o, Some(Outcome::Unknown | Outcome::Failed(_))))
                .count(),
            self.stale_writes.iter().filter(|o| **o == Some(Outcome::Ok)).count(),
            self.late_deliveries().filter(|s| s.accepted == Some(false)).count(),
            self.late_deliveries().filter(|s| s.accepted == Some(true)).count(),
            self.late_deliveries().filter(|s| s.accepted.is_none()).count(),
            self.check.operations,
            self.check.acknowledged,
            self.check.fenced,
            self.check.actions,
            self.check.violations.len(),
            self.check.worst_leaderless_gap.as_millis(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Runs a chaos experiment against `target` and checks the history.
pub async fn run<T: ChaosTarget>(target: Arc<T>, config: ChaosConfig) -> ChaosReport {
    let started = Instant::now();
    let ctx = crate::Ctx::new(target.clone(), "chaos");
    let history = History::default();
    let mut rng = SplitMix64::new(config.seed);
    let mut slots = Vec::new();
    for slot in 0..config.contenders {
        slots.push(contender::Slot::start(
            slot,
            target.clone(),
            ctx.clone(),
            history.clone(),
            contender::Work {
                interval: config.write_interval,
                jobs: config.jobs,
            },
        ));
    }
    tokio::time::sleep(config.settle).await;
    let lease = target.lease();
    let gap_bound = ctx.crash_timeout() + Duration::from_secs(1);
    let mut faults = Vec::new();
    let mut stale_leader_freezes = 0;
    let mut thawed_leaders = Vec::new();
    let backend_faults = target.backend_faults();
    let mut storage_rng = SplitMix64::new(config.seed ^ 0x5707_a6e5_0000_0001);
    let mut stall_rng = SplitMix64::new(config.seed ^ 0x57a1_1000_0000_0002);
    let mut stalled_writes = Vec::new();
    for _ in 0..config.faults {
        let kinds = 2 + backend_faults.len();
        let choice = rng.below(kinds as u64) as usize;
        // Half of the faults hit the acting leader, where they matter most.
        let leader = slots.iter().position(|s| s.is_leading());
        let slot = match leader {
            Some(l) if rng.below(2) == 0 => l,
            _ => rng.below(slots.len() as u64) as usize,
        };
        let start = Instant::now();
        let what = match choice {
            0 => {
                slots[slot].kill().await;
                tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
                slots[slot].restart();
                format!("kill contender {slot}")
            }
            1 => {
                let hold = lease + lease / 2 + Duration::from_millis(rng.below(200));
                // Half of the freezes stop a leader right before a write.
                let at_write = rng.below(2) == 0;
                let stale = slots[slot].freeze(at_write, lease / 2).await;
                tokio::time::sleep(hold).await;
                if stale {
                    stale_leader_freezes += 1;
                    thawed_leaders.push((slots[slot].incarnation(), Instant::now()));
                }
                slots[slot].thaw();
                let how = if stale { " (leader, right before a write)" } else { "" };
                format!("freeze contender {slot}{how} for {} ms", hold.as_millis())
            }
            n => {
                let name = backend_faults[n - 2];
                if let Err(e) = target.inject_backend_fault(name, &mut rng).await {
                    tracing::warn!(fault = name, error = %e, "backend fault failed");
                }
                name.to_string()
            }
        };
        history.record(Event::Fault {
            what: what.clone(),
            start,
            healed: Instant::now(),
        });
        faults.push(what);
        // Payload-storage faults come from a stream of their own, so that a seed's
        // other faults stay what they were before storage faults existed.
        if storage_rng.below(3) == 0 {
            let start = Instant::now();
            let what = storage_fault(&ctx, lease, &mut storage_rng).await;
            history.record(Event::Fault {
                what: what.clone(),
                start,
                healed: Instant::now(),
            });
            faults.push(what);
        }
        // So do write stalls.
        if config.stall_writes > 0 && stall_rng.below(config.stall_writes) == 0 {
            let start = Instant::now();
            if let Some((slot, stalled, held)) = stall::stall_write(&slots, &history, lease).await {
                let what = stalled.describe(slot, held);
                history.record(Event::Fault {
                    what: what.clone(),
                    start,
                    healed: Instant::now(),
                });
                faults.push(what);
                stalled_writes.push(stalled);
            }
        }
        tokio::time::sleep(config.settle).await;
        // The next fault waits until a leader writes again (at most the bound of the
        // leaderless-gap check): "a leader is back within the bound after a fault
        // heals" is checked for every fault, so the next one must not disturb that
        // window. Faults still land at any point of a leader's work.
        let deadline = Instant::now() + gap_bound;
        while !slots.iter().any(|s| s.is_leading()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Let the last fault play out, then a final leader must recover everything.
    tokio::time::sleep(ctx.crash_timeout()).await;
    for s in &slots {
        s.stop();
    }
    for s in slots {
        s.join().await;
    }
    let (events, check) = finish(&ctx, &history, gap_bound, &config, started).await;
    ChaosReport {
        seed: config.seed,
        jobs: config.jobs,
        faults,
        stale_leader_freezes,
        stale_writes: thawed_leaders
            .iter()
            .map(|(who, thawed)| first_write_after(&events, *who, *thawed))
            .collect(),
        stalled_writes,
        check,
        elapsed: started.elapsed(),
    }
}

/// The end of a run once the contenders stopped: a final leader recovers, the
/// cluster's data is cleaned up, and the history is checked (its timeline printed if
/// anything was violated).
async fn finish(
    ctx: &crate::Ctx,
    history: &History,
    gap_bound: Duration,
    config: &ChaosConfig,
    started: Instant,
) -> (Vec<Event>, CheckReport) {
    contender::final_recovery(ctx, history, config.jobs).await;
    ctx.cleanup().await;
    let events = history.snapshot();
    let check = check(&events, gap_bound);
    if !check.violations.is_empty() {
        // The leadership timeline explains most violations; print it with the failure.
        eprintln!("chaos timeline (seed {}):\n{}", config.seed, timeline(&events, started));
    }
    (events, check)
}

/// Grants, revocations, crashes and faults of `events`, one a line, in ms since `t0`.
fn timeline(events: &[Event], t0: Instant) -> String {
    let ms = |t: &Instant| t.saturating_duration_since(t0).as_millis();
    let mut lines: Vec<(u128, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Granted { who, epoch, at } => Some((ms(at), format!("granted {who:?} epoch {epoch}"))),
            Event::Revoked { who, at } => Some((ms(at), format!("revoked {who:?}"))),
            Event::Crashed { who, at } => Some((ms(at), format!("crashed {who:?}"))),
            Event::LateDelivery {
                who,
                epoch,
                job,
                at,
                accepted,
            } => Some((
                ms(at),
                format!("late delivery of {who:?}'s epoch {epoch} write of job {job}: accepted {accepted}"),
            )),
            Event::Fault { what, start, healed } => {
                Some((ms(start), format!("fault `{what}` (healed at {} ms)", ms(healed))))
            }
            _ => None,
        })
        .collect();
    lines.sort_by_key(|(t, _)| *t);
    lines
        .into_iter()
        .map(|(t, l)| format!("{t:>8} ms  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The outcome of the first write `who` started at or after `t`.
fn first_write_after(events: &[Event], who: Incarnation, t: Instant) -> Option<Outcome> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Op {
                who: w, start, outcome, ..
            } if *w == who && *start >= t => Some((*start, outcome.clone())),
            _ => None,
        })
        .min_by_key(|(start, _)| *start)
        .map(|(_, o)| o)
}
