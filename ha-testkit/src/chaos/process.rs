//! Process chaos: every contender is a child process, so faults are the real thing —
//! SIGKILL (no resign, no close; the session or lease ends by timeout), SIGSTOP past
//! the lease then SIGCONT (every timer of the process stops too), and SIGSTOP shorter
//! than the lease.
//!
//! The child is the backend's own test binary, re-executed with the single test
//! [`CHILD_TEST`] selected and [`CHILD_ENV`] set: that test calls [`child_main`] with
//! the backend's connect function (ha-testkit cannot link the backends, which
//! dev-depend on it). The child runs the same contender loop as the in-process chaos
//! (lead, recover, count, checkpoint, and act every few ms while
//! `has_leadership()` holds) and streams every event to the parent as one line on
//! stdout, timed by `CLOCK_MONOTONIC`, which is one clock for every process of the
//! machine (and the clock of `std::time::Instant` on Linux). The parent records the
//! lines in the [`History`], so the checker sees the writes *and the actions* of every
//! process on one time line. A line `stop` (or EOF) on the child's stdin stops it
//! gracefully.

use std::future::Future;
use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, HaBackend, HaServices, Result};
use nix::sys::signal::{kill, Signal};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::contender::{self, Shared};
use super::history::{Event, History, Incarnation, OpKind, Outcome};
use super::{ChaosConfig, ChaosReport, SplitMix64};
use crate::{Ctx, Harness};

/// Set in a child contender's environment (to `1`).
pub const CHILD_ENV: &str = "HA_CHAOS_CHILD";
/// Name of the test in the backend's test binary that calls [`child_main`].
pub const CHILD_TEST: &str = "chaos_child";

const LINE_PREFIX: &str = "@chaos ";

/// A backend whose contenders can run as child processes: its harness (for the final
/// recovery and cleanup, in the test process), how a child reaches the backend, and
/// the server-side faults it offers.
#[async_trait]
pub trait ProcessTarget: Send + Sync + 'static {
    /// The harness of the backend, used in the test process.
    fn harness(&self) -> Arc<dyn Harness>;

    /// How long a stopped leader keeps its term (session timeout / lease / TTL).
    fn lease(&self) -> Duration;

    /// What child contender `slot` needs to reach the backend, handed to the connect
    /// function given to [`child_main`] in the child: e.g. a connect string pinned to
    /// one member of the ensemble.
    fn child_spec(&self, slot: usize) -> String;

    /// Names of server-side faults this target can inject.
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

    /// A backend fault (one of [`backend_faults`](Self::backend_faults)) to inject
    /// during a hand-over: right after the leading contender is killed, while the
    /// others wait for its term to end (e.g. kill the leader of the ensemble).
    fn handover_fault(&self) -> Option<&'static str> {
        None
    }
}

/// Now by `CLOCK_MONOTONIC`, in nanoseconds: comparable across processes.
fn mono_ns() -> i128 {
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec()),
        Err(_) => 0,
    }
}

/// Converts between this process's [`Instant`]s and `CLOCK_MONOTONIC` nanoseconds.
#[derive(Clone, Copy)]
struct Clock {
    instant: Instant,
    ns: i128,
}

impl Clock {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            ns: mono_ns(),
        }
    }

    fn to_ns(self, t: Instant) -> i128 {
        match t.checked_duration_since(self.instant) {
            Some(d) => self.ns + d.as_nanos() as i128,
            None => self.ns - self.instant.duration_since(t).as_nanos() as i128,
        }
    }

    fn to_instant(self, ns: i128) -> Instant {
        let d = ns - self.ns;
        if d >= 0 {
            self.instant + Duration::from_nanos(d as u64)
        } else {
            self.instant
                .checked_sub(Duration::from_nanos((-d) as u64))
                .unwrap_or(self.instant)
        }
    }
}

/// One event as a line (without the prefix); `None` for events a child never sends.
fn encode(e: &Event, clock: Clock) -> Option<String> {
    let t = |i: &Instant| clock.to_ns(*i);
    Some(match e {
        Event::Granted { epoch, at, .. } => format!("granted {epoch} {}", t(at)),
        Event::Confirmed { epoch, .. } => format!("confirmed {epoch}"),
        Event::Revoked { at, .. } => format!("revoked {}", t(at)),
        Event::Action { epoch, at, .. } => format!("action {epoch} {}", t(at)),
        Event::Op {
            epoch,
            job,
            kind,
            start,
            end,
            outcome,
            ..
        } => {
            let (k, v) = match kind {
                OpKind::Counter(v) => ("counter", v.map_or("-".to_string(), |v| v.to_string())),
                OpKind::Checkpoint(id) => ("checkpoint", id.to_string()),
                OpKind::JobGraph => ("graph", "-".to_string()),
            };
            let o = match outcome {
                Outcome::Ok => "ok".to_string(),
                Outcome::NotLeader => "notleader".to_string(),
                Outcome::Unknown => "unknown".to_string(),
                Outcome::Failed(m) => format!("failed {}", m.replace('\n', " ")),
            };
            format!("op {job} {epoch} {} {} {k} {v} {o}", t(start), t(end))
        }
        Event::Recovered {
            epoch,
            job,
            latest,
            graph,
            data_intact,
            start,
            end,
            ..
        } => format!(
            "recovered {job} {epoch} {} {} {} {} {}",
            latest.map_or("-".to_string(), |l| l.to_string()),
            graph.map_or("-", |g| if g { "1" } else { "0" }),
            u8::from(*data_intact),
            t(start),
            t(end)
        ),
        Event::Crashed { .. } | Event::Fault { .. } | Event::LateDelivery { .. } => return None,
    })
}

/// Parses a line of child `who` (without the prefix).
fn decode(line: &str, who: Incarnation, clock: Clock) -> Option<Event> {
    let mut f = line.split(' ');
    let kind = f.next()?;
    let mut num = || f.next().and_then(|x| x.parse::<i128>().ok());
    let at = |ns: i128| clock.to_instant(ns);
    Some(match kind {
        "granted" => Event::Granted {
            who,
            epoch: num()? as u64,
            at: at(num()?),
        },
        "confirmed" => Event::Confirmed {
            who,
            epoch: num()? as u64,
        },
        "revoked" => Event::Revoked { who, at: at(num()?) },
        "action" => Event::Action {
            who,
            epoch: num()? as u64,
            at: at(num()?),
        },
        "op" => {
            let parts: Vec<&str> = line.splitn(9, ' ').collect();
            let [_, job, epoch, start, end, k, v, o, rest @ ..] = parts.as_slice() else {
                return None;
            };
            let v = v.parse::<u64>().ok();
            let kind = match *k {
                "counter" => OpKind::Counter(v),
                "graph" => OpKind::JobGraph,
                _ => OpKind::Checkpoint(v?),
            };
            let outcome = match *o {
                "ok" => Outcome::Ok,
                "notleader" => Outcome::NotLeader,
                "unknown" => Outcome::Unknown,
                _ => Outcome::Failed(rest.first().unwrap_or(&"").to_string()),
            };
            Event::Op {
                who,
                epoch: epoch.parse().ok()?,
                job: job.parse().ok()?,
                kind,
                start: at(start.parse().ok()?),
                end: at(end.parse().ok()?),
                outcome,
            }
        }
        "recovered" => {
            let parts: Vec<&str> = line.split(' ').collect();
            let [_, job, epoch, latest, graph, intact, start, end] = parts.as_slice() else {
                return None;
            };
            Event::Recovered {
                who,
                epoch: epoch.parse().ok()?,
                job: job.parse().ok()?,
                latest: latest.parse().ok(),
                graph: match *graph {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                },
                data_intact: *intact == "1",
                start: at(start.parse().ok()?),
                end: at(end.parse().ok()?),
            }
        }
        _ => return None,
    })
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// The body of the child contender test [`CHILD_TEST`]: returns at once unless this
/// process was started as a child by [`run_processes`]; then connects with
/// `connect(spec, cluster_id)` and contends until told to stop (or killed).
pub fn child_main<F, Fut>(connect: F)
where
    F: FnOnce(String, ClusterId) -> Fut,
    Fut: Future<Output = Result<Arc<dyn HaBackend>>>,
{
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    runtime.block_on(async move {
        let clock = Clock::now();
        let who = Incarnation {
            slot: env("HA_CHAOS_SLOT").parse().unwrap_or(0),
            restart: env("HA_CHAOS_RESTART").parse().unwrap_or(0),
        };
        let cluster = ClusterId::new(env("HA_CHAOS_CLUSTER")).expect("cluster id of the run");
        let work = contender::Work {
            interval: Duration::from_millis(env("HA_CHAOS_INTERVAL_MS").parse().unwrap_or(10)),
            jobs: env("HA_CHAOS_JOBS").parse().unwrap_or(1),
        };
        let history = History::with_tee(Arc::new(move |e: &Event| {
            if let Some(line) = encode(e, clock) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{LINE_PREFIX}{line}");
                let _ = out.flush();
            }
        }));
        let backend = match connect(env("HA_CHAOS_SPEC"), cluster.clone()).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("chaos child {who:?}: connect failed: {e}");
                return;
            }
        };
        let storage =
            StateStorage::open(&env("HA_CHAOS_STORAGE"), &cluster, &Default::default()).expect("payload storage");
        let services = HaServices::new(backend, storage, contender::RETAINED);
        let shared = Arc::new(Shared::new());
        let stopper = shared.clone();
        std::thread::spawn(move || {
            for l in std::io::stdin().lines() {
                match l {
                    Ok(l) if l.trim() != "stop" => {}
                    _ => break,
                }
            }
            stopper.stop();
        });
        if let Err(e) = contender::lead(who, &services, &history, work, &shared).await {
            eprintln!("chaos child {who:?}: contender ended: {e}");
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), services.close()).await;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{LINE_PREFIX}done");
        let _ = out.flush();
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// One contender slot run as a child process.
struct ProcSlot {
    slot: usize,
    restarts: u32,
    child: Option<(Child, ChildStdin)>,
    leading: Arc<AtomicBool>,
}

struct Spawn<'a> {
    spec: String,
    cluster: &'a ClusterId,
    storage_url: &'a str,
    interval: Duration,
    jobs: usize,
    history: &'a History,
    clock: Clock,
}

impl ProcSlot {
    fn who(&self) -> Incarnation {
        Incarnation {
            slot: self.slot,
            restart: self.restarts,
        }
    }

    fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(|(c, _)| c.id())
            .map(|id| Pid::from_raw(id as i32))
    }

    fn start(&mut self, s: &Spawn<'_>) {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, "1")
            .env("HA_CHAOS_SLOT", self.slot.to_string())
            .env("HA_CHAOS_RESTART", self.restarts.to_string())
            .env("HA_CHAOS_CLUSTER", s.cluster.to_string())
            .env("HA_CHAOS_STORAGE", s.storage_url)
            .env("HA_CHAOS_SPEC", &s.spec)
            .env("HA_CHAOS_INTERVAL_MS", s.interval.as_millis().to_string())
            .env("HA_CHAOS_JOBS", s.jobs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start a chaos contender process");
        let stdin = child.stdin.take().expect("child stdin");
        let stdout = child.stdout.take().expect("child stdout");
        let (who, history, clock, leading) = (self.who(), s.history.clone(), s.clock, self.leading.clone());
        leading.store(false, Ordering::SeqCst);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let debug = std::env::var_os("HA_CHAOS_DEBUG").is_some();
            while let Ok(Some(l)) = lines.next_line().await {
                if debug {
                    eprintln!("{who:?}: {l}");
                }
                // The test harness may have written to the same line first.
                let Some(i) = l.find(LINE_PREFIX) else {
                    continue;
                };
                let l = &l[i + LINE_PREFIX.len()..];
                let Some(e) = decode(l, who, clock) else {
                    continue;
                };
                match &e {
                    Event::Granted { .. } => leading.store(true, Ordering::SeqCst),
                    Event::Revoked { .. } => leading.store(false, Ordering::SeqCst),
                    _ => {}
                }
                history.record(e);
            }
            leading.store(false, Ordering::SeqCst);
        });
        self.child = Some((child, stdin));
    }

    fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, sig);
        }
    }

    /// SIGKILL; records the crash.
    async fn kill(&mut self, history: &History) {
        if let Some((mut child, _)) = self.child.take() {
            let at = Instant::now();
            let _ = child.start_kill();
            let _ = child.wait().await;
            history.record(Event::Crashed { who: self.who(), at });
        }
        self.leading.store(false, Ordering::SeqCst);
    }

    /// Graceful stop (`stop` on stdin), SIGKILL if it takes too long.
    async fn stop(&mut self) {
        self.signal(Signal::SIGCONT);
        if let Some((mut child, mut stdin)) = self.child.take() {
            let _ = stdin.write_all(b"stop\n").await;
            let _ = stdin.flush().await;
            drop(stdin);
            if tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

/// Runs a process-chaos experiment: `config.contenders` child contenders under
/// SIGKILL, long and short SIGSTOP and the target's backend faults. Bounded: every
/// fault heals by itself, and the run ends after `config.faults` faults.
pub async fn run_processes<T: ProcessTarget>(target: Arc<T>, config: ChaosConfig) -> ChaosReport {
    let started = Instant::now();
    let ctx = Ctx::new(target.harness(), "pchaos");
    let history = History::default();
    let mut rng = SplitMix64::new(config.seed);
    let clock = Clock::now();
    let spawn = |slot: usize| Spawn {
        spec: target.child_spec(slot),
        cluster: ctx.cluster_id(),
        storage_url: ctx.storage_url(),
        interval: config.write_interval,
        jobs: config.jobs,
        history: &history,
        clock,
    };
    let mut slots: Vec<ProcSlot> = (0..config.contenders)
        .map(|slot| ProcSlot {
            slot,
            restarts: 0,
            child: None,
            leading: Arc::new(AtomicBool::new(false)),
        })
        .collect();
    for s in &mut slots {
        s.start(&spawn(s.slot));
    }
    let lease = target.lease();
    let gap_bound = ctx.crash_timeout() + Duration::from_secs(1);
    // The children need a moment to start and elect a first leader.
    let deadline = Instant::now() + gap_bound + Duration::from_secs(10);
    while !slots.iter().any(|s| s.leading.load(Ordering::SeqCst)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(config.settle).await;
    let backend_faults = target.backend_faults();
    let mut faults = Vec::new();
    for _ in 0..config.faults {
        let choice = rng.below(3 + backend_faults.len() as u64) as usize;
        let leader = slots.iter().position(|s| s.leading.load(Ordering::SeqCst));
        let slot = match leader {
            Some(l) if rng.below(2) == 0 => l,
            _ => rng.below(slots.len() as u64) as usize,
        };
        let role = if Some(slot) == leader { " (leader)" } else { "" };
        let start = Instant::now();
        let what = match choice {
            0 => {
                slots[slot].kill(&history).await;
                let during_handover = match target.handover_fault() {
                    Some(name) if Some(slot) == leader && rng.below(2) == 0 => Some(name),
                    _ => None,
                };
                if let Some(name) = during_handover {
                    tokio::time::sleep(Duration::from_millis(rng.below(lease.as_millis() as u64 / 2 + 1))).await;
                    if let Err(e) = target.inject_backend_fault(name, &mut rng).await {
                        tracing::warn!(fault = name, error = %e, "backend fault failed");
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
                }
                slots[slot].restarts += 1;
                let s = spawn(slot);
                slots[slot].start(&s);
                match during_handover {
                    Some(name) => format!("SIGKILL contender {slot}{role}, then {name} during the hand-over"),
                    None => format!("SIGKILL contender {slot}{role}"),
                }
            }
            1 => {
                let hold = lease + lease / 2 + Duration::from_millis(rng.below(lease.as_millis() as u64 / 2 + 1));
                slots[slot].signal(Signal::SIGSTOP);
                tokio::time::sleep(hold).await;
                slots[slot].signal(Signal::SIGCONT);
                format!("SIGSTOP contender {slot}{role} past the lease, {} ms", hold.as_millis())
            }
            2 => {
                let hold = lease / 4 + Duration::from_millis(rng.below(lease.as_millis() as u64 / 4 + 1));
                slots[slot].signal(Signal::SIGSTOP);
                tokio::time::sleep(hold).await;
                slots[slot].signal(Signal::SIGCONT);
                format!(
                    "SIGSTOP contender {slot}{role} within the lease, {} ms",
                    hold.as_millis()
                )
            }
            n => {
                let name = backend_faults[n - 3];
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
        tokio::time::sleep(config.settle).await;
        let deadline = Instant::now() + gap_bound;
        while !slots.iter().any(|s| s.leading.load(Ordering::SeqCst)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(ctx.crash_timeout()).await;
    for s in &mut slots {
        s.stop().await;
    }
    // Let the readers drain the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, check) = super::finish(&ctx, &history, gap_bound, &config, started).await;
    ChaosReport {
        seed: config.seed,
        jobs: config.jobs,
        faults,
        stale_leader_freezes: 0,
        stale_writes: Vec::new(),
        stalled_writes: Vec::new(),
        check,
        elapsed: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_the_line_protocol() {
        let clock = Clock::now();
        let who = Incarnation { slot: 2, restart: 1 };
        let t = Instant::now() + Duration::from_millis(3);
        let events = vec![
            Event::Granted { who, epoch: 7, at: t },
            Event::Action { who, epoch: 7, at: t },
            Event::Op {
                who,
                epoch: 7,
                job: 3,
                kind: OpKind::Counter(Some(4)),
                start: t,
                end: t,
                outcome: Outcome::Failed("storage unavailable: x".into()),
            },
            Event::Op {
                who,
                epoch: 7,
                job: 0,
                kind: OpKind::JobGraph,
                start: t,
                end: t,
                outcome: Outcome::Ok,
            },
            Event::Recovered {
                who,
                epoch: 7,
                job: 49,
                latest: None,
                graph: Some(true),
                data_intact: true,
                start: t,
                end: t,
            },
        ];
        for e in events {
            let line = encode(&e, clock).expect("encodable");
            let back = decode(&line, who, clock).expect("decodable");
            assert_eq!(format!("{back:?}"), format!("{e:?}"), "{line}");
        }
    }

    #[test]
    fn the_monotonic_clock_is_the_instant_clock() {
        let clock = Clock::now();
        let later = Clock::now();
        let d = clock.to_instant(later.ns).saturating_duration_since(later.instant);
        assert!(d < Duration::from_millis(50), "{d:?}");
    }
}
