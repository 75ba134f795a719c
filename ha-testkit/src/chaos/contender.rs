//! A chaos contender slot: a process that leads, checkpoints and counts, and can be
//! killed, restarted, frozen and thawed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ha_core::{
    CheckpointIdCounter, CompletedCheckpoint, CompletedCheckpointStore, ComponentId, Error, HaServices, JobId,
    LeaderElection, LeaderGrant, DEFAULT_ELECTION_GROUP,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::history::{checkpoint_payload, Event, History, Incarnation, OpKind, Outcome};
use super::{ChaosTarget, Freeze};
use crate::Ctx;

pub(super) const RETAINED: usize = 2;

fn job() -> JobId {
    JobId::new("chaos-job").unwrap_or_else(|_| JobId::random())
}

fn component() -> ComponentId {
    ComponentId::new("dispatcher").unwrap_or_else(|_| ComponentId::for_job(&job()))
}

pub(super) struct Shared {
    leading: AtomicBool,
    frozen: watch::Sender<bool>,
    /// Set while the leader is parked by a freeze between its leadership check and
    /// its next write.
    parked_at_write: watch::Sender<bool>,
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
    interval: Duration,
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
    pub(super) fn start(slot: usize, target: Arc<T>, ctx: Ctx, history: History, interval: Duration) -> Self {
        let shared = Arc::new(Shared::new());
        let mut s = Self {
            slot,
            restarts: 0,
            target,
            ctx,
            history,
            interval,
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
            self.interval,
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
    interval: Duration,
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
        r = lead(who, &services, &history, interval, &shared) => {
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

pub(super) async fn lead(
    who: Incarnation,
    services: &HaServices,
    history: &History,
    interval: Duration,
    shared: &Shared,
) -> ha_core::Result<()> {
    let election = services.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut e = election.register(component())?;
    let store = services.completed_checkpoint_store(&job()).await?;
    let counter = services.checkpoint_id_counter(&job()).await?;
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
        term(who, &mut e, &grant, &store, &counter, history, interval, shared).await;
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

/// One leadership term: confirm, recover, then write until the term is lost.
#[allow(clippy::too_many_arguments)]
async fn term(
    who: Incarnation,
    e: &mut LeaderElection,
    grant: &LeaderGrant,
    store: &CompletedCheckpointStore,
    counter: &CheckpointIdCounter,
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
    let recovered = loop {
        let start = Instant::now();
        match store.recover(&grant.fence).await {
            Err(Error::NotLeader { .. }) => return,
            Err(err) if e.has_leadership(grant) && !*shared.stop.borrow() => {
                tracing::debug!(?who, error = %err, "recovery failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => break (start, r),
        }
    };
    let (start, recovered) = recovered;
    match recovered {
        Ok(rec) => {
            let data_intact = rec
                .checkpoints
                .iter()
                .all(|c| c.data == checkpoint_payload(c.checkpoint_id));
            let latest = rec.latest().map(|c| c.checkpoint_id);
            history.record(Event::Recovered {
                who,
                epoch,
                latest,
                data_intact,
                start,
                end: Instant::now(),
            });
        }
        Err(Error::NotLeader { .. }) => return,
        Err(err) => {
            tracing::debug!(?who, error = %err, "recovery failed");
            return;
        }
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
    let writing = write_loop(who, &*e, grant, store, counter, history, interval, shared);
    tokio::select! {
        _ = async { acting.await; std::future::pending::<()>().await } => {}
        _ = writing => {}
    }
}

/// The leader's writes: a checkpoint id from the counter, then a checkpoint, until the
/// term is lost or the contender stops.
#[allow(clippy::too_many_arguments)]
async fn write_loop(
    who: Incarnation,
    e: &LeaderElection,
    grant: &LeaderGrant,
    store: &CompletedCheckpointStore,
    counter: &CheckpointIdCounter,
    history: &History,
    interval: Duration,
    shared: &Shared,
) {
    let epoch = grant.epoch.0;
    let stop = shared.stop.subscribe();
    while !*stop.borrow() {
        if !e.has_leadership(grant) {
            return;
        }
        shared.leading.store(true, Ordering::SeqCst);
        // A freeze lands here, between the leadership check and the write: a thawed
        // process carries on with its old grant, as a real stopped process would.
        unfrozen_at_write(shared).await;
        let r = recorded(
            history,
            who,
            epoch,
            |v| OpKind::Counter(v.copied()),
            counter.get_and_increment(&grant.fence),
        )
        .await;
        if matches!(r, Err(Error::NotLeader { .. })) {
            return;
        }
        if let Ok(id) = r {
            unfrozen_at_write(shared).await;
            let cp = CompletedCheckpoint {
                job_id: job(),
                checkpoint_id: id,
                data: checkpoint_payload(id),
            };
            let r = recorded(
                history,
                who,
                epoch,
                |_| OpKind::Checkpoint(id),
                store.add_checkpoint(&grant.fence, cp),
            )
            .await;
            if matches!(r, Err(Error::NotLeader { .. })) {
                return;
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Runs `op` and records it, with its timing and outcome, in `history`.
async fn recorded<T>(
    history: &History,
    who: Incarnation,
    epoch: u64,
    kind: impl FnOnce(Option<&T>) -> OpKind,
    op: impl std::future::Future<Output = ha_core::Result<T>>,
) -> ha_core::Result<T> {
    let start = Instant::now();
    let r = op.await;
    let kind = kind(r.as_ref().ok());
    history.record(Event::Op {
        who,
        epoch,
        kind,
        start,
        end: Instant::now(),
        outcome: Outcome::of(&r),
    });
    r
}

/// After the run: a fresh process becomes leader and must recover the newest
/// acknowledged checkpoint.
pub(super) async fn final_recovery(ctx: &Ctx, history: &History) {
    let who = Incarnation {
        slot: usize::MAX,
        restart: 0,
    };
    // A failed final recovery is recorded as one that found nothing, which the checker
    // reports if anything had been acknowledged.
    let failed = || {
        let now = Instant::now();
        Event::Recovered {
            who,
            epoch: 0,
            latest: None,
            data_intact: false,
            start: now,
            end: now,
        }
    };
    let Ok(backend) = ctx.harness().connect(ctx.cluster_id()).await else {
        history.record(failed());
        return;
    };
    let services = HaServices::new(backend, ctx.storage(), RETAINED);
    let result: ha_core::Result<()> = async {
        let election = services.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
        let mut e = election.register(component())?;
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
        let start = Instant::now();
        let rec = services
            .completed_checkpoint_store(&job())
            .await?
            .recover(&grant.fence)
            .await?;
        let data_intact = rec
            .checkpoints
            .iter()
            .all(|c| c.data == checkpoint_payload(c.checkpoint_id));
        history.record(Event::Recovered {
            who,
            epoch: grant.epoch.0,
            latest: rec.latest().map(|c| c.checkpoint_id),
            data_intact,
            start,
            end: Instant::now(),
        });
        election.close().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "final recovery failed");
        history.record(failed());
    }
    let _ = services.close().await;
}
