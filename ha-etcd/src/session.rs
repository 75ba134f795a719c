//! The session: one etcd lease per backend instance and the keep-alive loop we own.
//!
//! `etcd-client` only offers the raw keep-alive stream; nothing notices when it dies.
//! This loop sends a keep-alive every third of the granted TTL and tracks, by the local
//! monotonic clock, how long the lease is *certainly* valid: the server's expiry is at
//! least `send time of the last acknowledged keep-alive + granted TTL`, so our
//! deadline uses the send time, minus a safety margin. The lease counts as lost when
//! - a keep-alive answer carries TTL 0 (revoked, or expired on the server),
//! - the deadline passes without an answer (stream ended, connection broken, server
//!   restarting or partitioned): we stop trusting the lease before the server can
//!   expire it.
//!
//! While the deadline has not passed, a broken stream is simply reopened (a server
//! restart within the TTL keeps the lease, and with it leadership).
//!
//! On loss the state turns [`LeaseState::Pending`] and every granted candidacy is
//! revoked *synchronously* (the `Revoked` event is in its channel) before the old lease
//! is revoked on the server, so no other contender can be granted before our
//! revocation is delivered. Then a new lease is granted (with back-off) and the
//! candidacies campaign again on it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use etcd_client::Client;
use ha_core::driver::{TermSink, Validity};
use ha_core::Fence;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{rpc, RpcError};

/// One granted lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    /// Lease id.
    pub(crate) id: i64,
    /// TTL the server granted (may exceed the requested one).
    pub(crate) ttl: Duration,
}

/// The session's lease, as seen by everything built on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// A lease believed valid.
    Active(Lease),
    /// The last lease was lost; a new one is being granted.
    Pending,
    /// The instance was closed (or halted); nothing follows.
    Closed,
}

/// A candidacy's term reporting: grants happen only while the lease they came from is
/// still the active one, checked atomically with the grant.
pub(crate) struct Holder {
    sink: TermSink,
}

impl Holder {
    pub(crate) fn new(sink: TermSink) -> Self {
        Self { sink }
    }

    /// Grants `fence` iff `state` still shows `lease` as active, with the lease's
    /// validity. Returns whether the lease is still active.
    pub(crate) fn grant_if_active(
        &self,
        state: &watch::Receiver<LeaseState>,
        lease: i64,
        validity: Validity,
        fence: Fence,
    ) -> bool {
        let active = || matches!(*state.borrow(), LeaseState::Active(l) if l.id == lease);
        self.sink.grant_if(fence, validity, active);
        active()
    }

    /// Revokes the grant, if any.
    pub(crate) fn revoke(&self) {
        self.sink.revoke();
    }

    /// Silences the candidacy for good (after a resign or close).
    pub(crate) fn clear(&self) {
        self.sink.resign();
    }
}

/// The lease of one backend instance and its keep-alive task.
pub(crate) struct Session {
    client: Client,
    timeout: Duration,
    state_tx: Arc<watch::Sender<LeaseState>>,
    holders: Arc<Mutex<Vec<Weak<Holder>>>>,
    validity: Arc<Mutex<(i64, Validity)>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Session {
    /// Grants the first lease (so a connect fails fast when etcd is unreachable) and
    /// starts the keep-alive loop.
    pub(crate) async fn start(client: Client, ttl: Duration, timeout: Duration) -> Result<Self, RpcError> {
        // A grant is asked again while etcd is between leaders: at worst an extra lease
        // runs out by its TTL.
        let deadline = Instant::now() + timeout;
        let (lease, sent) = loop {
            match grant(&client, ttl, timeout).await {
                Err(e) if e.transient() && Instant::now() + Duration::from_millis(50) < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => break r?,
            }
        };
        let state_tx = Arc::new(watch::Sender::new(LeaseState::Active(lease)));
        let holders: Arc<Mutex<Vec<Weak<Holder>>>> = Arc::default();
        let validity = Arc::new(Mutex::new((
            lease.id,
            Validity::until(sent + lease.ttl - margin(lease.ttl)),
        )));
        let keeper = Keeper {
            client: client.clone(),
            requested_ttl: ttl,
            timeout,
            state: state_tx.clone(),
            holders: holders.clone(),
            validity: validity.clone(),
        };
        let task = tokio::spawn(keeper.run(lease, sent));
        Ok(Self {
            client,
            timeout,
            state_tx,
            holders,
            validity,
            task: Mutex::new(Some(task)),
        })
    }

    /// The validity of terms granted on `lease`: until the lease's certain expiry
    /// minus the margin, extended with every acknowledged keep-alive. Already expired
    /// if `lease` is not the current one.
    pub(crate) fn validity(&self, lease: i64) -> Validity {
        let v = self.validity.lock().unwrap_or_else(|e| e.into_inner());
        if v.0 == lease {
            v.1.clone()
        } else {
            Validity::until(Instant::now())
        }
    }

    /// A view of the lease state.
    pub(crate) fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.state_tx.subscribe()
    }

    /// The current lease state.
    pub(crate) fn state(&self) -> LeaseState {
        *self.state_tx.borrow()
    }

    /// The current lease id, if one is active.
    pub(crate) fn lease_id(&self) -> Option<i64> {
        match self.state() {
            LeaseState::Active(l) => Some(l.id),
            _ => None,
        }
    }

    /// Registers a candidacy to be revoked on lease loss.
    pub(crate) fn register(&self, holder: &Arc<Holder>) {
        let mut hs = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        hs.retain(|h| h.strong_count() > 0);
        hs.push(Arc::downgrade(holder));
    }

    /// Stops the keep-alive loop and marks the session closed; returns the lease that
    /// was active, if any. Does not touch the server.
    pub(crate) fn halt(&self) -> Option<i64> {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        let before = self.state_tx.send_replace(LeaseState::Closed);
        match before {
            LeaseState::Active(l) => Some(l.id),
            _ => None,
        }
    }

    /// Stops the loop and revokes the lease on the server, deleting every key bound
    /// to it (candidacies, locks).
    pub(crate) async fn close(&self) -> Result<(), RpcError> {
        for h in self.holders.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(h) = h.upgrade() {
                h.clear();
            }
        }
        let Some(id) = self.halt() else { return Ok(()) };
        self.validity.lock().unwrap_or_else(|e| e.into_inner()).1.expire();
        // With several endpoints the first pick may be a dead member; a request that
        // was never sent is safe to repeat.
        let mut attempts = 0;
        loop {
            match revoke(&self.client, id, self.timeout).await {
                Err(e) if e.not_sent() && attempts < 3 => attempts += 1,
                other => return other,
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

async fn grant(client: &Client, ttl: Duration, timeout: Duration) -> Result<(Lease, Instant), RpcError> {
    let sent = Instant::now();
    let mut lc = client.lease_client();
    let resp = rpc(timeout, lc.grant(ttl.as_secs() as i64, None)).await?;
    let lease = Lease {
        id: resp.id(),
        ttl: Duration::from_secs(resp.ttl().max(1) as u64),
    };
    tracing::debug!(lease = lease.id, ttl = ?lease.ttl, "etcd lease granted");
    Ok((lease, sent))
}

async fn revoke(client: &Client, id: i64, timeout: Duration) -> Result<(), RpcError> {
    let mut lc = client.lease_client();
    match rpc(timeout, lc.revoke(id)).await {
        Ok(_) => Ok(()),
        // Already gone (expired or revoked): nothing left to do.
        Err(RpcError::Etcd(etcd_client::Error::GRpcStatus(s))) if s.message().contains("not found") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Safety margin subtracted from the certain validity of a lease.
pub(crate) fn margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(50))
}

/// Why a lease stopped being trusted.
#[derive(Debug)]
enum Loss {
    /// The server says the lease is gone.
    Gone,
    /// No acknowledgement in time.
    Deadline,
}

struct Keeper {
    client: Client,
    requested_ttl: Duration,
    timeout: Duration,
    state: Arc<watch::Sender<LeaseState>>,
    holders: Arc<Mutex<Vec<Weak<Holder>>>>,
    validity: Arc<Mutex<(i64, Validity)>>,
}

impl Keeper {
    async fn run(self, mut lease: Lease, mut sent: Instant) {
        loop {
            let validity = {
                let mut v = self.validity.lock().unwrap_or_else(|e| e.into_inner());
                if v.0 != lease.id {
                    *v = (lease.id, Validity::until(sent + lease.ttl - margin(lease.ttl)));
                }
                v.1.clone()
            };
            let loss = self.keep(lease, sent, &validity).await;
            validity.expire();
            tracing::warn!(lease = lease.id, ?loss, "etcd session lease lost; revoking leadership");
            self.state.send_replace(LeaseState::Pending);
            for h in self.holders.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                if let Some(h) = h.upgrade() {
                    h.revoke();
                }
            }
            // Our keys may still exist on the server until the old lease expires there;
            // revoking it lets the next contender go now. Best effort.
            let client = self.client.clone();
            let (old, timeout) = (lease.id, self.timeout);
            tokio::spawn(async move {
                for _ in 0..5 {
                    if revoke(&client, old, timeout).await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            let mut backoff = Duration::from_millis(50);
            loop {
                match grant(&self.client, self.requested_ttl, self.timeout).await {
                    Ok((l, s)) => {
                        (lease, sent) = (l, s);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "etcd lease grant failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
            self.state.send_replace(LeaseState::Active(lease));
        }
    }

    /// Keeps `lease` alive until it is lost. `sent` is when its validity last
    /// started (grant or acknowledged keep-alive send time).
    async fn keep(&self, lease: Lease, sent: Instant, validity: &Validity) -> Loss {
        let period = lease.ttl / 3;
        let margin = margin(lease.ttl);
        let mut valid_until = sent + lease.ttl;
        let mut suspended_at: Option<Instant> = None;
        loop {
            let deadline = valid_until - margin;
            if Instant::now() >= deadline {
                return Loss::Deadline;
            }
            let opened_at = Instant::now();
            let budget = self.timeout.min(deadline - opened_at);
            let mut lc = self.client.lease_client();
            let (mut keeper, mut stream) = match rpc(budget, lc.keep_alive(lease.id)).await {
                Ok(pair) => pair,
                Err(RpcError::Etcd(etcd_client::Error::LeaseKeepAliveError(_))) => return Loss::Gone,
                Err(e) => {
                    tracing::debug!(lease = lease.id, error = %e, "keep-alive stream could not be opened");
                    tokio::time::sleep(
                        Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    continue;
                }
            };
            if let Some(at) = suspended_at.take() {
                ha_core::metrics::record_suspended("etcd", at.elapsed());
            }
            // Opening the stream exchanged one keep-alive that the server answered
            // with a positive TTL.
            valid_until = valid_until.max(opened_at + lease.ttl);
            validity.extend(valid_until - margin);
            let mut pending: VecDeque<Instant> = VecDeque::new();
            let mut next_send = Instant::now() + period;
            loop {
                let deadline = valid_until - margin;
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return Loss::Deadline,
                    _ = tokio::time::sleep_until(next_send) => {
                        next_send = Instant::now() + period;
                        pending.push_back(Instant::now());
                        if keeper.keep_alive().await.is_err() {
                            break;
                        }
                    }
                    msg = stream.message() => match msg {
                        Ok(Some(resp)) => {
                            let Some(at) = pending.pop_front() else { continue };
                            ha_core::metrics::record_keepalive("etcd", at.elapsed());
                            if resp.ttl() <= 0 {
                                return Loss::Gone;
                            }
                            valid_until = valid_until.max(at + Duration::from_secs(resp.ttl() as u64));
                            validity.extend(valid_until - margin);
                        }
                        Ok(None) | Err(_) => break,
                    },
                }
            }
            suspended_at.get_or_insert_with(Instant::now);
            tracing::debug!(lease = lease.id, "keep-alive stream ended; reopening");
        }
    }
}
