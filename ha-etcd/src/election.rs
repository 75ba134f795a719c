//! Leader election on the session lease.
//!
//! Each candidacy is one key `P/C/leader/latch/<group>/<lease-hex>-<driver>` bound to
//! the session lease. The key with the lowest create-revision leads. A waiting
//! candidate reads once which keys are ahead of it, then follows the group's deletions
//! on one watch (deletions only, from the revision of that read): keys created later
//! queue behind it, so the set ahead only shrinks, and when it is empty the candidate is
//! granted without another request. Deletions reach every candidate of the group, but
//! none of them sends anything on a deletion that does not concern it. The
//! leader's epoch is its key's create-revision and its fence token is the key, so
//! every fenced write compares "this key still exists with this create-revision".
//! A closing leader deletes its published records and its key in one fenced
//! transaction.
//!
//! The campaign is tied to one lease: when the session reports the lease lost, the
//! session has already revoked a granted candidacy, and the campaign starts over on
//! the next lease. If the leader's own key disappears (revoked lease, operator delete,
//! cleanup), the grant is revoked and the campaign starts over.
//!
//! A grant carries the session lease's validity (see `session`), so the services stop
//! acting at the lease's certain expiry even if this process was paused.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchFilterType, WatchOptions,
};
use ha_core::driver::{LeaderElectionDriver, TermSink};
use ha_core::{ComponentId, Epoch, Fence, LeaderInformation, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::Shared;
use crate::error::{rpc, RpcError};
use crate::fenced::{fenced_txn, first_kv, malformed, revision_of, FenceGuard};
use crate::session::{Holder, LeaseState};

/// Back-off between campaign attempts while etcd misbehaves.
const RETRY: Duration = Duration::from_millis(100);

pub(crate) struct EtcdElectionDriver {
    shared: Arc<Shared>,
    group: String,
    holder: Arc<Holder>,
    current_key: Arc<Mutex<Option<String>>>,
    stop: watch::Sender<bool>,
    campaign: Mutex<Option<JoinHandle<()>>>,
}

impl EtcdElectionDriver {
    /// Joins the election of `group`: the candidacy key exists when this returns (if
    /// etcd answered), so contenders that join one after another are ordered.
    pub(crate) async fn start(shared: Arc<Shared>, group: &str, sink: TermSink) -> Self {
        let holder = Arc::new(Holder::new(sink));
        shared.session.register(&holder);
        let current_key: Arc<Mutex<Option<String>>> = Arc::default();
        let (stop, stop_rx) = watch::channel(false);
        let campaign = Campaign {
            shared: shared.clone(),
            group_dir: shared.layout.latch_dir(group),
            driver_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            holder: holder.clone(),
            current_key: current_key.clone(),
            stop: stop_rx,
        };
        let mut first = None;
        if let Ok(lease) = shared.lease() {
            let key = campaign.key(lease);
            *current_key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key.clone());
            match campaign.create(lease, &key).await {
                Ok(rev) => first = Some((lease, rev)),
                Err(e) => tracing::debug!(%key, error = %e, "candidacy not created yet; the campaign retries"),
            }
        }
        let campaign = tokio::spawn(campaign.run(first));
        Self {
            group: group.to_string(),
            shared,
            holder,
            current_key,
            stop,
            campaign: Mutex::new(Some(campaign)),
        }
    }

    async fn leader_write(&self, fence: &Fence, component: &ComponentId, value: Option<Vec<u8>>) -> Result<()> {
        let key = self.shared.layout.leader_info(component);
        let (op, ops) = match value {
            Some(v) => ("publish leader information", vec![TxnOp::put(key.clone(), v, None)]),
            None => ("delete leader information", vec![TxnOp::delete(key.clone(), None)]),
        };
        fenced_txn(&self.shared, fence, op, &key, vec![], ops, vec![])
            .await?
            .map(|_| ())
            .map_err(|_| malformed(&key))
    }
}

#[async_trait]
impl LeaderElectionDriver for EtcdElectionDriver {
    async fn publish_leader_information(
        &self,
        fence: &Fence,
        component: &ComponentId,
        info: &LeaderInformation,
    ) -> Result<()> {
        self.leader_write(fence, component, Some(info.to_json())).await
    }

    async fn delete_leader_information(&self, fence: &Fence, component: &ComponentId) -> Result<()> {
        self.leader_write(fence, component, None).await
    }

    async fn hand_off(&self, fence: &Fence, target: &str) -> Result<()> {
        let dir = self.shared.layout.latch_dir(&self.group);
        crate::participants::hand_off(&self.shared, &dir, &self.group, fence, target).await?;
        // Our key is gone: the term is over; the campaign starts over with a new key.
        self.holder.revoke();
        Ok(())
    }

    async fn resign(&self) -> Result<()> {
        let Some(key) = self.stop_campaign().await else {
            return Ok(());
        };
        let mut kv = self.shared.client.kv_client();
        rpc(self.shared.timeout, kv.delete(key.clone(), None))
            .await
            .map_err(|e| e.write("resign", key))?;
        Ok(())
    }

    /// One transaction: `when [fence] then [delete the records, delete the candidacy]
    /// else [delete the candidacy]`, so the next contender is granted after one round
    /// trip and no record is deleted once the term is over. Records beyond what one
    /// transaction may hold go first, in fenced transactions of their own.
    async fn delete_leader_information_and_resign(&self, fence: &Fence, components: &[ComponentId]) -> Result<()> {
        let Ok(guard) = FenceGuard::new(&self.shared, fence, "leader information") else {
            // Not a fence of this cluster: nothing it could delete.
            return self.resign().await;
        };
        // The campaign is told to stop, and the transaction goes out without waiting
        // for it to end: while the term holds, the campaign only watches, and after
        // the stop it creates no key (see `finish_stop` for a key it created anyway).
        let Some(key) = self.begin_stop() else {
            self.finish_stop().await;
            return Ok(());
        };
        let records: Vec<String> = components.iter().map(|c| self.shared.layout.leader_info(c)).collect();
        let split = records.len().saturating_sub(MAX_RECORDS_WITH_RESIGN);
        let (first, last) = records.split_at(split);
        let mut held = true;
        for chunk in first.chunks(MAX_RECORDS_WITH_RESIGN) {
            let ops = chunk.iter().map(|k| TxnOp::delete(k.clone(), None)).collect();
            match fenced_txn(
                &self.shared,
                fence,
                "delete leader information",
                &chunk[0],
                vec![],
                ops,
                vec![],
            )
            .await
            {
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "could not delete leader information on close");
                    held = false;
                    break;
                }
            }
        }
        let mut then: Vec<TxnOp> = if held {
            last.iter().map(|k| TxnOp::delete(k.clone(), None)).collect()
        } else {
            Vec::new()
        };
        then.push(TxnOp::delete(key.clone(), None));
        if fence.token != key {
            // A term of an earlier key of ours: it goes too (a key may appear only once).
            then.push(TxnOp::delete(fence.token.clone(), None));
        }
        let txn = Txn::new()
            .when(vec![guard.compare()])
            .and_then(then)
            .or_else(vec![TxnOp::delete(key.clone(), None)]);
        let mut kv = self.shared.client.kv_client();
        tracing::trace!(%key, records = last.len(), "resign transaction");
        let sent = rpc(self.shared.timeout, kv.txn(txn)).await;
        let left = self.finish_stop().await;
        let resp = sent.map_err(|e| e.write("resign", key.clone()))?;
        if !resp.succeeded() {
            tracing::debug!("term already over on close: leader information left to the next leader");
        }
        // The term held until the key went (so the campaign was only watching) and the
        // campaign still names that key: nothing else of ours can exist. Otherwise the
        // key the campaign last used goes too (a create may have landed meanwhile).
        match left {
            Some(left) if !(resp.succeeded() && left == key) => {
                let mut kv = self.shared.client.kv_client();
                rpc(self.shared.timeout, kv.delete(left.clone(), None))
                    .await
                    .map_err(|e| e.write("resign", left))?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Most leader records deleted in the resign transaction (etcd refuses transactions of
/// more than 128 operations by default).
const MAX_RECORDS_WITH_RESIGN: usize = 100;

impl EtcdElectionDriver {
    /// Silences the candidacy and tells its campaign to stop; returns the campaign's
    /// key, if one may exist on the server (`None` once the session is closed: the
    /// lease took it).
    fn begin_stop(&self) -> Option<String> {
        self.holder.clear();
        self.stop.send_replace(true);
        let key = self.current_key.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        (self.shared.session.state() != LeaseState::Closed).then_some(key)
    }

    /// Waits for the stopped campaign to end and returns its last key, as
    /// [`stop_campaign`](Self::stop_campaign).
    async fn finish_stop(&self) -> Option<String> {
        self.stop_campaign().await
    }

    /// Silences the candidacy, stops its campaign and returns its key, if one may
    /// still exist on the server (`None` once the session is closed: the lease took it).
    async fn stop_campaign(&self) -> Option<String> {
        self.holder.clear();
        self.stop.send_replace(true);
        let task = self.campaign.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut task) = task {
            // Let an in-flight request finish so that no candidacy is created after the
            // delete that follows.
            if tokio::time::timeout(self.shared.timeout * 2, &mut task).await.is_err() {
                task.abort();
            }
        }
        self.holder.clear();
        let key = self.current_key.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        (self.shared.session.state() != LeaseState::Closed).then_some(key)
    }
}

impl Drop for EtcdElectionDriver {
    fn drop(&mut self) {
        if let Some(task) = self.campaign.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// How following the group's deletions ended.
enum Followed {
    /// Start over on the current lease (our key is gone or the lease changed).
    Restart,
    /// Read the group again (the watch lost its history to a compaction).
    Reread,
    /// The candidacy resigned.
    Stopped,
}

struct Campaign {
    shared: Arc<Shared>,
    group_dir: String,
    driver_id: String,
    holder: Arc<Holder>,
    current_key: Arc<Mutex<Option<String>>>,
    stop: watch::Receiver<bool>,
}

fn is_active(state: &watch::Receiver<LeaseState>, lease: i64) -> bool {
    matches!(*state.borrow(), LeaseState::Active(l) if l.id == lease)
}

impl Campaign {
    fn key(&self, lease: i64) -> String {
        format!("{}{lease:016x}-{}", self.group_dir, self.driver_id)
    }

    /// Campaigns until resigned or closed; `first` is a candidacy already created on
    /// `(lease, create-revision)`.
    async fn run(mut self, mut first: Option<(i64, i64)>) {
        let mut state = self.shared.session.subscribe();
        loop {
            if *self.stop.borrow() {
                return;
            }
            let lease = match *state.borrow_and_update() {
                LeaseState::Active(l) => Some(l.id),
                LeaseState::Pending => None,
                LeaseState::Closed => return,
            };
            let Some(lease) = lease else {
                tokio::select! {
                    r = state.changed() => if r.is_err() { return },
                    _ = self.stop.changed() => return,
                }
                continue;
            };
            let key = self.key(lease);
            *self.current_key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key.clone());
            let known = first.take().filter(|(l, _)| *l == lease).map(|(_, rev)| rev);
            match self.term(&mut state, lease, &key, known).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::debug!(%key, error = %e, "campaign step failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = self.stop.changed() => return,
                    }
                }
            }
        }
    }

    /// One candidacy on `lease`. `Ok(true)`: start over; `Ok(false)`: resigned.
    async fn term(
        &mut self,
        state: &mut watch::Receiver<LeaseState>,
        lease: i64,
        key: &str,
        known: Option<i64>,
    ) -> std::result::Result<bool, RpcError> {
        let my_rev = match known {
            Some(rev) => rev,
            None => self.create(lease, key).await?,
        };
        loop {
            let (own, ahead, rev) = self.inspect(key, my_rev).await?;
            if !own {
                return Ok(true);
            }
            match self.follow(state, lease, key, my_rev, ahead, rev + 1).await {
                Followed::Restart => return Ok(true),
                Followed::Reread => continue,
                Followed::Stopped => return Ok(false),
            }
        }
    }

    /// Grants the term of `key` if `lease` is still the active one.
    fn grant(&self, state: &watch::Receiver<LeaseState>, lease: i64, key: &str, my_rev: i64) -> bool {
        let fence = Fence::new(Epoch(my_rev as u64), key);
        let validity = self.shared.session.validity(lease);
        let granted = self.holder.grant_if_active(state, lease, validity, fence);
        if granted {
            tracing::debug!(%key, epoch = my_rev, "etcd election granted");
        }
        granted
    }

    /// Creates the candidacy key on `lease` (or adopts it if an earlier attempt whose
    /// reply was lost created it); returns its create-revision.
    async fn create(&self, lease: i64, key: &str) -> std::result::Result<i64, RpcError> {
        let txn = Txn::new()
            .when(vec![Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(
                key,
                self.shared.instance_id.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else(vec![TxnOp::get(key, None)]);
        let mut kv = self.shared.client.kv_client();
        let resp = rpc(self.shared.timeout, kv.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(revision_of(&resp));
        }
        let responses = resp.op_responses();
        match responses.first().and_then(first_kv) {
            Some(kv) => Ok(kv.create_revision()),
            None => Err(RpcError::Etcd(etcd_client::Error::ElectError(format!(
                "candidacy key {key} vanished while being adopted"
            )))),
        }
    }

    /// Reads, at one revision, whether our key still exists and which keys are ahead
    /// of it (lower create-revision). Returns `(own exists, keys ahead, revision)`.
    async fn inspect(&self, key: &str, my_rev: i64) -> std::result::Result<(bool, HashSet<Vec<u8>>, i64), RpcError> {
        let ahead = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_max_create_revision(my_rev - 1);
        let txn = Txn::new().and_then(vec![
            TxnOp::get(key, None),
            TxnOp::get(self.group_dir.clone(), Some(ahead)),
        ]);
        let mut kv = self.shared.client.kv_client();
        let resp = rpc(self.shared.timeout, kv.txn(txn)).await?;
        let rev = revision_of(&resp);
        let responses = resp.op_responses();
        let own = responses
            .first()
            .and_then(first_kv)
            .is_some_and(|kv| kv.create_revision() == my_rev);
        let ahead = match responses.get(1) {
            Some(TxnOpResponse::Get(g)) => g
                .kvs()
                .iter()
                .filter(|kv| kv.create_revision() < my_rev)
                .map(|kv| kv.key().to_vec())
                .collect(),
            _ => HashSet::new(),
        };
        Ok((own, ahead, rev))
    }

    /// Follows the deletions in the group from revision `from` (one watch, resumed
    /// across broken streams): `ahead` are the keys ahead of ours at `from - 1`. Keys
    /// created later have higher create-revisions and queue behind ours, so the set
    /// only shrinks: once it is empty our key leads, and the term is granted at once,
    /// without another read. Events arrive in revision order on the one watch, so a
    /// deletion of our own key is seen before any later deletion. While granted, the
    /// deletion of our key revokes the term.
    async fn follow(
        &mut self,
        state: &mut watch::Receiver<LeaseState>,
        lease: i64,
        key: &str,
        my_rev: i64,
        mut ahead: HashSet<Vec<u8>>,
        mut from: i64,
    ) -> Followed {
        let mut granted = false;
        loop {
            if !is_active(state, lease) {
                return Followed::Restart;
            }
            if *self.stop.borrow() {
                return Followed::Stopped;
            }
            if !granted && ahead.is_empty() {
                if !self.grant(state, lease, key, my_rev) {
                    return Followed::Restart;
                }
                granted = true;
            }
            let opts = WatchOptions::new()
                .with_prefix()
                .with_filters([WatchFilterType::NoPut])
                .with_start_revision(from);
            let mut wc = self.shared.client.watch_client();
            let mut stream = match rpc(self.shared.timeout, wc.watch(self.group_dir.clone(), Some(opts))).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%key, error = %e, "election watch could not be opened; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = state.changed() => {}
                        _ = self.stop.changed() => {}
                    }
                    continue;
                }
            };
            loop {
                tokio::select! {
                    r = state.changed() => {
                        if r.is_err() || !is_active(state, lease) {
                            return Followed::Restart;
                        }
                    }
                    _ = self.stop.changed() => return Followed::Stopped,
                    msg = stream.message() => {
                        let Ok(Some(resp)) = msg else { break };
                        if resp.canceled() {
                            if resp.compact_revision() > 0 {
                                return self.after_compaction(key, my_rev, granted).await;
                            }
                            break;
                        }
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            from = from.max(kv.mod_revision() + 1);
                            if ev.event_type() != EventType::Delete {
                                continue;
                            }
                            if kv.key() == key.as_bytes() {
                                if *self.stop.borrow() {
                                    // Deleted by our own resign.
                                    return Followed::Stopped;
                                }
                                if granted {
                                    tracing::warn!(%key, "own election key disappeared; revoking leadership");
                                    self.holder.revoke();
                                }
                                return Followed::Restart;
                            }
                            ahead.remove(kv.key());
                        }
                        if !granted && ahead.is_empty() {
                            if !self.grant(state, lease, key, my_rev) {
                                return Followed::Restart;
                            }
                            granted = true;
                        }
                    }
                }
            }
            // The stream broke: resume from the revision after the last event seen.
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = self.stop.changed() => {}
            }
        }
    }

    /// The watch's history was compacted away: a waiting candidacy reads the group
    /// again; a granted one keeps its term only if its key is still there.
    async fn after_compaction(&self, key: &str, my_rev: i64, granted: bool) -> Followed {
        if !granted {
            return Followed::Reread;
        }
        let mut kv = self.shared.client.kv_client();
        let alive = match rpc(self.shared.timeout, kv.get(key, None)).await {
            Ok(resp) => resp.kvs().first().is_some_and(|kv| kv.create_revision() == my_rev),
            Err(_) => return Followed::Reread,
        };
        if !alive {
            tracing::warn!(%key, "own election key disappeared; revoking leadership");
            self.holder.revoke();
            return Followed::Restart;
        }
        Followed::Reread
    }
}
