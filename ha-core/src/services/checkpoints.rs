//! `CompletedCheckpointStore`: the retained completed checkpoints of one job.
//!
//! - Entries are named `checkpointID-{id:019}`; their payloads live in
//!   [`StateStorage`]. The newest `num_retained` are kept.
//! - Write-then-subsume: the new pointer is stored before anything older is removed;
//!   subsumed payloads are discarded asynchronously by the [`PayloadCleaner`].
//! - Recovery returns checkpoints in id order. An entry whose pointer is corrupt or
//!   whose payload is missing or fails its checksum is reported and quarantined
//!   (renamed to `quarantined-checkpointID-…`, payload kept for inspection); recovery
//!   falls back to the newest readable checkpoint. Transient errors are returned, never
//!   quarantined.
//! - `shutdown(status)` deletes everything on a globally terminal status and only
//!   releases this process's locks on suspension.

use std::sync::Arc;

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
}

/// The retained checkpoints as loaded or written in one leadership term, ascending.
struct RetainedView {
    epoch: Epoch,
    list: Vec<Retained>,
}

/// The completed checkpoints of one job.
#[derive(Clone)]
pub struct CompletedCheckpointStore {
    job_id: JobId,
    store: Arc<dyn StateHandleStore>,
    storage: StateStorage,
    cleaner: PayloadCleaner,
    num_retained: usize,
    /// Retained checkpoints known to this process; `None` until loaded.
    retained: Arc<Mutex<Option<RetainedView>>>,
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
            retained: Arc::default(),
        }
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
        let mut view = self.retained.lock().await;
        // A view from another term may miss checkpoints a different leader added.
        if view.as_ref().is_none_or(|v| v.epoch != fence.epoch) {
            *view = Some(RetainedView {
                epoch: fence.epoch,
                list: self.load_pointers().await?,
            });
        }
        let key = checkpoint_key(checkpoint.checkpoint_id);
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
        let list = &mut view
            .get_or_insert_with(|| RetainedView {
                epoch: fence.epoch,
                list: Vec::new(),
            })
            .list;
        if !list.iter().any(|r| r.id == checkpoint.checkpoint_id) {
            list.push(Retained {
                id: checkpoint.checkpoint_id,
                handle,
            });
            list.sort_by_key(|r| r.id);
        }
        let mut subsumed = Vec::new();
        while list.len() > self.num_retained {
            let oldest = list[0].clone();
            match self
                .store
                .release_and_try_remove(fence, &checkpoint_key(oldest.id))
                .await
            {
                Ok(removed) => {
                    if removed {
                        self.cleaner.discard(oldest.handle.clone());
                    }
                    list.remove(0);
                    subsumed.push(oldest.id);
                }
                Err(e) => {
                    // The new checkpoint is durable; the old one stays until the next
                    // add or the next leader's recovery subsumes it.
                    tracing::warn!(job = %self.job_id, id = oldest.id, error = %e, "could not subsume checkpoint");
                    break;
                }
            }
        }
        Ok(subsumed)
    }

    async fn existing(&self, key: &str) -> Result<Option<StateHandle>> {
        match self.store.get(key).await? {
            Some(v) => StateHandle::from_bytes(key, &v.value).map(Some),
            None => Ok(None),
        }
    }

    async fn load_pointers(&self) -> Result<Vec<Retained>> {
        let mut out = Vec::new();
        for id in self.checkpoint_ids().await? {
            let key = checkpoint_key(id);
            if let Some(v) = self.store.get(&key).await? {
                if let Ok(handle) = StateHandle::from_bytes(&key, &v.value) {
                    out.push(Retained { id, handle });
                }
            }
        }
        Ok(out)
    }

    /// Recovers all checkpoints in id order, locking them for this process, and
    /// quarantines unreadable ones (fenced, as it changes HA data).
    #[tracing::instrument(level = "debug", skip_all, fields(job = %self.job_id, epoch = fence.epoch.0))]
    pub async fn recover(&self, fence: &Fence) -> Result<RecoveredCheckpoints> {
        let mut retained = self.retained.lock().await;
        let mut result = RecoveredCheckpoints::default();
        let mut list = Vec::new();
        for id in self.checkpoint_ids().await? {
            let key = checkpoint_key(id);
            let pointer = match self.store.get_and_lock(&key).await {
                Ok(p) => p,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let read = match StateHandle::from_bytes(&key, &pointer.value) {
                Ok(handle) => self.storage.retrieve(&key, &handle).await.map(|data| (handle, data)),
                Err(e) => Err(e),
            };
            match read {
                Ok((handle, data)) => {
                    result.checkpoints.push(CompletedCheckpoint {
                        job_id: self.job_id.clone(),
                        checkpoint_id: id,
                        data,
                    });
                    list.push(Retained { id, handle });
                }
                Err(e @ (Error::CorruptData { .. } | Error::MissingPayload { .. })) => {
                    tracing::error!(job = %self.job_id, %key, error = %e, "quarantining unreadable checkpoint");
                    self.quarantine(fence, &key, pointer.value).await?;
                    result.quarantined.push(QuarantinedCheckpoint {
                        checkpoint_id: id,
                        key,
                        error: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        *retained = Some(RetainedView {
            epoch: fence.epoch,
            list,
        });
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
    /// locks are released and nothing is deleted.
    pub async fn shutdown(&self, fence: &Fence, status: JobStatus) -> Result<()> {
        let names = self.store.list().await?;
        let mut retained = self.retained.lock().await;
        if !status.is_globally_terminal() {
            for name in names {
                self.store.release(&name).await?;
            }
            *retained = None;
            return Ok(());
        }
        for name in names {
            let pointer = self.store.get(&name).await?;
            if self.store.release_and_try_remove(fence, &name).await? {
                if let Some(handle) = pointer.and_then(|p| StateHandle::from_bytes(&name, &p.value).ok()) {
                    self.storage.discard(&handle).await?;
                }
            }
        }
        *retained = Some(RetainedView {
            epoch: fence.epoch,
            list: Vec::new(),
        });
        Ok(())
    }
}
