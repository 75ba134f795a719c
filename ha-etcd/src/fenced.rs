//! Fenced transactions: every leader write is one etcd `txn` whose guard compares the
//! writer's election key's create-revision with the fence epoch.
//!
//! The election key lives on the leader's lease and is the lowest of its group while
//! it exists, so "this key still exists with this create-revision" is exactly "this
//! term still holds leadership" — checked by etcd in the same request as the write.
//! When a guard fails, the `else` branch reads the election key back so that a lost
//! leadership (`NotLeader`) is told apart from a plain conflict.

use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp, TxnOpResponse, TxnResponse};
use ha_core::{Error, Fence, Result};

use crate::backend::Shared;
use crate::error::rpc;

/// The server-side check of one fence.
pub(crate) struct FenceGuard {
    key: String,
    epoch: i64,
}

impl FenceGuard {
    /// The guard for `fence`, or `NotLeader` at once if the fence cannot belong to
    /// this cluster's elections.
    pub(crate) fn new(shared: &Shared, fence: &Fence, target: &str) -> Result<Self> {
        let epoch = i64::try_from(fence.epoch.0).ok().filter(|e| *e > 0);
        match epoch {
            Some(epoch) if fence.token.starts_with(&shared.layout.latch_root()) => Ok(Self {
                key: fence.token.clone(),
                epoch,
            }),
            _ => Err(fence.rejected(target)),
        }
    }

    pub(crate) fn compare(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.epoch)
    }

    fn read_back(&self) -> TxnOp {
        TxnOp::get(self.key.clone(), None)
    }

    fn held_in(&self, kv: Option<&KeyValue>) -> bool {
        kv.is_some_and(|kv| kv.create_revision() == self.epoch)
    }
}

/// The result of a fenced transaction whose guard held.
pub(crate) struct Applied {
    /// Revision of the transaction (the new mod-revision of everything it wrote).
    pub(crate) revision: i64,
}

/// A fenced transaction whose extra conditions failed while the fence held: the
/// `else` reads (after the fence read-back) are in `responses`.
pub(crate) struct Refused {
    pub(crate) responses: Vec<TxnOpResponse>,
}

/// Runs `when [fence, conditions…] then [ops…] else [read fence, reads…]`.
///
/// `Err(NotLeader)` if the fence failed; `Ok(Err(refused))` if only `conditions`
/// failed; a lost reply is `OutcomeUnknown` for `op` on `key`.
pub(crate) async fn fenced_txn(
    shared: &Shared,
    fence: &Fence,
    op: &'static str,
    key: &str,
    conditions: Vec<Compare>,
    ops: Vec<TxnOp>,
    reads: Vec<TxnOp>,
) -> Result<std::result::Result<Applied, Refused>> {
    let guard = FenceGuard::new(shared, fence, key)?;
    let mut compares = vec![guard.compare()];
    compares.extend(conditions);
    let mut else_ops = vec![guard.read_back()];
    else_ops.extend(reads);
    let txn = Txn::new().when(compares).and_then(ops).or_else(else_ops);
    let mut kv = shared.client.kv_client();
    tracing::trace!(op, key, "fenced txn");
    let resp = rpc(shared.timeout, kv.txn(txn)).await.map_err(|e| e.write(op, key))?;
    tracing::trace!(op, key, succeeded = resp.succeeded(), "fenced txn done");
    let revision = revision_of(&resp);
    if resp.succeeded() {
        return Ok(Ok(Applied { revision }));
    }
    let mut responses = resp.op_responses();
    if responses.is_empty() || !guard.held_in(first_kv(&responses[0])) {
        return Err(fence.rejected(key));
    }
    responses.remove(0);
    Ok(Err(Refused { responses }))
}

/// The header revision of a transaction.
pub(crate) fn revision_of(resp: &TxnResponse) -> i64 {
    resp.header().map(|h| h.revision()).unwrap_or_default()
}

/// The first key-value of a `get` response inside a transaction.
pub(crate) fn first_kv(resp: &TxnOpResponse) -> Option<&KeyValue> {
    match resp {
        TxnOpResponse::Get(g) => g.kvs().first(),
        _ => None,
    }
}

/// An error for a transaction response that does not have the expected shape.
pub(crate) fn malformed(key: &str) -> Error {
    Error::Other {
        message: format!("etcd returned an unexpected transaction response for {key}"),
        source: None,
    }
}
