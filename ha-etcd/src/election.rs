//! Leader election on the session lease.
//!
//! Each candidacy is one key `P/C/leader/latch/<group>/<lease-hex>-<driver>` bound to
//! the session lease. The key with the lowest create-revision leads; every other
//! candidate watches only the deletion of its immediate predecessor (no herd). The
//! leader's epoch is its key's create-revision and its fence token is the key, so
//! every fenced write compares "this key still exists with this create-revision".
//!
//! The campaign is tied to one lease: when the session reports the lease lost, the
//! session has already revoked a granted candidacy, and the campaign starts over on
//! the next lease. If the leader's own key disappears (revoked lease, operator delete,
//! cleanup), the grant is revoked and the campaign starts over.
//!
//! A grant carries the session lease's validity (see `session`), so the services stop
//! acting at the lease's certain expiry even if this process was paused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, WatchOptions,
};
use ha_core::driver::{LeaderElectionDriver, TermSink};
use ha_core::{ComponentId, Epoch, Fence, LeaderInformation, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::Shared;
use crate::error::{rpc, RpcError};
use crate::fenced::{fenced_txn, first_kv, malformed, revision_of};
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
        self.holder.clear();
        self.stop.send_replace(true);
        let task = self.campaign.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut task) = task {
            // Let an in-flight request finish so that no candidacy is created after the
            // delete below.
            if tokio::time::timeout(self.shared.timeout * 2, &mut task).await.is_err() {
                task.abort();
            }
        }
        self.holder.clear();
        let key = self.current_key.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(key) = key {
            if self.shared.session.state() != LeaseState::Closed {
                let mut kv = self.shared.client.kv_client();
                rpc(self.shared.timeout, kv.delete(key.clone(), None))
                    .await
                    .map_err(|e| e.write("resign", key))?;
            }
        }
        Ok(())
    }
}

impl Drop for EtcdElectionDriver {
    fn drop(&mut self) {
        if let Some(task) = self.campaign.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// How a wait for deletions ended.
enum Waited {
    /// The key at this index was deleted.
    Deleted(usize),
    /// The lease is no longer the active one (the session revoked any grant).
    LeaseChanged,
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
            let (own, predecessor, rev) = self.inspect(key, my_rev).await?;
            if !own {
                return Ok(true);
            }
            match predecessor {
                None => {
                    let fence = Fence::new(Epoch(my_rev as u64), key);
                    let validity = self.shared.session.validity(lease);
                    if !self.holder.grant_if_active(state, lease, validity, fence) {
                        return Ok(true);
                    }
                    tracing::debug!(%key, epoch = my_rev, "etcd election granted");
                    let keys = [(key.to_string(), my_rev)];
                    return match self.wait_deleted(state, lease, &keys, rev + 1).await {
                        Waited::Deleted(_) => {
                            tracing::warn!(%key, "own election key disappeared; revoking leadership");
                            self.holder.revoke();
                            Ok(true)
                        }
                        Waited::LeaseChanged => Ok(true),
                        Waited::Stopped => Ok(false),
                    };
                }
                Some((pred_key, pred_rev)) => {
                    let keys = [(pred_key, pred_rev), (key.to_string(), my_rev)];
                    match self.wait_deleted(state, lease, &keys, rev + 1).await {
                        Waited::Deleted(0) => continue,
                        Waited::Deleted(_) | Waited::LeaseChanged => return Ok(true),
                        Waited::Stopped => return Ok(false),
                    }
                }
            }
        }
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

    /// Reads, at one revision, whether our key still exists and which key directly
    /// precedes it. Returns `(own exists, predecessor, revision)`.
    async fn inspect(
        &self,
        key: &str,
        my_rev: i64,
    ) -> std::result::Result<(bool, Option<(String, i64)>, i64), RpcError> {
        let predecessor = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_max_create_revision(my_rev - 1)
            .with_limit(1);
        let txn = Txn::new().and_then(vec![
            TxnOp::get(key, None),
            TxnOp::get(self.group_dir.clone(), Some(predecessor)),
        ]);
        let mut kv = self.shared.client.kv_client();
        let resp = rpc(self.shared.timeout, kv.txn(txn)).await?;
        let rev = revision_of(&resp);
        let responses = resp.op_responses();
        let own = responses
            .first()
            .and_then(first_kv)
            .is_some_and(|kv| kv.create_revision() == my_rev);
        let pred = responses
            .get(1)
            .and_then(first_kv)
            .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.create_revision()));
        Ok((own, pred, rev))
    }

    /// Waits until one of `keys` (each with the create-revision it must still have)
    /// is deleted, watching from revision `from` and resuming across broken streams.
    async fn wait_deleted(
        &mut self,
        state: &mut watch::Receiver<LeaseState>,
        lease: i64,
        keys: &[(String, i64)],
        mut from: i64,
    ) -> Waited {
        loop {
            if !is_active(state, lease) {
                return Waited::LeaseChanged;
            }
            if *self.stop.borrow() {
                return Waited::Stopped;
            }
            match self.watch_once(state, lease, keys, &mut from).await {
                Some(w) => return w,
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = state.changed() => {}
                        _ = self.stop.changed() => {}
                    }
                }
            }
        }
    }

    /// One watch stream; `None` when it broke and should be reopened.
    async fn watch_once(
        &mut self,
        state: &mut watch::Receiver<LeaseState>,
        lease: i64,
        keys: &[(String, i64)],
        from: &mut i64,
    ) -> Option<Waited> {
        let opts = || Some(WatchOptions::new().with_start_revision(*from));
        let mut wc = self.shared.client.watch_client();
        let mut stream = rpc(self.shared.timeout, wc.watch(keys[0].0.clone(), opts()))
            .await
            .ok()?;
        for (k, _) in &keys[1..] {
            stream.watch(k.clone(), opts()).await.ok()?;
        }
        loop {
            tokio::select! {
                r = state.changed() => {
                    if r.is_err() || !is_active(state, lease) {
                        return Some(Waited::LeaseChanged);
                    }
                }
                _ = self.stop.changed() => return Some(Waited::Stopped),
                msg = stream.message() => {
                    let resp = msg.ok()??;
                    if resp.canceled() {
                        if resp.compact_revision() > 0 {
                            return self.recheck(keys, from).await;
                        }
                        return None;
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        *from = (*from).max(kv.mod_revision() + 1);
                        if ev.event_type() == EventType::Delete {
                            if let Some(i) = keys.iter().position(|(k, _)| k.as_bytes() == kv.key()) {
                                return Some(Waited::Deleted(i));
                            }
                        }
                    }
                }
            }
        }
    }

    /// After a compaction gap: which of `keys` is gone now, if any; otherwise moves
    /// `from` to the current revision and asks for a new watch.
    async fn recheck(&self, keys: &[(String, i64)], from: &mut i64) -> Option<Waited> {
        let txn = Txn::new().and_then(
            keys.iter()
                .map(|(k, _)| TxnOp::get(k.clone(), None))
                .collect::<Vec<_>>(),
        );
        let mut kv = self.shared.client.kv_client();
        let resp = rpc(self.shared.timeout, kv.txn(txn)).await.ok()?;
        for (i, r) in resp.op_responses().iter().enumerate() {
            let alive = first_kv(r).is_some_and(|kv| kv.create_revision() == keys[i].1);
            if !alive {
                return Some(Waited::Deleted(i));
            }
        }
        *from = revision_of(&resp) + 1;
        None
    }
}
