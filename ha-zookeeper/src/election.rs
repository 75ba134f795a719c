//! Leader election: the latch recipe on ephemeral-sequential nodes.
//!
//! Each candidacy owns one node under `leader/latch/<group>`; the lowest sequence
//! leads. A candidate that does not lead watches only its predecessor (no herd effect
//! when the leader goes). A candidate that finds itself lowest first checks that the
//! node is owned by its own session, then is granted with
//! `Fence { epoch: czxid of the node, token: node path }`: czxids strictly increase,
//! and the next leader's node was created after the previous leader's.
//!
//! Connection states:
//! - *suspended* (disconnected, session maybe alive): by default leadership ends at
//!   once, as with Curator's standard connection-state policy (Flink's default). With
//!   `client.tolerate-suspended-connections = true` it is kept — writes are fenced, so
//!   a leader whose session did expire cannot change anything — but only until the
//!   term's validity (below) runs out, which is counted from the last time the session
//!   was known healthy at the ensemble, never from when the disconnect was noticed:
//!   the follower the client talks to may have been cut from the ZooKeeper leader long
//!   before it drops its clients (after `syncLimit·tickTime`);
//! - *reconnected* (same session): nothing happens; watches are re-established;
//! - *lost* (expired/closed): revoked, then the candidacy re-enters the election on a
//!   new session with a new node.
//!
//! Validity: the candidacy renews every quarter of the session timeout with `sync` +
//! `exists` on its own node. The node is ephemeral, so finding it after a `sync`
//! (which goes through the ZooKeeper leader) proves the session was alive at the
//! ensemble when the renewal was sent. The ZooKeeper leader, however, learns that a
//! client talked to a *follower* only from that follower's next ping; a follower cut
//! right after forwarding our renewal never reports it, and the last touch the leader
//! knows is then the client's previous request or ping (idle clients ping every
//! ~0.15 × session). The term is therefore valid until the renewal's send time − a
//! quarter session + the session timeout − a margin (0.55 × session after the send),
//! and the grant is anchored the same way at the time of its node check. When the
//! validity runs out without a renewal, the term is revoked: a leader on a follower
//! cut from the quorum is told before the quorum can expire its session and grant
//! anyone else. A paused process stops acting at that deadline too, before any of its
//! tasks has run.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ha_core::driver::{LeaderElectionDriver, TermSink, Validity};
use ha_core::{ComponentId, Epoch, Error, Fence, LeaderInformation, Result};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::backend::Shared;
use crate::error::{is_session_gone, is_transient, read_error};
use crate::latch::{create_latch_node, find_own, ordered, retire, uuid_prefix, wait_connected, LatchClient, LatchNode};

#[derive(Default)]
struct CandState {
    resigned: bool,
    uuid: Option<String>,
    node: Option<String>,
    leading: Option<Fence>,
    validity: Option<Validity>,
}

/// One candidacy: shared by its driver and its tasks.
pub(crate) struct Candidacy {
    pub(crate) inner: Arc<Shared>,
    group: String,
    dir: String,
    sink: TermSink,
    st: Mutex<CandState>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Why a term (one latch node) ended.
enum TermEnd {
    /// The session is over; a new one is needed.
    SessionLost,
    /// Our node is gone (deleted from outside).
    NodeGone,
    /// Disconnected (and suspended connections are not tolerated), or not renewed
    /// before the validity ran out; the node (if it survives) must be replaced so the
    /// next term has a higher epoch.
    Suspended,
    /// Something else failed; retried after a back-off.
    Failed(Error),
}

/// What to do with a failed ZooKeeper call inside a term.
enum Step {
    Retry,
    End(TermEnd),
}

impl Candidacy {
    fn lock(&self) -> std::sync::MutexGuard<'_, CandState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_leading(&self) -> bool {
        self.lock().leading.is_some()
    }

    /// Safety margin subtracted from a renewal's certain validity.
    fn margin(session: std::time::Duration) -> std::time::Duration {
        (session / 5).max(std::time::Duration::from_millis(100))
    }

    /// How long before a request we sent the ZooKeeper leader may last have heard of
    /// our session (see the module docs); also the renewal period.
    fn lag(session: std::time::Duration) -> std::time::Duration {
        session / 4
    }

    /// Until when a term holds, given that the session was touched at `sent`: the
    /// earliest time the ensemble can expire the session, less the margin.
    fn valid_until(sent: Instant, session: std::time::Duration) -> Instant {
        let known_healthy = sent.checked_sub(Self::lag(session)).unwrap_or(sent);
        known_healthy + session - Self::margin(session)
    }

    fn grant(&self, fence: Fence, checked_at: Instant, session: std::time::Duration) {
        let mut st = self.lock();
        if st.resigned || st.leading.is_some() {
            return;
        }
        tracing::info!(group = %self.group, epoch = fence.epoch.0, node = %fence.token, "ZooKeeper latch leads");
        let validity = Validity::until(Self::valid_until(checked_at, session));
        st.leading = Some(fence.clone());
        st.validity = Some(validity.clone());
        self.sink.grant(fence, validity);
    }

    fn revoke(&self, why: &str) {
        let mut st = self.lock();
        if let Some(v) = st.validity.take() {
            v.expire();
        }
        if let Some(f) = st.leading.take() {
            tracing::warn!(group = %self.group, epoch = f.epoch.0, reason = why, "ZooKeeper leadership revoked");
            self.sink.revoke();
        }
    }

    /// While leading: renews the term's validity every quarter of the session timeout
    /// (`sync` + `exists` of our node). Ends the term if the node is gone, and when the
    /// validity runs out before a renewal succeeded.
    async fn renew(&self, client: &zk::Client, node: &str) -> TermEnd {
        let session = client.session_timeout();
        let period = Self::lag(session);
        let mut next = Instant::now() + period;
        loop {
            let until = self.lock().validity.as_ref().and_then(Validity::valid_until);
            match until {
                Some(until) => tokio::time::sleep_until(next.min(until)).await,
                None => {
                    tokio::time::sleep_until(next).await;
                    next = Instant::now() + period;
                    continue;
                }
            }
            let Some(validity) = self.lock().validity.clone() else {
                continue;
            };
            if !validity.is_valid() {
                return TermEnd::Suspended;
            }
            let sent = Instant::now();
            let limit = self.inner.sessions.request_timeout(client);
            let deadline = validity.valid_until().map_or(sent + limit, |u| u.min(sent + limit));
            let checked = tokio::time::timeout_at(deadline, async {
                client.sync(node).await?;
                client.check_stat(node).await
            })
            .await;
            match checked {
                Ok(Ok(Some(stat))) if stat.ephemeral_owner == client.session_id().0 => {
                    validity.extend(Self::valid_until(sent, session));
                    next = sent + period;
                }
                Ok(Ok(_)) => return TermEnd::NodeGone,
                Ok(Err(e)) if is_session_gone(&e) => return TermEnd::SessionLost,
                // Not renewed: try again soon; the validity runs out by itself, and
                // the term ends with it (checked at the top of the loop).
                Ok(Err(_)) | Err(_) => {
                    next = Instant::now() + (period / 4).max(std::time::Duration::from_millis(20));
                }
            }
        }
    }

    fn classify(&self, client: &zk::Client, e: zk::Error) -> Step {
        if is_session_gone(&e) || client.state().is_terminated() {
            Step::End(TermEnd::SessionLost)
        } else if is_transient(&e) {
            Step::Retry
        } else {
            Step::End(TermEnd::Failed(read_error(&self.dir, e)))
        }
    }

    /// Runs candidacies until resigned: one term per latch node, the first one on the
    /// node created when the driver started.
    async fn run(self: Arc<Self>, mut first: Option<(crate::session::Live, LatchNode)>) {
        let mut backoff = self.inner.sessions.config().retry_wait;
        loop {
            if self.lock().resigned {
                return;
            }
            if let Some((live, node)) = first.take() {
                let end = self.contend_with(&live.client, node).await;
                self.finish_term(&live, end, &mut backoff).await;
                continue;
            }
            let live = match self.inner.sessions.live().await {
                Ok(l) => l,
                Err(Error::Closed { .. }) => return,
                Err(e) => {
                    tracing::warn!(group = %self.group, error = %e, "no ZooKeeper session for the election; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                    continue;
                }
            };
            let end = self.term(&live.client).await;
            self.finish_term(&live, end, &mut backoff).await;
        }
    }

    /// Revokes after a term ended, removes what is left of the term's nodes (if the
    /// session survives), and backs off after a failure.
    async fn finish_term(&self, live: &crate::session::Live, end: TermEnd, backoff: &mut std::time::Duration) {
        let failed = matches!(end, TermEnd::Failed(_));
        let session_lost = matches!(end, TermEnd::SessionLost);
        match end {
            TermEnd::SessionLost => self.revoke("ZooKeeper session lost"),
            TermEnd::NodeGone => self.revoke("latch node deleted"),
            TermEnd::Suspended => self.revoke("connection suspended, or the session could not be confirmed in time"),
            TermEnd::Failed(e) => {
                self.revoke("election failed");
                tracing::warn!(group = %self.group, error = %e, "ZooKeeper election step failed; retrying");
                if !e.is_retryable() && !self.lock().resigned {
                    // E.g. permission denied: the service reports it; we keep trying.
                    self.sink.fail(e);
                }
            }
        }
        // The next term gets a new node (and a higher epoch); no node of this one may
        // stay in line. After a suspension, wait until we are back; after a lost
        // session, use the new one: the server may not have expired the old session
        // yet (the client gives up on its own clock), and its node would block the
        // election until it does.
        let uuid = self.lock().uuid.clone();
        if let Some(uuid) = uuid {
            self.retire_term(live, session_lost, &uuid).await;
        }
        if failed {
            tokio::time::sleep(*backoff).await;
            *backoff = (*backoff * 2).min(std::time::Duration::from_secs(5));
        } else {
            *backoff = self.inner.sessions.config().retry_wait;
        }
    }

    /// Removes every node of the ended term `uuid`, retrying until it is done, the
    /// candidacy resigned or the backend closed. One try is not enough: a node left
    /// behind on a session that lives on stays the lowest of the latch and blocks
    /// every candidate, this one included, for as long as that session lives, and a
    /// single delete easily fails with a connection loss while the ensemble is still
    /// electing its own leader.
    async fn retire_term(&self, live: &crate::session::Live, mut session_lost: bool, uuid: &str) {
        let limit = live.client.session_timeout() * 2;
        let mut wait = self.inner.sessions.config().retry_wait;
        loop {
            if self.lock().resigned || self.inner.sessions.is_closed() {
                return;
            }
            let client = if !session_lost && wait_connected(&live.client, limit).await.is_ok() {
                Some(live.client.clone())
            } else {
                self.inner.sessions.live().await.ok().map(|l| l.client)
            };
            if let Some(client) = client {
                match retire(&client, &self.dir, uuid).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(group = %self.group, error = %e, "old latch node not removed yet; retrying")
                    }
                }
            }
            session_lost |= live.client.state().is_terminated();
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// Creates (or adopts after a lost reply) a latch node with a fresh uuid.
    async fn join(&self, client: &zk::Client) -> std::result::Result<LatchNode, zk::Error> {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        self.lock().uuid = Some(uuid.clone());
        let node = create_latch_node(
            LatchClient::new(&self.inner.sessions, client).with_id(&self.inner.instance_id),
            &self.dir,
            &uuid,
        )
        .await?;
        self.lock().node = Some(node.path.clone());
        tracing::debug!(group = %self.group, node = %node.path, adopted = node.adopted, "joined ZooKeeper election");
        Ok(node)
    }

    /// One term: create (or adopt) a latch node and contend with it until it ends.
    async fn term(&self, client: &zk::Client) -> TermEnd {
        let node = match self.join(client).await {
            Ok(n) => n,
            Err(e) => {
                return match self.classify(client, e) {
                    Step::Retry => TermEnd::Failed(Error::unavailable("ZooKeeper latch create", "timed out")),
                    Step::End(end) => end,
                }
            }
        };
        self.contend_with(client, node).await
    }

    /// Contends with `node` while watching the connection state.
    async fn contend_with(&self, client: &zk::Client, node: LatchNode) -> TermEnd {
        let tolerate = self.inner.sessions.config().tolerate_suspended_connections;
        let path = node.path.clone();
        tokio::select! {
            end = self.contend(client, node) => end,
            end = self.monitor(client, tolerate) => end,
            end = self.renew(client, &path) => end,
        }
    }

    /// Watches the connection state: a lost session ends the term, and so does a
    /// suspension while leading unless `tolerate` (then the term lasts at most until
    /// its validity runs out, which [`renew`](Self::renew) enforces).
    async fn monitor(&self, client: &zk::Client, tolerate: bool) -> TermEnd {
        let mut state = client.state_watcher();
        let mut suspended_at: Option<Instant> = None;
        loop {
            match client.state() {
                zk::SessionState::Disconnected => {
                    if suspended_at.is_none() {
                        suspended_at = Some(Instant::now());
                        if self.is_leading() {
                            if !tolerate {
                                tracing::warn!(group = %self.group, "ZooKeeper connection suspended; leadership ends (suspended connections are not tolerated)");
                                return TermEnd::Suspended;
                            }
                            let left = self
                                .lock()
                                .validity
                                .as_ref()
                                .and_then(Validity::valid_until)
                                .map(|u| u.saturating_duration_since(Instant::now()));
                            tracing::warn!(group = %self.group, ?left, "ZooKeeper connection suspended; keeping leadership while the session surely lives");
                        }
                    }
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    if let Some(at) = suspended_at.take() {
                        ha_core::metrics::record_suspended("zookeeper", at.elapsed());
                        if self.is_leading() {
                            tracing::info!(group = %self.group, "ZooKeeper connection back; leadership kept");
                        }
                    }
                }
                _ => return TermEnd::SessionLost,
            }
            let _ = state.changed().await;
        }
    }

    /// The latch loop: lead if lowest, else watch the predecessor.
    async fn contend(&self, client: &zk::Client, mut node: LatchNode) -> TermEnd {
        let uuid = self.lock().uuid.clone().unwrap_or_default();
        let prefix = uuid_prefix(&uuid);
        let limit = self.inner.sessions.request_timeout(client);
        macro_rules! attempt {
            ($e:expr) => {
                match crate::error::within(limit, $e).await {
                    Ok(v) => v,
                    Err(e) => match self.classify(client, e) {
                        Step::Retry => {
                            let _ = wait_connected(client, limit).await;
                            continue;
                        }
                        Step::End(end) => return end,
                    },
                }
            };
        }
        loop {
            // A candidate that may find itself lowest needs its own node's stat too:
            // both reads go out together (one round trip); the validity of a grant is
            // anchored at their send time.
            let checked_at = Instant::now();
            let listing = client.list_children(&self.dir);
            let own = (!self.is_leading()).then(|| client.check_stat(&node.path));
            let children = attempt!(listing);
            let own_stat = match own {
                Some(stat) => Some(attempt!(stat)),
                None => None,
            };
            let latch = ordered(children);
            let mine = latch.iter().filter(|n| n.starts_with(&prefix)).count();
            if mine > 1 && !self.is_leading() {
                // A create whose reply was lost landed after all: keep the lowest node
                // of this candidacy, delete the others.
                match attempt!(find_own(client, &self.dir, &uuid)) {
                    Some(own) => {
                        self.lock().node = Some(own.path.clone());
                        node = own;
                        continue;
                    }
                    None => return TermEnd::NodeGone,
                }
            }
            let Some(idx) = latch.iter().position(|n| *n == node.name) else {
                return TermEnd::NodeGone;
            };
            if idx == 0 {
                if let Some(stat) = own_stat.filter(|_| !self.is_leading()) {
                    let Some(stat) = stat else {
                        return TermEnd::NodeGone;
                    };
                    if stat.ephemeral_owner != client.session_id().0 {
                        return TermEnd::Failed(Error::Other {
                            message: format!("latch node {} is not owned by this session", node.path),
                            source: None,
                        });
                    }
                    let czxid = if stat.czxid > 0 { stat.czxid } else { node.czxid };
                    self.grant(
                        Fence::new(Epoch(czxid as u64), node.path.clone()),
                        checked_at,
                        client.session_timeout(),
                    );
                }
                // The leader watches the children (not only its node): it notices its
                // node going, and a late duplicate of its own create queued behind it.
                let (children, watcher) = attempt!(client.list_and_watch_children(&self.dir));
                if !children.contains(&node.name) {
                    return TermEnd::NodeGone;
                }
                for dup in children.iter().filter(|c| c.starts_with(&prefix) && **c != node.name) {
                    tracing::info!(node = %dup, "deleting duplicate latch node of a retried create");
                    let _ = client.delete(&format!("{}/{dup}", self.dir), None).await;
                }
                let event = watcher.changed().await;
                if event.session_state.is_terminated() {
                    return TermEnd::SessionLost;
                }
            } else {
                let predecessor = format!("{}/{}", self.dir, latch[idx - 1]);
                let (stat, watcher) = attempt!(client.check_and_watch_stat(&predecessor));
                if stat.is_some() {
                    let event = watcher.changed().await;
                    if event.session_state.is_terminated() {
                        return TermEnd::SessionLost;
                    }
                }
            }
        }
    }

    /// Leaves the election: no further events; our node (and any node of our current
    /// uuid) is deleted so the next candidate is granted at once.
    async fn resign(&self) -> Result<()> {
        self.resign_deleting(None).await
    }

    /// [`resign`](Self::resign), deleting the leader records `records` (node paths of
    /// [`Layout::leader_info`](crate::layout::Layout::leader_info)) of the term `fence`
    /// first. If `fence` is the current node's, one fenced multi deletes the records,
    /// their components' nodes and the latch node (the next candidate is granted after
    /// one round trip); otherwise, or if that multi is refused, each record is deleted
    /// on its own (fenced), then the node.
    async fn resign_deleting(&self, records: Option<(&Fence, &[ComponentId])>) -> Result<()> {
        let (uuid, node) = {
            let mut st = self.lock();
            st.resigned = true;
            st.leading = None;
            self.sink.resign();
            (st.uuid.take(), st.node.take())
        };
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
        if self.inner.sessions.is_closed() {
            return Ok(());
        }
        let Some(live) = self.inner.sessions.peek().await else {
            return Ok(());
        };
        let client = live.client;
        if client.state().is_terminated() {
            return Ok(());
        }
        let mut node = node;
        if let Some((fence, components)) = records {
            let paths: Vec<String> = components.iter().map(|c| self.inner.layout.leader_info(c)).collect();
            let together = node.as_deref() == Some(fence.token.as_str()) && paths.len() <= MAX_RECORDS_WITH_RESIGN;
            let deleted = together && {
                paths.iter().for_each(|p| self.inner.set_published_hint(p, false));
                let latch = fence.token.clone();
                self.inner
                    .sessions
                    .fenced_multi(fence, "resign", &latch, |w| {
                        for path in &paths {
                            w.add_delete(path, None)?;
                            w.add_delete(crate::layout::parent(path), None)?;
                        }
                        w.add_delete(&latch, None)
                    })
                    .await
                    .map_err(|f| tracing::debug!(?f, "records and latch node not deleted in one multi"))
                    .is_ok()
            };
            if deleted {
                node = None;
            } else {
                for component in components {
                    if let Err(e) = self.inner.delete_leader_information(fence, component).await {
                        tracing::debug!(%component, error = %e, "could not delete leader information on close");
                    }
                }
            }
        }
        if let Some(node) = node {
            match client.delete(&node, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => tracing::debug!(%node, error = %e, "could not delete latch node on resign"),
            }
        }
        // Duplicates of a retried create, or a create in flight when the task stopped.
        if let Some(uuid) = uuid {
            if let Err(e) = retire(&client, &self.dir, &uuid).await {
                tracing::debug!(error = %e, "could not remove every latch node on resign");
            }
        }
        Ok(())
    }
}

/// The election driver of one group.
pub(crate) struct ZkElectionDriver {
    candidacy: Arc<Candidacy>,
}

impl ZkElectionDriver {
    /// Joins the election: the latch node exists when this returns, so candidates
    /// that join earlier are ahead in line.
    pub(crate) async fn start(inner: Arc<Shared>, group: &str, sink: TermSink) -> Result<(Self, Arc<Candidacy>)> {
        let candidacy = Arc::new(Candidacy {
            dir: inner.layout.latch_dir(group),
            inner,
            group: group.to_string(),
            sink,
            st: Mutex::new(CandState::default()),
            tasks: Mutex::new(Vec::new()),
        });
        let live = candidacy.inner.sessions.live().await?;
        let node = candidacy
            .join(&live.client)
            .await
            .map_err(|e| read_error(&candidacy.dir, e))?;
        let election = tokio::spawn(candidacy.clone().run(Some((live, node))));
        candidacy.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(election);
        Ok((
            Self {
                candidacy: candidacy.clone(),
            },
            candidacy,
        ))
    }
}

impl Drop for ZkElectionDriver {
    fn drop(&mut self) {
        // Dropping without resign is a crash: the tasks stop, the node stays until the
        // session ends.
        for task in self.candidacy.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }
}

/// Resigns a candidacy (used by the backend's `close`).
pub(crate) async fn resign(candidacy: &Candidacy) -> Result<()> {
    candidacy.resign().await
}

#[async_trait]
impl LeaderElectionDriver for ZkElectionDriver {
    async fn publish_leader_information(
        &self,
        fence: &Fence,
        component: &ComponentId,
        info: &LeaderInformation,
    ) -> Result<()> {
        self.candidacy
            .inner
            .publish_leader_information(fence, component, info)
            .await
    }

    async fn delete_leader_information(&self, fence: &Fence, component: &ComponentId) -> Result<()> {
        self.candidacy.inner.delete_leader_information(fence, component).await
    }

    async fn hand_off(&self, fence: &Fence, target: &str) -> Result<()> {
        let c = &self.candidacy;
        crate::participants::hand_off(&c.inner, &c.dir, &c.group, fence, target).await?;
        // Our node is gone: the term is over; the latch loop joins again at the back.
        c.revoke("leadership handed off");
        Ok(())
    }

    async fn resign(&self) -> Result<()> {
        self.candidacy.resign().await
    }

    async fn delete_leader_information_and_resign(&self, fence: &Fence, components: &[ComponentId]) -> Result<()> {
        self.candidacy.resign_deleting(Some((fence, components))).await
    }
}

/// Most leader records deleted in the multi that resigns (a multi is one request,
/// bounded by the server's `jute.maxbuffer`).
const MAX_RECORDS_WITH_RESIGN: usize = 100;
