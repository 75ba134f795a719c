//! The fenced read-modify-write every HA write goes through, and the claims of
//! per-job and job-result ConfigMaps by a term.
//!
//! Per-job and job-result ConfigMaps are claimed lazily: a term raises a ConfigMap's
//! `epoch` the first time it touches it ([`Shared::claim`] before a read while leading,
//! or inside the first fenced write), so a new leader's grant costs nothing per job.
//! Creating such a ConfigMap is fenced by first registering it in the cluster
//! ConfigMap (`pendingCreate.<name>`, in a guarded update fenced by the lock; the
//! next registration drops it once the ConfigMap exists); a new
//! term claims every ConfigMap an older term registered before it is granted
//! ([`Shared::claim_pending`]), so a deposed leader's create that arrives late finds the
//! ConfigMap there (409) and then a newer epoch. Writes to the cluster ConfigMap are
//! fenced by the lock record in it (`configmap` lock) or by its term stamp (`lease`
//! lock; see `lock` for the argument).

use std::collections::BTreeMap;

use ha_core::{Error, Fence, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use tokio::time::Instant;

use crate::client::MAX_CONFIG_MAP_BYTES;
use crate::epoch::{self, EpochCheck, EpochRecord};
use crate::error::ApiError;
use crate::layout::{lock_annotation, stamp_key, EPOCH_KEY, PENDING_PREFIX};
use crate::lock::LockKind;
use crate::record::LeaderRecord;
use crate::shared::Shared;

/// How often a read-modify-write is retried when the ConfigMap changed in between.
const MAX_ATTEMPTS: usize = 64;

/// How a write is fenced.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fencing<'a> {
    /// Not fenced (locks, releases).
    Unfenced,
    /// The cluster ConfigMap: with the `configmap` lock its lock record must name
    /// the fence's term; with the `lease` lock its stamp `epoch.<group>` must (raised
    /// like a per-job `epoch`; see `lock`).
    Lock(&'a Fence),
    /// A per-job or result ConfigMap: its `epoch` must be the fence's (claimed if older,
    /// creation registered first).
    Epoch(&'a Fence),
}

/// What a modification wants done with the ConfigMap.
pub(crate) enum Apply<T> {
    /// Nothing changed.
    Keep(T),
    /// Store the modified data.
    Write(T),
    /// Delete the ConfigMap (nothing of value is left in it).
    Delete(T),
}

impl Shared {
    /// A fence of one of this instance's own candidacies is honoured only while its
    /// term is locally valid: the leader stops acting before its renew deadline.
    fn check_local(&self, fence: &Fence, key: &str) -> Result<()> {
        let Some((_, holder)) = epoch::parse_token(fence) else {
            return Err(fence.rejected(key));
        };
        if !self.is_own(holder) {
            return Ok(());
        }
        match self.terms().get(holder) {
            Some(t) if t.epoch == fence.epoch.0 && Instant::now() < t.valid_until => Ok(()),
            _ => Err(fence.rejected(key)),
        }
    }

    /// Whether `cm`'s lock record (`configmap` lock) names the fence's term.
    pub(crate) fn check_lock(cm: &ConfigMap, fence: &Fence, key: &str) -> Result<()> {
        let raw = (|| {
            let annotation = lock_annotation(epoch::parse_token(fence)?.0).ok()?;
            cm.metadata.annotations.as_ref()?.get(&annotation).cloned()
        })();
        Self::check_record(raw.as_deref(), fence, key)
    }

    /// Whether the raw lock record names the fence's term.
    fn check_record(raw: Option<&str>, fence: &Fence, key: &str) -> Result<()> {
        let valid = raw
            .and_then(LeaderRecord::parse)
            .zip(epoch::parse_token(fence))
            .is_some_and(|(r, (_, holder))| r.holder_identity == holder && r.leader_transitions == fence.epoch.0);
        if valid {
            Ok(())
        } else {
            Err(fence.rejected(key))
        }
    }

    /// Whether the lock record, freshly read (cluster ConfigMap or Lease), names the
    /// fence's term.
    async fn check_lock_fresh(&self, fence: &Fence, op: &'static str, key: &str) -> Result<()> {
        let group = epoch::parse_token(fence).ok_or_else(|| fence.rejected(key))?.0;
        let lock = self.locks.of(&self.layout, group).map_err(|_| fence.rejected(key))?;
        let object = self.locks.get(self, &lock).await.map_err(|e| e.into_error(op, key))?;
        let raw = object.and_then(|o| o.raw_record(&lock.annotation));
        Self::check_record(raw.as_deref(), fence, key)
    }

    /// Claims the per-job or job-result ConfigMap `name` for this instance's term
    /// before a read while it leads (once per term): a resourceVersion-guarded raise
    /// of its `epoch`, so that no older term's write lands after this term read it.
    /// Does nothing if this instance leads no term, the ConfigMap is absent, or a
    /// newer term owns it (reads are not fenced).
    pub(crate) async fn claim(&self, name: &str) -> Result<()> {
        self.check_open()?;
        if let Some(fence) = self.own_fence(None) {
            if self.has_claimed(name, &fence) {
                return Ok(());
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            let Some(mut cm) = self.get_config_map(name, "claim", name).await? else {
                return Ok(());
            };
            let data = cm.data.get_or_insert_with(Default::default);
            let stored = data.get(EPOCH_KEY).and_then(|r| EpochRecord::parse(r));
            let Some(fence) = self.own_fence(stored.as_ref().map(|s| s.group.as_str())) else {
                return Ok(());
            };
            // A read never takes a ConfigMap from another election group.
            if stored
                .as_ref()
                .zip(epoch::parse_token(&fence))
                .is_some_and(|(s, (g, _))| s.group != g)
            {
                return Ok(());
            }
            match epoch::check(stored.as_ref(), &fence)? {
                EpochCheck::Stale => return Ok(()),
                EpochCheck::Current => {
                    self.note_claim(name, &fence);
                    return Ok(());
                }
                EpochCheck::Raise => {}
            }
            if !epoch::strictly_older(stored.as_ref(), &fence) {
                match self.check_lock_fresh(&fence, "claim", name).await {
                    Ok(()) => {}
                    Err(Error::NotLeader { .. }) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            let Some(record) = EpochRecord::for_fence(&fence) else {
                return Ok(());
            };
            data.insert(EPOCH_KEY.to_string(), record.to_json());
            match self.cms.replace(name, &cm).await {
                Ok(cm) => {
                    self.last_seen.put(name, cm);
                    self.note_claim(name, &fence);
                    return Ok(());
                }
                Err(ApiError::Conflict) => continue,
                Err(e) => {
                    self.last_seen.forget(name);
                    return Err(e.into_error("claim", name));
                }
            }
        }
        Err(Error::VersionConflict { key: name.to_string() })
    }

    /// Registers the coming creation of `name` by the fence's term in the cluster
    /// ConfigMap, in a guarded update that checks the lock record: after a newer term
    /// acquired the lock, no older term can register, and the newer term claims every
    /// registered name before it is granted. The same write drops the registrations
    /// of creations that have completed since the last one (one write per creation;
    /// the few left at any time are claimed, with 409, by the next term).
    async fn register_creation(&self, name: &str, fence: &Fence, key: &str) -> Result<()> {
        let record = EpochRecord::for_fence(fence)
            .ok_or_else(|| fence.rejected(key))?
            .to_json();
        let marker = format!("{PENDING_PREFIX}{name}");
        let cluster = self.layout.cluster_config_map();
        let done = std::mem::take(&mut *self.created());
        let registered = Box::pin(self.update(
            &cluster,
            key,
            "register creation",
            Fencing::Lock(fence),
            false,
            |data| {
                let mut changed = false;
                for m in done.iter().filter(|m| **m != marker) {
                    changed |= data.remove(m).is_some();
                }
                if data.get(&marker) != Some(&record) {
                    data.insert(marker.clone(), record.clone());
                    changed = true;
                }
                Ok(if changed { Apply::Write(()) } else { Apply::Keep(()) })
            },
        ))
        .await;
        if registered.is_err() {
            self.created().extend(done);
        }
        registered
    }

    /// Before a new term is granted: claims every ConfigMap whose creation an older
    /// term of the fence's group registered in `cluster` (the cluster ConfigMap's data
    /// as the acquisition, or with the Lease lock the stamp raise, wrote it) by creating it with this term's epoch (409 if it exists:
    /// then its writes are fenced by resourceVersion and epoch), then drops those
    /// registrations. Costs one request per creation that was in flight, none per job.
    pub(crate) async fn claim_pending(&self, fence: &Fence, cluster: Option<&BTreeMap<String, String>>) -> Result<()> {
        let Some((group, _)) = epoch::parse_token(fence) else {
            return Err(fence.rejected("pending creations"));
        };
        let pending: Vec<String> = cluster
            .map(|d| {
                d.iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix(PENDING_PREFIX)?, EpochRecord::parse(v)?)))
                    .filter(|(_, r)| r.group == group && r.epoch < fence.epoch.0)
                    .map(|(name, _)| name.to_string())
                    .collect()
            })
            .unwrap_or_default();
        if pending.is_empty() {
            return Ok(());
        }
        let record = EpochRecord::for_fence(fence).ok_or_else(|| fence.rejected("pending creations"))?;
        let creates = pending.iter().map(|name| {
            let cm = self.new_config_map(name, BTreeMap::from([(EPOCH_KEY.to_string(), record.to_json())]));
            async move {
                match self.cms.create(&cm).await {
                    Ok(_) => {
                        self.note_claim(name, fence);
                        Ok(())
                    }
                    Err(ApiError::Conflict) => Ok(()),
                    Err(e) => Err(e.into_error("claim pending creation", name)),
                }
            }
        });
        for created in futures::future::join_all(creates).await {
            created?;
        }
        tracing::info!(
            count = pending.len(),
            "claimed ConfigMaps whose creation an older term had registered"
        );
        let cluster = self.layout.cluster_config_map();
        self.update(
            &cluster,
            "pending creations",
            "drop registrations",
            Fencing::Lock(fence),
            false,
            |data| {
                let before = data.len();
                for name in &pending {
                    data.remove(&format!("{PENDING_PREFIX}{name}"));
                }
                Ok(if data.len() == before {
                    Apply::Keep(())
                } else {
                    Apply::Write(())
                })
            },
        )
        .await
    }

    /// Reads `name` from the API server and keeps what it saw for the next fenced
    /// write to it (see `last_seen`).
    pub(crate) async fn get_config_map(&self, name: &str, op: &'static str, key: &str) -> Result<Option<ConfigMap>> {
        let cm = self.cms.get(name).await.map_err(|e| e.into_error(op, key))?;
        match &cm {
            Some(cm) => self.last_seen.put(name, cm.clone()),
            None => self.last_seen.forget(name),
        }
        Ok(cm)
    }

    /// Reads `name`, fences, applies `f` to its data and writes the result back with a
    /// resourceVersion precondition, retrying from the read when the ConfigMap changed
    /// in between. The fence check uses the same read as the write, so it holds at the
    /// moment the write lands. `key` names the entry in errors.
    ///
    /// The read is the ConfigMap as this instance last saw it (`last_seen`: its
    /// previous read or the reply to its previous write) if kept, so a leader's
    /// repeated writes are one guarded replace each. Fencing is as strong: the epoch or
    /// lock check runs on exactly the object the replace is guarded by, and a replace
    /// of a stale copy is refused (409) and starts over from a fresh read. Anything
    /// decided without a write (no change, an error of `f` or of the fence check) is
    /// decided again on a fresh read.
    ///
    /// With [`Fencing::Epoch`] the write also claims the ConfigMap for the fence's
    /// term (raises its `epoch`); creating it (`create`) is registered in the cluster
    /// ConfigMap first. With the Lease lock, [`Fencing::Lock`] does the same with the
    /// cluster ConfigMap's stamp `epoch.<group>` (creating the ConfigMap if absent).
    pub(crate) async fn update<T>(
        &self,
        name: &str,
        key: &str,
        op: &'static str,
        fencing: Fencing<'_>,
        create: bool,
        mut f: impl FnMut(&mut BTreeMap<String, String>) -> Result<Apply<T>>,
    ) -> Result<T> {
        self.check_open()?;
        // The data key whose term fences the write, if any.
        let stamp = match fencing {
            Fencing::Epoch(_) => Some(EPOCH_KEY.to_string()),
            Fencing::Lock(fence) if self.locks.kind() == LockKind::Lease => {
                Some(stamp_key(epoch::parse_token(fence).map_or("", |(g, _)| g)))
            }
            _ => None,
        };
        // With the Lease lock a leader's stamp raise (re)creates the cluster ConfigMap.
        let creates_cluster = matches!(fencing, Fencing::Lock(_)) && stamp.is_some();
        for _ in 0..MAX_ATTEMPTS {
            if let Fencing::Lock(fence) | Fencing::Epoch(fence) = fencing {
                self.check_local(fence, key)?;
            }
            let cached = self.last_seen.get(name);
            let from_cache = cached.is_some();
            let current = match cached {
                Some(cm) => Some((*cm).clone()),
                None => self.get_config_map(name, op, key).await?,
            };
            let mut data = current.as_ref().and_then(|c| c.data.clone()).unwrap_or_default();
            let prepared = async {
                let mut raise = None;
                let mut registered = false;
                match (fencing, &stamp) {
                    // (`Epoch` always has its stamp key.)
                    (Fencing::Unfenced, _) | (Fencing::Epoch(_), None) => {}
                    (Fencing::Lock(fence), None) => {
                        let cm = current.as_ref().ok_or_else(|| fence.rejected(key))?;
                        Self::check_lock(cm, fence, key)?;
                    }
                    (Fencing::Lock(fence) | Fencing::Epoch(fence), Some(_)) if current.is_none() => {
                        if create && !creates_cluster {
                            self.register_creation(name, fence, key).await?;
                            registered = true;
                            raise = EpochRecord::for_fence(fence);
                        } else {
                            // Nothing to compare with: the lock record decides.
                            self.check_lock_fresh(fence, op, key).await?;
                            if creates_cluster {
                                raise = EpochRecord::for_fence(fence);
                            }
                        }
                    }
                    (Fencing::Lock(fence) | Fencing::Epoch(fence), Some(stamp)) => {
                        let stored = data.get(stamp).and_then(|r| EpochRecord::parse(r));
                        match epoch::check(stored.as_ref(), fence)? {
                            EpochCheck::Stale => return Err(fence.rejected(key)),
                            EpochCheck::Current => {}
                            EpochCheck::Raise => {
                                // An own term raising an older epoch is proven by its
                                // local validity; anything else by the lock record.
                                let own = epoch::parse_token(fence).is_some_and(|(_, h)| self.is_own(h));
                                if !own || !epoch::strictly_older(stored.as_ref(), fence) {
                                    self.check_lock_fresh(fence, op, key).await?;
                                }
                                raise = EpochRecord::for_fence(fence);
                            }
                        }
                    }
                }
                Ok::<_, Error>((f(&mut data)?, raise, registered))
            }
            .await;
            let (apply, raise, registered) = match prepared {
                // Decided without a write on a kept copy: decide again on a fresh read.
                Ok((Apply::Keep(_), ..)) | Err(_) if from_cache => {
                    self.last_seen.forget(name);
                    continue;
                }
                Ok(p) => p,
                Err(e) => return Err(e),
            };
            let (value, delete) = match apply {
                Apply::Keep(v) => return Ok(v),
                Apply::Write(v) => (v, false),
                Apply::Delete(v) => (v, true),
            };
            if delete {
                let Some(cm) = current else { return Ok(value) };
                self.last_seen.forget(name);
                match self.cms.delete(name, cm.metadata.resource_version.clone()).await {
                    Ok(_) => {
                        self.claimed().remove(name);
                        return Ok(value);
                    }
                    Err(ApiError::Conflict) => continue,
                    Err(e) => return Err(e.into_error(op, key)),
                }
            }
            if let (Some(r), Some(stamp)) = (raise, &stamp) {
                data.insert(stamp.clone(), r.to_json());
            }
            let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
            if size > MAX_CONFIG_MAP_BYTES {
                if from_cache {
                    self.last_seen.forget(name);
                    continue;
                }
                return Err(Error::TooLarge {
                    key: format!("{key} (ConfigMap {name})"),
                    size,
                    limit: MAX_CONFIG_MAP_BYTES,
                });
            }
            let written = match current {
                Some(mut cm) => {
                    cm.data = Some(data);
                    self.cms.replace(name, &cm).await
                }
                None if create || creates_cluster => self.cms.create(&self.new_config_map(name, data)).await,
                None => return Err(Error::NotFound { key: key.to_string() }),
            };
            if let (true, Ok(_) | Err(ApiError::Conflict)) = (registered, &written) {
                // The ConfigMap exists now: the registration has done its work; the
                // next registration drops it.
                self.created().push(format!("{PENDING_PREFIX}{name}"));
            }
            match written {
                Ok(cm) => {
                    self.last_seen.put(name, cm);
                    if let Fencing::Epoch(fence) = fencing {
                        self.note_claim(name, fence);
                    }
                    return Ok(value);
                }
                // Changed since it was read, or (a kept copy) deleted since: start over
                // from a fresh read.
                Err(ApiError::Conflict) => {
                    self.last_seen.forget(name);
                    continue;
                }
                Err(ApiError::NotFound) if from_cache => {
                    self.last_seen.forget(name);
                    continue;
                }
                Err(ApiError::TooLarge) => {
                    self.last_seen.forget(name);
                    return Err(Error::TooLarge {
                        key: format!("{key} (ConfigMap {name})"),
                        size,
                        limit: MAX_CONFIG_MAP_BYTES,
                    });
                }
                Err(e) => {
                    self.last_seen.forget(name);
                    return Err(e.into_error(op, key));
                }
            }
        }
        Err(Error::VersionConflict { key: key.to_string() })
    }
}
