//! The operation history a chaos run records: every grant, revoke, crash, write and
//! recovery, with its leadership epoch, job, start/end time and outcome.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ha_core::Error;

/// One contender process incarnation: slot number and restart count.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Incarnation {
    /// Contender slot.
    pub slot: usize,
    /// How many times this slot was (re)started before this one.
    pub restart: u32,
}

/// What an operation did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Acknowledged by the backend.
    Ok,
    /// Fenced off: the writer was not leader.
    NotLeader,
    /// The reply was lost; it may or may not have been applied.
    Unknown,
    /// Failed cleanly for another reason.
    Failed(String),
}

impl Outcome {
    /// Classifies a result.
    pub fn of<T>(r: &Result<T, Error>) -> Self {
        match r {
            Ok(_) => Outcome::Ok,
            Err(Error::NotLeader { .. }) => Outcome::NotLeader,
            Err(Error::OutcomeUnknown { .. }) => Outcome::Unknown,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// The operation performed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OpKind {
    /// `get_and_increment`, with the value returned if acknowledged.
    Counter(Option<u64>),
    /// `add_checkpoint` of this id.
    Checkpoint(u64),
    /// `put_job_graph` (payload [`job_graph_payload`]).
    JobGraph,
}

/// A recorded event.
#[derive(Clone, Debug)]
pub enum Event {
    /// A contender was granted a term.
    Granted {
        /// Who.
        who: Incarnation,
        /// The term's epoch.
        epoch: u64,
        /// When.
        at: Instant,
    },
    /// A contender confirmed its term.
    Confirmed {
        /// Who.
        who: Incarnation,
        /// The term's epoch.
        epoch: u64,
    },
    /// A contender learned it lost its term.
    Revoked {
        /// Who.
        who: Incarnation,
        /// When.
        at: Instant,
    },
    /// A contender process crashed (was killed).
    Crashed {
        /// Who.
        who: Incarnation,
        /// When.
        at: Instant,
    },
    /// A fenced HA write.
    Op {
        /// Who.
        who: Incarnation,
        /// Epoch of the fence presented.
        epoch: u64,
        /// The job written (index among the run's jobs).
        job: u32,
        /// What.
        kind: OpKind,
        /// Invocation time.
        start: Instant,
        /// Completion time.
        end: Instant,
        /// Result.
        outcome: Outcome,
    },
    /// A job's recovery by a new leader: its checkpoints, then its job graph.
    Recovered {
        /// Who.
        who: Incarnation,
        /// Epoch of the recovering term.
        epoch: u64,
        /// The job recovered (index among the run's jobs).
        job: u32,
        /// Newest readable checkpoint id found.
        latest: Option<u64>,
        /// Whether a job graph was found (`None`: not read).
        graph: Option<bool>,
        /// Whether every recovered payload matched what was written for it.
        data_intact: bool,
        /// Invocation time.
        start: Instant,
        /// Completion time.
        end: Instant,
    },
    /// A contender acted as leader: it checked `has_leadership()` at `at` (taken just
    /// before the check) and it held. An external side effect would happen here; it
    /// must never overlap a newer term.
    Action {
        /// Who.
        who: Incarnation,
        /// Epoch of the term it acted in.
        epoch: u64,
        /// When (the time of the check).
        at: Instant,
    },
    /// A write the `stall-write` fault held on the wire past its writer's lease was
    /// delivered to the backend, which answered it (the writer had given up on it).
    LateDelivery {
        /// Who wrote it.
        who: Incarnation,
        /// Epoch of the fence it carried.
        epoch: u64,
        /// The job written.
        job: u32,
        /// When the held bytes were released to the backend (it cannot have been
        /// applied before).
        at: Instant,
        /// Whether the backend accepted it.
        accepted: bool,
    },
    /// A fault, from injection to heal.
    Fault {
        /// Description.
        what: String,
        /// Injected at.
        start: Instant,
        /// Healed at.
        healed: Instant,
    },
}

/// Called with every event as it is recorded.
pub(super) type Tee = Arc<dyn Fn(&Event) + Send + Sync>;

/// A shared, append-only history.
#[derive(Clone, Default)]
pub struct History {
    events: Arc<Mutex<Vec<Event>>>,
    tee: Option<Tee>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("tee", &self.tee.is_some()).finish()
    }
}

impl History {
    /// A history that also hands every event to `tee` as it is recorded (a child
    /// contender streams its events to the parent this way).
    pub(super) fn with_tee(tee: Tee) -> Self {
        Self {
            events: Arc::default(),
            tee: Some(tee),
        }
    }

    /// Appends `event`.
    pub fn record(&self, event: Event) {
        if let Some(tee) = &self.tee {
            tee(&event);
        }
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }

    /// The first `f(event)` that is `Some`, looking at the events so far in order.
    pub(super) fn find_map<R>(&self, f: impl FnMut(&Event) -> Option<R>) -> Option<R> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).iter().find_map(f)
    }

    /// A copy of every event so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Payload written for checkpoint `id`, so recovery can verify it.
pub fn checkpoint_payload(id: u64) -> bytes::Bytes {
    bytes::Bytes::from(format!("chaos checkpoint {id}"))
}

/// Payload written as the graph of job `job` by a term of `epoch`, so recovery can
/// verify it belongs to the job.
pub fn job_graph_payload(job: u32, epoch: u64) -> bytes::Bytes {
    bytes::Bytes::from(format!("chaos graph {job} epoch {epoch}"))
}

/// Whether `data` is a graph [`job_graph_payload`] wrote for `job`.
pub(super) fn is_job_graph_payload(data: &[u8], job: u32) -> bool {
    data.starts_with(format!("chaos graph {job} epoch ").as_bytes())
}
