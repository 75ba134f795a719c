//! Participants and targeted hand-off on the election keys.
//!
//! Every candidacy key carries its instance id as value, so the participants are the
//! keys of the group in create-revision order, the lowest leading.
//!
//! A hand-off cannot reorder create-revisions, so the target *jumps ahead*: one
//! fenced `txn` compares the leader's key (the fence), the target's key and every key
//! below the target's with the create-revisions just read, and deletes every key
//! below the target's, the leader's own included. The target is then the lowest key
//! and is granted when its predecessor's delete reaches its watch, with its key's
//! create-revision as epoch: above the old leader's, below every key created later
//! (the deleted in-between keys never led), so epochs keep growing. Contenders whose
//! key was deleted, the old leader among them, campaign again with a new key at the
//! back. The old term's writes fail their guard from that revision on.

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, SortOrder, SortTarget, TxnOp};
use ha_core::{Error, Fence, Participant, Result};

use crate::backend::Shared;
use crate::fenced::fenced_txn;

/// How often a hand-off is tried again when a key below the target vanished while
/// it was being built.
const HAND_OFF_ATTEMPTS: usize = 5;

/// The candidacy keys under `dir`, lowest create-revision first.
async fn keys(shared: &Shared, dir: &str) -> Result<Vec<KeyValue>> {
    let opts = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    let resp = crate::error::get(&shared.client, shared.timeout, dir, Some(opts))
        .await
        .map_err(|e| e.read(dir))?;
    Ok(resp.kvs().to_vec())
}

fn id_of(kv: &KeyValue) -> String {
    String::from_utf8_lossy(kv.value()).into_owned()
}

/// The contenders of the group under `dir`, the leader first.
pub(crate) async fn participants(shared: &Shared, dir: &str) -> Result<Vec<Participant>> {
    Ok(keys(shared, dir)
        .await?
        .iter()
        .enumerate()
        .map(|(i, kv)| Participant {
            id: id_of(kv),
            leader: i == 0,
        })
        .collect())
}

/// Moves the lead from the term `fence` to the key of instance `target` (see the
/// module docs).
pub(crate) async fn hand_off(shared: &Shared, dir: &str, group: &str, fence: &Fence, target: &str) -> Result<()> {
    let key = format!("leadership of group {group}");
    for _ in 0..HAND_OFF_ATTEMPTS {
        let kvs = keys(shared, dir).await?;
        let leads = kvs
            .first()
            .is_some_and(|kv| kv.key() == fence.token.as_bytes() && kv.create_revision() as u64 == fence.epoch.0);
        if !leads {
            return Err(fence.rejected(key));
        }
        let Some(to) = kvs
            .iter()
            .find(|kv| id_of(kv) == target && kv.key() != fence.token.as_bytes())
        else {
            return Err(Error::NotFound {
                key: format!("participant `{target}` of group {group}"),
            });
        };
        let guarded =
            |kv: &KeyValue| Compare::create_revision(kv.key().to_vec(), CompareOp::Equal, kv.create_revision());
        let below: Vec<&KeyValue> = kvs
            .iter()
            .filter(|kv| kv.create_revision() < to.create_revision())
            .collect();
        let mut conditions = vec![guarded(to)];
        conditions.extend(below.iter().map(|kv| guarded(kv)));
        let deletes = below.iter().map(|kv| TxnOp::delete(kv.key().to_vec(), None)).collect();
        match fenced_txn(shared, fence, "hand off leadership", &key, conditions, deletes, vec![]).await? {
            Ok(_) => {
                tracing::info!(%group, %target, "leadership handed off");
                return Ok(());
            }
            // The target or a key below it changed meanwhile: look again.
            Err(_) => continue,
        }
    }
    Err(Error::unavailable(
        key,
        "the election keys kept changing while the hand-off was built",
    ))
}
