//! Participants and targeted hand-off on the latch.
//!
//! Every latch node carries its candidacy's instance id as data (as Curator's
//! `LeaderLatch` stores its participant id), so the participants are the latch
//! children in sequence order, the lowest leading.
//!
//! A hand-off cannot renumber nodes, so the target *jumps ahead*: one `multi` checks
//! the leader's own node (the fence), checks the target's node, and deletes every
//! node below the target's, the leader's own included. The target is then the lowest
//! node and is granted as soon as its predecessor watch fires, with its node's czxid
//! as epoch; that czxid is above the old leader's (created later) and below every
//! node created afterwards, and the deleted in-between nodes never led, so epochs
//! keep growing. Contenders whose node was deleted (the old leader among them) see
//! their node gone and join again at the back of the line with a new node. The old
//! term's writes fail their `check` from the commit on.

use std::sync::Arc;

use ha_core::{Error, Fence, Participant, Result};
use zookeeper_client as zk;

use crate::backend::Shared;
use crate::fenced::MultiFailure;
use crate::latch::{ordered, sequence};

/// How often a hand-off is tried again when an in-between contender's node vanished
/// while it was being built.
const HAND_OFF_ATTEMPTS: usize = 5;

/// The latch nodes of `dir` in sequence order, each with the instance id it carries.
async fn latch(shared: &Shared, dir: &str) -> Result<Vec<(String, String)>> {
    let children = shared.sessions.children(dir).await?;
    let mut out = Vec::new();
    for name in ordered(children) {
        let path = format!("{dir}/{name}");
        let data = shared
            .sessions
            .read(&path, |c| {
                let path = path.clone();
                async move {
                    match c.get_data(&path).await {
                        Ok((data, _)) => Ok(Some(data)),
                        Err(zk::Error::NoNode) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        if let Some(data) = data {
            let id = String::from_utf8(data).ok().filter(|s| !s.is_empty());
            out.push((name.clone(), id.unwrap_or(name)));
        }
    }
    Ok(out)
}

/// The contenders of the latch under `dir`, lowest (leading) first.
pub(crate) async fn participants(shared: &Shared, dir: &str) -> Result<Vec<Participant>> {
    Ok(latch(shared, dir)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, (_, id))| Participant { id, leader: i == 0 })
        .collect())
}

/// Moves the lead from the term `fence` to the node of instance `target` (see the
/// module docs).
pub(crate) async fn hand_off(shared: &Arc<Shared>, dir: &str, group: &str, fence: &Fence, target: &str) -> Result<()> {
    let key = format!("leadership of group {group}");
    for _ in 0..HAND_OFF_ATTEMPTS {
        let nodes = latch(shared, dir).await?;
        let own = fence.token.rsplit('/').next().unwrap_or_default();
        if nodes.first().map(|(n, _)| n.as_str()) != Some(own) {
            return Err(fence.rejected(key));
        }
        let Some((target_node, _)) = nodes.iter().find(|(n, id)| id == target && n != own) else {
            return Err(Error::NotFound {
                key: format!("participant `{target}` of group {group}"),
            });
        };
        let target_seq = sequence(target_node);
        let below: Vec<String> = nodes
            .iter()
            .filter(|(n, _)| sequence(n) < target_seq)
            .map(|(n, _)| format!("{dir}/{n}"))
            .collect();
        let target_path = format!("{dir}/{target_node}");
        let committed = shared
            .sessions
            .fenced_multi(fence, "hand off leadership", &key, |w| {
                w.add_check_version(&target_path, -1)?;
                for path in &below {
                    w.add_delete(path, None)?;
                }
                Ok(())
            })
            .await;
        match committed {
            Ok(_) => {
                tracing::info!(%group, %target, node = %target_path, "leadership handed off");
                return Ok(());
            }
            Err(MultiFailure::NotLeader) => return Err(fence.rejected(key)),
            // The target or an in-between contender left meanwhile: look again.
            Err(MultiFailure::Op {
                error: zk::Error::NoNode,
                ..
            }) => continue,
            Err(other) => {
                return Err(other.into_error(fence, "hand off leadership", &key, |_, e| {
                    crate::error::write_error("hand off leadership", &key, e)
                }))
            }
        }
    }
    Err(Error::unavailable(
        key,
        "the latch kept changing while the hand-off was built",
    ))
}
