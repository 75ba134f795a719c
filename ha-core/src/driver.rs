//! The backend seams: the small traits a backend implements, and how to write one.
//!
//! A backend (ZooKeeper, etcd, Kubernetes, embedded, or a custom one) implements
//! [`HaBackend`] and the three driver traits it hands out ([`LeaderElectionDriver`],
//! [`StateHandleStore`], [`CheckpointIdCounterDriver`]), plus a raw leader-record
//! stream. Everything that must behave the same on every backend lives once in the
//! generic services of this crate and is *not* part of these traits: one grant per
//! term and silence after resign ([`TermSink`]), leadership bounded by the clock
//! ([`Validity`]), confirmation, drift repair of published leader records, decoding
//! and de-duplication for retrieval, retention, subsumption, recovery order,
//! quarantine, idempotent retries, the counter's CAS loop and its monotonicity, and
//! cleanup of payloads.
//!
//! # Contract shared by all drivers
//! - Every mutating call that takes a [`Fence`] is applied only if the fence's term
//!   still holds leadership, checked by the backend *atomically in the same operation*
//!   as the write. Otherwise it fails with [`Error::NotLeader`](crate::Error::NotLeader)
//!   and changes nothing.
//! - A call whose request may have reached the backend but whose reply was lost fails
//!   with [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown), never with a plain
//!   failure ([`kit::Delivery`] and [`kit::bounded`] classify timeouts that way).
//! - A backend instance is one "process": one session/lease. Locks and candidacies it
//!   creates live exactly as long as that session.
//!
//! # Writing your own backend
//! 1. **Session.** `connect` opens one session (lease, ZooKeeper session, identity) per
//!    instance; `close` resigns every candidacy (keep them in a [`Candidacies`]
//!    registry), releases locks and ends the session; dropping an instance without
//!    `close` must behave as a crash (the session ends only by timeout).
//! 2. **Election.** [`HaBackend::election_driver`] starts one candidacy of an
//!    [`ElectionGroup`] (already validated) and reports through the given
//!    [`TermSink`]: `grant(fence, validity)` when it wins, `revoke()` when the term is
//!    lost or can no longer be proven, `fail(error)` for errors it cannot recover from.
//!    The sink drops what would break the event order, so the backend need not track
//!    it. The fence's `epoch` must grow with every new term; its `token` identifies the
//!    term for the backend's own fencing check. The [`Validity`] is the local monotonic
//!    time until which no other contender can be granted: start of the last confirmed
//!    renewal + lease − a margin, extended with [`Validity::extend`] after each
//!    successful renewal (or [`Validity::unbounded`] if the backend has no lease and
//!    refuses every stale write server-side). `publish`/`delete_leader_information`
//!    write the raw record fenced; `resign` leaves at once so another contender is
//!    granted without waiting for a lease.
//!    [`participants`](HaBackend::participants) lists the group's candidacies (instance
//!    id, which one leads) without contending; [`LeaderElectionDriver::hand_off`] ends
//!    the term in favour of a named contender, fenced like a write (ha-core decides
//!    when and to whom; the backend only makes the move atomic).
//! 3. **Retrieval.** [`HaBackend::watch_leader_record`] returns the raw record as a
//!    [`LeaderRecordStream`] (current value first, `None` when absent, then every
//!    change); [`leader_record_stream`] builds one from a watch task.
//! 4. **Stores.** [`StateHandleStore`] (one per [`StoreNamespace`]) and
//!    [`CheckpointIdCounterDriver`] (store the value with [`kit::encode_counter`]) as
//!    their docs say, every write fenced atomically.
//! 5. **Registration.** A [`BackendProvider`](crate::BackendProvider) names the mode
//!    string and its `high-availability.<mode>.*` keys;
//!    [`BackendRegistry::register_global`](crate::BackendRegistry::register_global)
//!    makes `high-availability.type: <mode>` choose it.
//! 6. **Proof.** Implement `ha_testkit::Harness` for it and run
//!    `ha_testkit::conformance_suite!(MyHarness::new())`: every case of the suite
//!    runs against it. The workspace's `examples/custom_backend` is a complete,
//!    passing example (a backend that wraps another one).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::ids::{ClusterId, ComponentId, ElectionGroup, Fence, JobId, LeaderInformation, Version, Versioned};

pub mod kit;
mod record;
mod term;

pub use record::{leader_record_stream, LeaderRecordStream, RecordSender};
pub use term::{Candidacies, TermSink, Validity};

/// What an election driver tells its service, through its [`TermSink`].
///
/// # Contract (enforced by [`TermSink`])
/// - `Granted` and `Revoked` alternate, starting with `Granted`: at most one grant per
///   term, a revoke only after a grant.
/// - A backend revokes before any other contender can be granted, as far as its clock
///   and protocol allow; the fence's [`Validity`] states that bound in local time, and
///   the services stop acting at it even if the revoke is late (a paused process).
/// - `Error` ends the current term too.
/// - After [`LeaderElectionDriver::resign`] (or the sink's `resign`) nothing follows.
///
/// Published leader records are not events: the service watches them through
/// [`HaBackend::watch_leader_record`] and repairs drift itself.
#[derive(Debug)]
pub enum ElectionEvent {
    /// This instance won the election. Every HA write of the term presents `fence`
    /// (which carries the term's [`Validity`]).
    Granted(Fence),
    /// Leadership is lost or can no longer be proven.
    Revoked,
    /// An error the driver cannot recover from by itself; the term is over and the
    /// service reports it.
    Error(crate::Error),
}

/// One candidacy in one election group.
///
/// Created by [`HaBackend::election_driver`]; it starts contending at once and reports
/// through the [`TermSink`] it was given. Dropping it without [`resign`] behaves as a
/// crash: leadership passes on only when the session/lease runs out.
///
/// [`resign`]: LeaderElectionDriver::resign
#[async_trait]
pub trait LeaderElectionDriver: Send + Sync {
    /// Publishes `info` for `component`, fenced by `fence`.
    async fn publish_leader_information(
        &self,
        fence: &Fence,
        component: &ComponentId,
        info: &LeaderInformation,
    ) -> Result<()>;

    /// Deletes the published information of `component`, fenced by `fence`.
    async fn delete_leader_information(&self, fence: &Fence, component: &ComponentId) -> Result<()>;

    /// Leaves the election now (giving up leadership if held) so that another
    /// contender is granted without waiting for a lease to expire. No events follow.
    async fn resign(&self) -> Result<()>;

    /// What a closing service does with its term `fence`: deletes the published
    /// information of `components` (each delete fenced by `fence`, as
    /// [`delete_leader_information`](Self::delete_leader_information)), then leaves the
    /// election as [`resign`](Self::resign) does. A delete that fails is logged, not
    /// returned (the next leader overwrites the record); the result is the resign's.
    ///
    /// A backend may do the deletes and the resign in one atomic request (fenced: no
    /// record is deleted once the term is over); the default does them one after the
    /// other.
    async fn delete_leader_information_and_resign(&self, fence: &Fence, components: &[ComponentId]) -> Result<()> {
        for component in components {
            if let Err(e) = self.delete_leader_information(fence, component).await {
                tracing::debug!(%component, error = %e, "could not delete leader information on close");
            }
        }
        self.resign().await
    }

    /// Hands the term `fence` to the contender `target` (an instance id listed by
    /// [`HaBackend::participants`] for this group).
    ///
    /// # Contract
    /// - Applied only if `fence`'s term still leads, checked atomically with the move
    ///   ([`Error::NotLeader`](crate::Error::NotLeader) otherwise); a `target` that is
    ///   not a contender of the group is [`Error::NotFound`](crate::Error::NotFound),
    ///   and nothing changes.
    /// - Once it returns `Ok`, every write fenced by `fence` is refused, and `target` is
    ///   granted next (a higher epoch) without waiting for a lease; no other contender
    ///   is granted in between while `target` lives.
    /// - This candidacy stays in the election (behind `target`): it is revoked through
    ///   its sink and contends again.
    async fn hand_off(&self, fence: &Fence, target: &str) -> Result<()>;
}

/// One contender of an election group, as [`HaBackend::participants`] lists it
/// (Curator's `Participant`).
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Participant {
    /// The contender's backend instance id ([`HaBackend::instance_id`]): the name a
    /// hand-off targets.
    pub id: String,
    /// Whether this contender holds the group's leadership.
    pub leader: bool,
}

/// Which collection of state handles a [`StateHandleStore`] holds.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum StoreNamespace {
    /// Job graphs of the cluster, one entry per job (`jobGraph-<job>` style names).
    JobGraphs,
    /// Completed checkpoints of one job (`checkpointID-<%019d>` names).
    Checkpoints(JobId),
    /// Job results (dirty/clean entries), one per job.
    JobResults,
}

impl fmt::Display for StoreNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreNamespace::JobGraphs => f.write_str("jobgraphs"),
            StoreNamespace::Checkpoints(job) => write!(f, "jobs/{job}/checkpoints"),
            StoreNamespace::JobResults => f.write_str("job-results"),
        }
    }
}

/// A store of small pointers (versioned byte values) with multi-owner locks.
///
/// The lock owner is the backend instance that made the store. Locks mark an entry as
/// in use; an entry is removed only when no owner holds a lock on it.
///
/// # Contract
/// - `add_and_lock` creates the entry iff absent (else `AlreadyExists`), with a lock of
///   this owner, fenced.
/// - `replace` is a compare-and-set on the version returned by the last read or write
///   (`VersionConflict` on mismatch, `NotFound` if absent), fenced. Locks stay.
/// - `release_and_try_remove` drops this owner's lock, then deletes the entry if no
///   lock remains; `Ok(true)` if the entry is gone (or was never there), `Ok(false)`
///   if another owner still holds it. The delete is fenced.
/// - `list` returns names in ascending byte order.
#[async_trait]
pub trait StateHandleStore: Send + Sync {
    /// Creates `name` with `value`, locked by this owner, iff it does not exist.
    async fn add_and_lock(&self, fence: &Fence, name: &str, value: Bytes) -> Result<Version>;

    /// Replaces `name` iff its version is `expected`.
    async fn replace(&self, fence: &Fence, name: &str, expected: Version, value: Bytes) -> Result<Version>;

    /// Reads `name`; `None` if absent.
    async fn get(&self, name: &str) -> Result<Option<Versioned<Bytes>>>;

    /// Locks `name` for this owner (idempotent) and reads it; `NotFound` if absent.
    async fn get_and_lock(&self, name: &str) -> Result<Versioned<Bytes>>;

    /// All entry names, ascending.
    async fn list(&self) -> Result<Vec<String>>;

    /// Drops this owner's lock on `name`, if held. Not fenced: it only gives up a claim.
    async fn release(&self, name: &str) -> Result<()>;

    /// Drops this owner's lock and removes `name` if no lock remains.
    async fn release_and_try_remove(&self, fence: &Fence, name: &str) -> Result<bool>;

    /// Owners that currently hold a lock on `name`.
    async fn lock_owners(&self, name: &str) -> Result<Vec<String>>;
}

/// Storage of one job's 64-bit checkpoint-id counter. The generic
/// [`CheckpointIdCounter`](crate::CheckpointIdCounter) runs the CAS loop on top.
#[async_trait]
pub trait CheckpointIdCounterDriver: Send + Sync {
    /// The stored value and its version; `None` if the counter was never written.
    async fn read(&self) -> Result<Option<Versioned<u64>>>;

    /// Stores `value` iff the stored version is `expected` (`None`: iff absent).
    /// `VersionConflict` otherwise. Fenced.
    async fn compare_and_set(&self, fence: &Fence, expected: Option<Version>, value: u64) -> Result<Version>;

    /// Removes the counter. Fenced.
    async fn remove(&self, fence: &Fence) -> Result<()>;
}

/// One connected backend instance for one cluster-id: one session (ZooKeeper
/// session, etcd lease, Kubernetes identity) from which all drivers are built.
#[async_trait]
pub trait HaBackend: Send + Sync + fmt::Debug {
    /// The cluster this instance serves.
    fn cluster_id(&self) -> &ClusterId;

    /// This instance's identity as contender and lock owner (unique per instance).
    fn instance_id(&self) -> &str;

    /// Joins the election of `group`; terms are reported to `sink`. One driver per
    /// group carries all of the group's components (see the service).
    async fn election_driver(&self, group: &ElectionGroup, sink: TermSink) -> Result<Box<dyn LeaderElectionDriver>>;

    /// The raw published leader record of `component` (the bytes the election driver
    /// wrote): the value current at the call first (`None` when absent), then every
    /// change. Consecutive duplicates are allowed; transient watch failures are
    /// retried inside; dropping the stream stops the watch. Decoding, de-duplication
    /// and the retrieval channel are the service's.
    async fn watch_leader_record(&self, component: &ComponentId) -> Result<LeaderRecordStream>;

    /// Every component with a published leader record now (whatever its content),
    /// ascending: what operators list, instead of a fixed set of names.
    async fn leader_components(&self) -> Result<Vec<ComponentId>>;

    /// The contenders of `group` now, in contention order (the leader, if any, first),
    /// read without contending. A group nobody contends in has none.
    async fn participants(&self, group: &ElectionGroup) -> Result<Vec<Participant>>;

    /// The pointer store of `namespace`.
    async fn state_handle_store(&self, namespace: &StoreNamespace) -> Result<Arc<dyn StateHandleStore>>;

    /// The checkpoint-id counter storage of `job`.
    async fn checkpoint_id_counter(&self, job: &JobId) -> Result<Arc<dyn CheckpointIdCounterDriver>>;

    /// Ends the session gracefully: resigns every candidacy, releases every lock.
    async fn close(&self) -> Result<()>;

    /// Deletes every record of the cluster-id in the backend (leader records, all
    /// namespaces, counters). Payloads are the service's job.
    async fn cleanup_all_data(&self) -> Result<()>;

    /// Stops this instance dead, as a crashed process: no resign, no release, nothing
    /// more sent; its session or lease ends only by timeout on the server. The one
    /// crash hook of every backend, for tests and benchmarks. The default does nothing,
    /// for backends where dropping every handle already is such a crash.
    fn halt(&self) {}
}
