//! A chaos contender slot: a process that leads, checkpoints and counts, and can be
//! killed, restarted, frozen and thawed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ha_core::{
    CompletedCheckpoint, ComponentId, Error, HaServices, LeaderElection, LeaderGrant, DEFAULT_ELECTION_GROUP,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::history::{checkpoint_payload, Event, History, Incarnation, OpKind, Outcome};
use super::jobs::{Job, Jobs};
use super::{ChaosTarget, Freeze, Link};
use crate::Ctx;

pub(super) const RETAINED: usize = 2;

fn component() -> ComponentId {
    ComponentId::new("dispatcher").unwrap_or_else(|_| ComponentId::for_job(&ha_core::JobId::random()))
}

/// What a leader does: how many jobs it runs and how long it pauses between writes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Work {
    /// Pause between a leader's writes.
    pub(super) interval: Duration,
    /// Number of jobs (at least one).
    pub(super) jobs: usize,
}

pub(super) struct Shared {
    leading: AtomicBool,
    frozen: watch::Sender<bool>,
    /// Set while the leader is parked by a freeze between its leadership check and
    /// its next write.
    parked_at_write: watch::Sender<bool>,
    /// Set by the `stall-write` fault; taken by the leader at its next write, which
    /// arms its link's write stall and sets `stall_armed`.
    stall_requested: AtomicBool,
    stall_armed: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    freeze: Mutex<Option<Box<dyn Freeze>>>,
}

/// One contender slot.
pub(super) struct Slot<T: ChaosTarget> {
    slot: usize,
    restarts: u32,
    target: Arc<T>,
    ctx: Ctx,
    history: History,
    work: Work,
    shared: Arc<Shared>,
    kill: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Shared {
    /// A contender's switches: not leading, not frozen, not stopped.
    pub(super) fn new() -> Self {
        Self {
            leading: AtomicBool::new(false),
            frozen: watch::channel(false).0,
            parked_at_write: watch::channel(false).0,
            stall_requested: AtomicBool::new(false),
            stall_armed: watch::channel(false).0,
            stop: watch::channel(false).0,
            freeze: Mutex::new(None),
        }
    }

    /// Asks the contender to stop gracefully.
    pub(super) fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// How often a leader acts (checks `has_leadership()` and records an action).
const ACTION_PERIOD: Duration = Duration::from_millis(5);

impl<T: ChaosTarget> Slot<T> {
    pub(super) fn start(slot: usize, target: Arc<T>, ctx: Ctx, history: History, work: Work) -> Self {
        let shared = Arc::new(Shared::new());
        let mut s = Self {
            slot,
            restarts: 0,
            target,
            ctx,
            history,
            work,
            shared,
            kill: None,
            task: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let who = Incarnation {
            slot: self.slot,
            restart: self.restarts,
        };
        let (kill_tx, kill_rx) = oneshot::channel();
        self.kill = Some(kill_tx);
        self.task = Some(tokio::spawn(incarnation(
            who,
            self.target.clone(),
            self.ctx.clone(),
            self.history.clone(),
            self.work,
            self.shared.clone(),
            kill_rx,
        )));
    }

    /// Kills the running incarnation (a crash: no resign, no close).
    pub(super) async fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.shared.frozen.send_replace(false);
        self.shared.parked_at_write.send_replace(false);
    }

    /// Starts a new incarnation after a kill.
    pub(super) fn restart(&mut self) {
        if self.task.is_none() {
            self.restarts += 1;
            self.spawn();
        }
    }

    /// The running (or last) incarnation of the slot.
    pub(super) fn incarnation(&self) -> Incarnation {
        Incarnation {
            slot: self.slot,
            restart: self.restarts,
        }
    }

    /// Whether the slot currently acts as leader.
    pub(super) fn is_leading(&self) -> bool {
        self.shared.leading.load(Ordering::SeqCst)
    }

    /// Freezes the contender: its backend link and its own loop stop. With
    /// `at_write`, a leader is first let run (at most `max_wait`) to the gap between its
    /// leadership check and its next write, and frozen there: a process stopped at the
    /// worst moment, which will send that write with its old fence once thawed.
    /// Returns whether the contender was frozen as leader in that gap.
    pub(super) async fn freeze(&self, at_write: bool, max_wait: Duration) -> bool {
        self.shared.frozen.send_replace(true);
        let mut parked = false;
        if at_write && self.is_leading() {
            let mut rx = self.shared.parked_at_write.subscribe();
            parked = tokio::time::timeout(max_wait, rx.wait_for(|p| *p)).await.is_ok();
        }
        if let Some(f) = self.shared.freeze.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f.freeze();
        }
        parked
    }

    /// Asks the leader to stall its link at its next write (the `stall-write` fault):
    /// right after its leadership check it arms the link to hold its next fenced write
    /// request, and carries on, so that write passes every local check and goes on
    /// the wire. Returns the link once armed (`None` if the slot does not lead, its
    /// link cannot stall writes, or it reached no write within `max_wait`).
    pub(super) async fn request_stall(&self, max_wait: Duration) -> Option<Arc<Link>> {
        if !self.is_leading() {
            return None;
        }
        let link = self
            .shared
            .freeze
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()?
            .link()?;
        if !link.can_stall_writes() {
            return None;
        }
        let mut armed = self.shared.stall_armed.subscribe();
        self.shared.stall_armed.send_replace(false);
        self.shared.stall_requested.store(true, Ordering::SeqCst);
        let ok = tokio::time::timeout(max_wait, armed.wait_for(|a| *a)).await.is_ok();
        self.shared.stall_requested.store(false, Ordering::SeqCst);
        ok.then_some(link)
    }

    /// Thaws a frozen contender.
    pub(super) fn thaw(&self) {
        if let Some(f) = self.shared.freeze.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f.thaw();
        }
        self.shared.frozen.send_replace(false);
    }

    /// Asks the contender to stop gracefully.
    pub(super) fn stop(&self) {
        self.thaw();
        self.shared.stop.send_replace(true);
    }

    /// Waits for the contender to end.
    pub(super) async fn join(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

async fn incarnation<T: ChaosTarget>(
    who: Incarnation,
    target: Arc<T>,
    ctx: Ctx,
    history: History,
    work: Work,
    shared: Arc<Shared>,
    kill: oneshot::Receiver<()>,
) {
    let (backend, freeze) = match target.connect_freezable(ctx.cluster_id()).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(?who, error = %e, "chaos contender could not connect");
            return;
        }
    };
    *shared.freeze.lock().unwrap_or_else(|e| e.into_inner()) = Some(freeze);
    let services = HaServices::new(backend, ctx.storage(), RETAINED);
    let crashed = tokio::select! {
        r = lead(who, &services, &history, work, &shared) => {
            if let Err(e) = r {
                tracing::debug!(?who, error = %e, "chaos contender ended");
            }
            false
        }
        _ = kill => true,
    };
    if crashed {
        history.record(Event::Crashed {
            who,
            at: Instant::now(),
        });
        *shared.freeze.lock().unwrap_or_else(|e| e.into_inner()) = None;
        target.crash(services).await;
    } else {
        let _ = services.close().await;
        *shared.freeze.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Clears the slot's `leading` flag when a term ends.
struct LeadingGuard<'a>(&'a Shared);

impl Drop for LeadingGuard<'_> {
    fn drop(&mut self) {
        self.0.leading.store(false, Ordering::SeqCst);
    }
}

async fn unfrozen(shared: &Shared) {
    let mut rx = shared.frozen.subscribe();
    let _ = rx.wait_for(|f| !f).await;
}

/// [`unfrozen`] at a point where the leader is about to write with its grant.
async fn unfrozen_at_write(shared: &Shared) {
    let mut rx = shared.frozen.subscribe();
    if *rx.borrow_and_update() {
        shared.parked_at_write.send_replace(true);
        let _ = rx.wait_for(|f| !f).await;
        shared.parked_at_write.send_replace(false);
    }
}

/// A requested `stall-write` lands here, between the leadership check and the write:
/// the link is armed to hold the next fenced write request, and the leader carries on.
fn arm_stall_at_write(shared: &Shared) {
    if !shared.stall_requested.swap(false, Ordering::SeqCst) {
        return;
    }
    let link = shared
        .freeze
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|f| f.link());
    if link.is_some_and(|l| l.stall_next_write()) {
        shared.stall_armed.send_replace(true);
    }
}

pub(super) async fn lead(
    who: Incarnation,
    services: &HaServices,
    history: &History,
    work: Work,
    shared: &Shared,
) -> ha_core::Result<()> {
    let election = services.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut e = election.register(component())?;
    let jobs = Jobs::open(services, work.jobs).await?;
    let mut stop = shared.stop.subscribe();
    loop {
        let grant = tokio::select! {
            g = e.granted() => g?,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        history.record(Event::Granted {
            who,
            epoch: grant.epoch.0,
            at: Instant::now(),
        });
        term(who, &mut e, &grant, &jobs, history, work.interval, shared).await;
        if *stop.borrow() {
            return Ok(());
        }
        // Wait until the service has noticed the loss before contending again.
        let _ = tokio::time::timeout(Duration::from_secs(30), e.revoked(&grant)).await;
        history.record(Event::Revoked {
            who,
            at: Instant::now(),
        });
    }
}

/// One leadership term: confirm, recover every job, then write until the term is lost.
async fn term(
    who: Incarnation,
    e: &mut LeaderElection,
    grant: &LeaderGrant,
    jobs: &Jobs,
    history: &History,
    interval: Duration,
    shared: &Shared,
) {
    let epoch = grant.epoch.0;
    let _leading = LeadingGuard(shared);
    unfrozen(shared).await;
    if e.confirm(grant, &format!("contender-{}-{}", who.slot, who.restart))
        .await
        .is_ok()
    {
        history.record(Event::Confirmed { who, epoch });
    }
    // Recovery is retried while the term lasts, as a job master does: storage may be
    // unavailable for a while, or refused as missing until it is back.
    let retry = || e.has_leadership(grant) && !*shared.stop.borrow();
    if !jobs.recover_all(who, &grant.fence, history, retry).await {
        return;
    }
    // The leader acts every few ms for as long as it has leadership, besides writing:
    // each action is checked against newer grants.
    let acting = async {
        loop {
            let at = Instant::now();
            if !e.has_leadership(grant) {
                return;
            }
            history.record(Event::Action { who, epoch, at });
            tokio::time::sleep(ACTION_PERIOD).await;
        }
    };
    // The term ends with the write loop (a leader frozen right before a write still
    // sends it once thawed); acting just stops when leadership does.
    let writing = write_loop(who, &*e, grant, jobs, history, interval, shared);
    tokio::select! {
        _ = async { acting.await; std::future::pending::<()>().await } => {}
        _ = writing => {}
    }
}

/// The leader's writes, one job after the other: the job's graph once per term, then
/// a checkpoint id from the job's counter and a checkpoint, until the term is lost or
/// the contender stops.
async fn write_loop(
    who: Incarnation,
    e: &LeaderElection,
    grant: &LeaderGrant,
    jobs: &Jobs,
    history: &History,
    interval: Duration,
    shared: &Shared,
) {
    let stop = shared.stop.subscribe();
    let mut graph_written = vec![false; jobs.jobs.len()];
    for job in jobs.jobs.iter().cycle() {
        if *stop.borrow() || !e.has_leadership(grant) {
            return;
        }
        shared.leading.store(true, Ordering::SeqCst);
        let written = &mut graph_written[job.index as usize];
        if write_job(who, grant, jobs, job, written, history, shared)
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// One round of writes to `job`; `Err` once fenced off.
async fn write_job(
    who: Incarnation,
    grant: &LeaderGrant,
    jobs: &Jobs,
    job: &Job,
    graph_written: &mut bool,
    history: &History,
    shared: &Shared,
) -> Result<(), ()> {
    let epoch = grant.epoch.0;
    // A freeze lands here, between the leadership check and the write: a thawed
    // process carries on with its old grant, as a real stopped process would.
    unfrozen_at_write(shared).await;
    arm_stall_at_write(shared);
    if !*graph_written {
        let graph = jobs.graph(job, epoch);
        let r = recorded(
            history,
            (who, epoch, job.index),
            |_| OpKind::JobGraph,
            jobs.graphs.put_job_graph(&grant.fence, &graph),
        )
        .await;
        fenced(&r)?;
        *graph_written = r.is_ok();
        unfrozen_at_write(shared).await;
    }
    let r = recorded(
        history,
        (who, epoch, job.index),
        |v| OpKind::Counter(v.copied()),
        job.counter.get_and_increment(&grant.fence),
    )
    .await;
    fenced(&r)?;
    if let Ok(id) = r {
        unfrozen_at_write(shared).await;
        let cp = CompletedCheckpoint {
            job_id: job.id.clone(),
            checkpoint_id: id,
            data: checkpoint_payload(id),
        };
        let r = recorded(
            history,
            (who, epoch, job.index),
            |_| OpKind::Checkpoint(id),
            job.store.add_checkpoint(&grant.fence, cp),
        )
        .await;
        fenced(&r)?;
    }
    Ok(())
}

/// `Err` if `r` was fenced off.
fn fenced<T>(r: &ha_core::Result<T>) -> Result<(), ()> {
    match r {
        Err(Error::NotLeader { .. }) => Err(()),
        _ => Ok(()),
    }
}

/// Runs `op` of `(who, epoch, job)` and records it, with its timing and outcome, in
/// `history`.
async fn recorded<T>(
    history: &History,
    (who, epoch, job): (Incarnation, u64, u32),
    kind: impl FnOnce(Option<&T>) -> OpKind,
    op: impl std::future::Future<Output = ha_core::Result<T>>,
) -> ha_core::Result<T> {
    let start = Instant::now();
    let r = op.await;
    let kind = kind(r.as_ref().ok());
    history.record(Event::Op {
        who,
        epoch,
        job,
        kind,
        start,
        end: Instant::now(),
        outcome: Outcome::of(&r),
    });
    r
}

/// After the run: a fresh process becomes leader and must recover, for every job, the
/// newest acknowledged checkpoint and the graph.
pub(super) async fn final_recovery(ctx: &Ctx, history: &History, jobs: usize) {
    let who = Incarnation {
        slot: usize::MAX,
        restart: 0,
    };
    // A failed final recovery is recorded as one that found nothing, which the checker
    // reports if anything had been acknowledged.
    let failed = || {
        let now = Instant::now();
        (0..jobs.max(1) as u32).for_each(|job| {
            history.record(Event::Recovered {
                who,
                epoch: 0,
                job,
                latest: None,
                graph: Some(false),
                data_intact: false,
                start: now,
                end: now,
            })
        });
    };
    let Ok(backend) = ctx.harness().connect(ctx.cluster_id()).await else {
        failed();
        return;
    };
    let services = HaServices::new(backend, ctx.storage(), RETAINED);
    let result: ha_core::Result<()> = async {
        let election = services.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
        let mut e = election.register(component())?;
        let open = Jobs::open(&services, jobs).await?;
        let grant = tokio::time::timeout(ctx.crash_timeout() * 4, e.granted())
            .await
            .map_err(|_| Error::Other {
                message: "final leader not granted".into(),
                source: None,
            })??;
        history.record(Event::Granted {
            who,
            epoch: grant.epoch.0,
            at: Instant::now(),
        });
        if !open.recover_all(who, &grant.fence, history, || false).await {
            return Err(Error::Other {
                message: "final recovery failed".into(),
                source: None,
            });
        }
        election.close().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "final recovery failed");
        failed();
    }
    let _ = services.close().await;
}
