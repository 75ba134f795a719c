//! `CompletedCheckpointStore`: the retained completed checkpoints of one job.
//!
//! - Entries are named `checkpointID-{id:019}`; their payloads live in
//!   [`StateStorage`]. The newest `num_retained` are kept.
//! - Write-then-subsume: the new pointer is stored (after its payload is durable)
//!   before anything older is removed; subsumed payloads are discarded asynchronously
//!   by the [`PayloadCleaner`].
//! - Ids only move forward: an add whose id is below the newest retained checkpoint is
//!   refused before anything is written, so an add never subsumes the checkpoint it
//!   adds. Every store handle of a job in one process shares one retained view.
//! - Recovery returns checkpoints in id order. An entry whose pointer is corrupt, whose
//!   payload fails its checksum, or whose payload is missing while other payloads of
//!   the job are readable is reported and quarantined (renamed to
//!   `quarantined-checkpointID-…`, payload kept for inspection); recovery falls back to
//!   the newest readable checkpoint. With
//!   [`OnUnreadable::Fail`] it refuses instead. When *every* payload of the job is
//!   missing, the storage itself is missing (not mounted, wrong `storageDir`): recovery
//!   fails with [`Error::RecoveryRefused`] naming the storage URL and changes nothing.
//!   Transient errors are returned, never quarantined.
//! - `shutdown(status)` deletes everything on a globally terminal status (and returns
//!   the entries another live process still locks, to be removed by a later attempt)
//!   and only releases this process's locks on suspension. A [`CheckpointRetention`]
//!   (Flink's `execution.checkpointing.externalized-checkpoint-retention`) can keep the
//!   latest checkpoint, pointer and payload, when the job is cancelled or fails, so
//!   that it can be resumed from it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::Mutex;

use super::cleaner::PayloadCleaner;
use super::JobStatus;
use crate::driver::StateHandleStore;
use crate::error::{Error, Result};
use crate::ids::{Epoch, Fence, JobId};
use crate::storage::{StateHandle, StateStorage};

/// Entry-name prefix of completed checkpoints.
pub const CHECKPOINT_PREFIX: &str = "checkpointID-";
/// Entry-name prefix of quarantined checkpoints.
pub const QUARANTINE_PREFIX: &str = "quarantined-";

/// The entry name of checkpoint `id`.
pub fn checkpoint_key(id: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{id:019}")
}

/// Parses a checkpoint entry name back to its id.
pub fn parse_checkpoint_key(name: &str) -> Option<u64> {
    name.strip_prefix(CHECKPOINT_PREFIX)?.parse().ok()
}

/// What recovery does with an entry it cannot read (config key
/// `high-availability.checkpoints.on-unreadable`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum OnUnreadable {
    /// Set the entry aside as `quarantined-…` and fall back to the newest readable
    /// checkpoint (the default).
    #[default]
    Quarantine,
    /// Refuse to fall back to older state, as Flink does: recovery fails naming the
    /// entry and its payload, and changes nothing.
    Fail,
}

impl OnUnreadable {
    /// The config key that chooses the policy.
    pub const KEY: &'static str = "high-availability.checkpoints.on-unreadable";

    /// Parses a config value (`quarantine` or `fail`, any case).
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "quarantine" => Ok(Self::Quarantine),
            "fail" => Ok(Self::Fail),
            _ => Err(Error::config(
                Self::KEY,
                format!("unknown policy `{value}`; valid values: quarantine, fail"),
            )),
        }
    }
}

/// What happens to a job's latest checkpoint when the job ends (config key
/// `execution.checkpointing.externalized-checkpoint-retention`, Flink's name and
/// values, any case). A retained checkpoint keeps its pointer, payload and the job's
/// checkpoint-id counter, so the job can be resumed from it under the same job id;
/// every older checkpoint goes. A finished job never retains anything.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum CheckpointRetention {
    /// `NO_EXTERNALIZED_CHECKPOINTS` (Flink's default): everything goes when the job
    /// reaches a globally terminal state.
    #[default]
    NoExternalizedCheckpoints,
    /// `DELETE_ON_CANCELLATION`: kept when the job fails, deleted when it is
    /// cancelled.
    DeleteOnCancellation,
    /// `RETAIN_ON_CANCELLATION`: kept when the job is cancelled or fails.
    RetainOnCancellation,
}

impl CheckpointRetention {
    /// The config key choosing the policy (Flink's name).
    pub const KEY: &'static str = "execution.checkpointing.externalized-checkpoint-retention";

    /// Parses a config value: Flink's names in any case, `-` or `_`.
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "NO_EXTERNALIZED_CHECKPOINTS" => Ok(Self::NoExternalizedCheckpoints),
            "DELETE_ON_CANCELLATION" => Ok(Self::DeleteOnCancellation),
            "RETAIN_ON_CANCELLATION" => Ok(Self::RetainOnCancellation),
            _ => Err(Error::config(
                Self::KEY,
                format!(
                    "unknown value `{value}`; valid values: NO_EXTERNALIZED_CHECKPOINTS, DELETE_ON_CANCELLATION, RETAIN_ON_CANCELLATION"
                ),
            )),
        }
    }

    /// Whether a job that ended with `status` keeps its latest checkpoint.
    pub fn retains(self, status: JobStatus) -> bool {
        match self {
            Self::NoExternalizedCheckpoints => false,
            Self::DeleteOnCancellation => status == JobStatus::Failed,
            Self::RetainOnCancellation => matches!(status, JobStatus::Failed | JobStatus::Cancelled),
        }
    }
}

/// A completed checkpoint: its id and its (opaque) metadata payload.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CompletedCheckpoint {
    /// Job the checkpoint belongs to.
    pub job_id: JobId,
    /// Checkpoint id (from the [`CheckpointIdCounter`](super::CheckpointIdCounter)).
    pub checkpoint_id: u64,
    /// Serialized checkpoint metadata.
    pub data: Bytes,
}

/// A checkpoint set aside during recovery.
#[derive(Clone, Debug)]
pub struct QuarantinedCheckpoint {
    /// Checkpoint id.
    pub checkpoint_id: u64,
    /// Original entry name.
    pub key: String,
    /// Why it could not be read.
    pub error: String,
}

/// What recovery found.
#[derive(Clone, Debug, Default)]
pub struct RecoveredCheckpoints {
    /// Readable checkpoints, ascending by id.
    pub checkpoints: Vec<CompletedCheckpoint>,
    /// Entries quarantined in this recovery.
    pub quarantined: Vec<QuarantinedCheckpoint>,
}

impl RecoveredCheckpoints {
    /// The newest readable checkpoint.
    pub fn latest(&self) -> Option<&CompletedCheckpoint> {
        self.checkpoints.last()
    }
}

#[derive(Clone)]
struct Retained {
    id: u64,
    handle: StateHandle,
    /// False for an entry whose payload a `quarantined-…` copy still references: its
    /// removal must keep the payload.
    owns_payload: bool,
}

/// The retained checkpoints as loaded or written in one leadership term, ascending.
pub(crate) struct RetainedView {
    epoch: Epoch,
    list: Vec<Retained>,
    /// Subsumed entries another process still had locked; removal is retried on every
    /// add until that process lets go (releases, or its session ends).
    still_locked: Vec<Retained>,
}

impl RetainedView {
    fn new(epoch: Epoch, list: Vec<Retained>) -> Self {
        Self {
            epoch,
            list,
            still_locked: Vec::new(),
        }
    }
}

/// One job's retained view, `None` until loaded.
type ViewCell = Mutex<Option<RetainedView>>;
type SharedView = Arc<ViewCell>;

/// The retained views of one process, one per job, shared by every
/// [`CompletedCheckpointStore`] handle of that job so that none subsumes from a stale
/// view.
#[derive(Clone, Default)]
pub(crate) struct RetainedViews(Arc<std::sync::Mutex<HashMap<JobId, Weak<ViewCell>>>>);

impl std::fmt::Debug for RetainedViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetainedViews").finish_non_exhaustive()
    }
}

impl RetainedViews {
    /// The view of `job`, created on first use; dropped with its last handle.
    pub(crate) fn of(&self, job: &JobId) -> SharedView {
        let mut views = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(view) = views.get(job).and_then(Weak::upgrade) {
            return view;
        }
        views.retain(|_, v| v.strong_count() > 0);
        let view = SharedView::default();
        views.insert(job.clone(), Arc::downgrade(&view));
        view
    }
}

/// The completed checkpoints of one job.
#[derive(Clone)]
pub struct CompletedCheckpointStore {
    job_id: JobId,
    store: Arc<dyn StateHandleStore>,
    storage: StateStorage,
    cleaner: PayloadCleaner,
    num_retained: usize,
    on_unreadable: OnUnreadable,
    retention: CheckpointRetention,
    /// Retained checkpoints known to this process; `None` until loaded.
    retained: SharedView,
}

impl std::fmt::Debug for CompletedCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletedCheckpointStore")
            .field("job_id", &self.job_id)
            .field("num_retained", &self.num_retained)
            .finish_non_exhaustive()
    }
}

impl CompletedCheckpointStore {
    /// Builds the store of `job_id`.
    pub fn new(
        job_id: JobId,
        store: Arc<dyn StateHandleStore>,
        storage: StateStorage,
        cleaner: PayloadCleaner,
        num_retained: usize,
    ) -> Self {
        Self {
            job_id,
            store,
            storage,
            cleaner,
            num_retained: num_retained.max(1),
            on_unreadable: OnUnreadable::default(),
            retention: CheckpointRetention::default(),
            retained: Arc::default(),
        }
    }

    /// Shares `view` with the other handles of this job in the process.
    pub(crate) fn with_view(mut self, view: SharedView) -> Self {
        self.retained = view;
        self
    }

    /// Sets what recovery does with unreadable entries.
    pub fn with_on_unreadable(mut self, policy: OnUnreadable) -> Self {
        self.on_unreadable = policy;
        self
    }

    /// Sets what a terminal [`shutdown`](Self::shutdown) keeps.
    pub fn with_retention(mut self, retention: CheckpointRetention) -> Self {
        self.retention = retention;
        self
    }

    /// The retention policy on job end.
    pub fn retention(&self) -> CheckpointRetention {
        self.retention
    }

    /// How many checkpoints are retained.
    pub fn num_retained(&self) -> usize {
        self.num_retained
    }

    /// Ids of all checkpoint entries in the backend, ascending.
    pub async fn checkpoint_ids(&self) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = self
            .store
            .list()
            .await?
            .iter()
            .filter_map(|n| parse_checkpoint_key(n))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Names of quarantined entries.
    pub async fn quarantined_keys(&self) -> Result<Vec<String>> {
        Ok(self
            .store
            .list()
            .await?
            .into_iter()
            .filter(|n| n.starts_with(QUARANTINE_PREFIX))
            .collect())
    }

    /// Adds `checkpoint`, then subsumes the oldest beyond `num_retained`. Returns the ids
    /// subsumed. On `OutcomeUnknown` the payload is kept and a retry with the same
    /// checkpoint is safe.
    #[tracing::instrument(level = "debug", skip_all, fields(job = %self.job_id, id = checkpoint.checkpoint_id, epoch = fence.epoch.0))]
    pub async fn add_checkpoint(&self, fence: &Fence, checkpoint: CompletedCheckpoint) -> Result<Vec<u64>> {
        fence.check_valid(checkpoint_key(checkpoint.checkpoint_id))?;
        let mut view = self.retained.lock().await;
        // A view from another term may miss checkpoints a different leader added.
        if view.as_ref().is_none_or(|v| v.epoch != fence.epoch) {
            *view = Some(RetainedView::new(fence.epoch, self.load_pointers().await?));
        }
        let key = checkpoint_key(checkpoint.checkpoint_id);
        if let Some(view) = view.as_ref() {
            let id = checkpoint.checkpoint_id;
            let newest = view.list.last().map(|r| r.id);
            if newest.is_some_and(|n| id < n) && !view.list.iter().any(|r| r.id == id) {
                return Err(Error::InvalidRequest {
                    key,
                    message: format!(
                        "checkpoint {id} is older than the newest retained checkpoint {}: retention would delete it as soon as it is added",
                        newest.unwrap_or_default()
                    ),
                });
            }
        }
        let handle = self
            .storage
            .store(&format!("checkpoints/{}", self.job_id), &key, checkpoint.data.clone())
            .await?;
        let handle = match self.store.add_and_lock(fence, &key, handle.to_bytes()).await {
            Ok(_) => handle,
            Err(Error::AlreadyExists { .. }) => {
                // Our copy is redundant either way; an identical entry means an earlier
                // attempt of this add landed.
                let existing = self.existing(&key).await?;
                self.cleaner.discard(handle.clone());
                match existing {
                    Some(theirs) if theirs.sha256 == handle.sha256 && theirs.size == handle.size => theirs,
                    _ => return Err(Error::AlreadyExists { key }),
                }
            }
            Err(e @ Error::OutcomeUnknown { .. }) => return Err(e),
            Err(e) => {
                self.cleaner.discard(handle);
                return Err(e);
            }
        };
        let view = view.get_or_insert_with(|| RetainedView::new(fence.epoch, Vec::new()));
        if !view.list.iter().any(|r| r.id == checkpoint.checkpoint_id) {
            view.list.push(Retained {
                id: checkpoint.checkpoint_id,
                handle,
                owns_payload: true,
            });
            view.list.sort_by_key(|r| r.id);
        }
        let mut subsumed = Vec::new();
        while view.list.len() > self.num_retained {
            let oldest = view.list.remove(0);
            subsumed.push(oldest.id);
            view.still_locked.push(oldest);
        }
        let mut kept = Vec::new();
        for old in std::mem::take(&mut view.still_locked) {
            match self.store.release_and_try_remove(fence, &checkpoint_key(old.id)).await {
                Ok(true) if old.owns_payload => self.cleaner.discard(old.handle),
                Ok(true) => {}
                Ok(false) => kept.push(old),
                Err(e) => {
                    // The new checkpoint is durable; the old one stays until a later
                    // add or the next leader's recovery subsumes it.
                    tracing::warn!(job = %self.job_id, id = old.id, error = %e, "could not subsume checkpoint");
                    kept.push(old);
                }
            }
        }
        view.still_locked = kept;
        Ok(subsumed)
    }

    async fn existing(&self, key: &str) -> Result<Option<StateHandle>> {
        match self.store.get(key).await? {
            Some(v) => StateHandle::from_bytes(key, &v.value).map(Some),
            None => Ok(None),
        }
    }

    async fn load_pointers(&self) -> Result<Vec<Retained>> {
        let names = self.store.list().await?;
        let mut ids: Vec<u64> = names.iter().filter_map(|n| parse_checkpoint_key(n)).collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        for id in ids {
            let key = checkpoint_key(id);
            // An entry that cannot be read is left to recovery, which quarantines it.
            let Ok(Some(v)) = self.store.get(&key).await else {
                continue;
            };
            if let Ok(handle) = StateHandle::from_bytes(&key, &v.value) {
                let quarantined = format!("{QUARANTINE_PREFIX}{key}");
                out.push(Retained {
                    id,
                    handle,
                    owns_payload: !names.contains(&quarantined),
                });
            }
        }
        Ok(out)
    }

    /// Recovers all checkpoints in id order, locking them for this process, and
    /// quarantines unreadable ones (fenced, as it changes HA data) or refuses, as the
    /// module docs describe.
    #[tracing::instrument(level = "debug", skip_all, fields(job = %self.job_id, epoch = fence.epoch.0))]
    pub async fn recover(&self, fence: &Fence) -> Result<RecoveredCheckpoints> {
        fence.check_valid(format!("jobs/{}/checkpoints", self.job_id))?;
        let mut retained = self.retained.lock().await;
        let names = self.store.list().await?;
        let mut ids: Vec<u64> = names.iter().filter_map(|n| parse_checkpoint_key(n)).collect();
        ids.sort_unstable();
        let mut result = RecoveredCheckpoints::default();
        let mut list = Vec::new();
        let mut unreadable: Vec<(u64, String, Bytes, Error)> = Vec::new();
        // Whether any payload object of the job exists: if none does while pointers
        // name some, the storage is missing, not the objects.
        let mut storage_answered = false;
        for id in ids {
            let key = checkpoint_key(id);
            let pointer = match self.store.get_and_lock(&key).await {
                Ok(p) => p,
                Err(Error::NotFound { .. }) => continue,
                Err(e @ Error::CorruptData { .. }) => {
                    unreadable.push((id, key, Bytes::new(), e));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let handle = match StateHandle::from_bytes(&key, &pointer.value) {
                Ok(handle) => handle,
                Err(e) => {
                    unreadable.push((id, key, pointer.value, e));
                    continue;
                }
            };
            match self.storage.retrieve(&key, &handle).await {
                Ok(data) => {
                    storage_answered = true;
                    result.checkpoints.push(CompletedCheckpoint {
                        job_id: self.job_id.clone(),
                        checkpoint_id: id,
                        data,
                    });
                    let quarantined = format!("{QUARANTINE_PREFIX}{key}");
                    list.push(Retained {
                        id,
                        handle,
                        owns_payload: !names.contains(&quarantined),
                    });
                }
                Err(e @ Error::CorruptData { .. }) => {
                    storage_answered = true;
                    unreadable.push((id, key, pointer.value, e));
                }
                Err(e @ Error::MissingPayload { .. }) => unreadable.push((id, key, pointer.value, e)),
                Err(e) => return Err(e),
            }
        }
        // What was listed and read is the job's state only if no newer term can have
        // changed it meanwhile: a recovery paused past its term (a newer leader may
        // have subsumed or added entries) is refused like any act after the term.
        fence.check_valid(format!("jobs/{}/checkpoints", self.job_id))?;
        let all_missing = !storage_answered
            && unreadable
                .iter()
                .any(|(.., e)| matches!(e, Error::MissingPayload { .. }));
        if all_missing {
            let example = unreadable
                .iter()
                .find_map(|(.., e)| match e {
                    Error::MissingPayload { path, .. } => Some(path.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            return Err(Error::RecoveryRefused {
                job: self.job_id.to_string(),
                message: format!(
                    "every checkpoint payload of the job is missing from {} (e.g. {example}): the storage is not mounted or `high-availability.storageDir` points elsewhere; no entry was changed",
                    self.storage.url()
                ),
            });
        }
        if self.on_unreadable == OnUnreadable::Fail {
            if let Some((_, key, _, e)) = unreadable.last() {
                return Err(Error::RecoveryRefused {
                    job: self.job_id.to_string(),
                    message: format!(
                        "{key} is unreadable ({e}) and `{}` is `fail`, so recovery does not fall back to an older checkpoint; no entry was changed",
                        OnUnreadable::KEY
                    ),
                });
            }
        }
        for (id, key, pointer, e) in unreadable {
            tracing::error!(job = %self.job_id, %key, error = %e, "quarantining unreadable checkpoint");
            self.quarantine(fence, &key, pointer).await?;
            result.quarantined.push(QuarantinedCheckpoint {
                checkpoint_id: id,
                key,
                error: e.to_string(),
            });
        }
        result.quarantined.sort_by_key(|q| q.checkpoint_id);
        *retained = Some(RetainedView::new(fence.epoch, list));
        Ok(result)
    }

    async fn quarantine(&self, fence: &Fence, key: &str, pointer: Bytes) -> Result<()> {
        let target = format!("{QUARANTINE_PREFIX}{key}");
        match self.store.add_and_lock(fence, &target, pointer).await {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        self.store.release_and_try_remove(fence, key).await?;
        Ok(())
    }

    /// Shuts the store down for `status`: on a globally terminal status every entry
    /// (quarantined ones included) and payload is deleted; otherwise this process's
    /// locks are released and nothing is deleted. When the [`CheckpointRetention`]
    /// retains checkpoints for `status`, the newest checkpoint entry stays (its lock
    /// released) with its payload.
    ///
    /// Returns the entries that could not be removed because another live process
    /// still locks them (always empty on suspension). They stay until a later call
    /// succeeds, which [`HaServices::cleanup_job`](super::HaServices::cleanup_job)
    /// retries.
    #[must_use = "entries another process still locks are left behind; retry later"]
    pub async fn shutdown(&self, fence: &Fence, status: JobStatus) -> Result<Vec<String>> {
        let names = self.store.list().await?;
        let mut retained = self.retained.lock().await;
        if !status.is_globally_terminal() {
            for name in names {
                self.store.release(&name).await?;
            }
            *retained = None;
            return Ok(Vec::new());
        }
        let keep = if self.retention.retains(status) {
            names
                .iter()
                .filter_map(|n| parse_checkpoint_key(n))
                .max()
                .map(checkpoint_key)
        } else {
            None
        };
        let mut left = Vec::new();
        for name in names {
            if keep.as_deref() == Some(name.as_str()) {
                self.store.release(&name).await?;
                continue;
            }
            let pointer = self.store.get(&name).await.ok().flatten();
            if self.store.release_and_try_remove(fence, &name).await? {
                if let Some(handle) = pointer.and_then(|p| StateHandle::from_bytes(&name, &p.value).ok()) {
                    self.storage.discard(&handle).await?;
                }
            } else {
                left.push(name);
            }
        }
        // A kept checkpoint is reloaded by the next use of the store (a resumed job).
        *retained = keep.is_none().then(|| RetainedView::new(fence.epoch, Vec::new()));
        Ok(left)
    }
}
