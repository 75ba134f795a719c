//! Published leader information: `leader/<component>/connection_info` (JSON), written
//! with fenced multis, and the watch that reports changes to the election service
//! (which restores records changed or deleted from outside).

use std::sync::Arc;

use ha_core::driver::ElectionEvent;
use ha_core::{ComponentId, Error, Fence, LeaderInformation, Result};
use zookeeper_client as zk;

use crate::backend::Inner;
use crate::election::Candidacy;
use crate::error::write_error;
use crate::fenced::MultiFailure;

impl Inner {
    /// Reads and decodes a `connection_info` node; `None` if absent or undecodable
    /// (a corrupt record is treated as no leader, and the leader repairs it).
    pub(crate) async fn read_leader_information(&self, path: &str) -> Result<Option<LeaderInformation>> {
        let raw = self
            .sessions
            .read(path, |c| async move {
                match c.get_data(path).await {
                    Ok((data, _)) => Ok(Some(data)),
                    Err(zk::Error::NoNode) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(raw.and_then(|data| match LeaderInformation::from_json(path, &data) {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::warn!(%path, error = %e, "ignoring corrupt leader information");
                None
            }
        }))
    }

    /// Publishes `info` for `component`: set, or create (with parents) if absent;
    /// fenced either way.
    pub(crate) async fn publish_leader_information(
        &self,
        fence: &Fence,
        component: &ComponentId,
        info: &LeaderInformation,
    ) -> Result<()> {
        let inner = self;
        let path = inner.paths.leader_info(component);
        let data = info.to_json();
        let persistent = inner.sessions.create_options(zk::CreateMode::Persistent);
        let op = "publish leader information";
        for _ in 0..6 {
            let r = inner
                .sessions
                .fenced_multi(fence, op, &path, |w| w.add_set_data(&path, &data, None))
                .await;
            match r {
                Ok(_) => return Ok(()),
                Err(MultiFailure::Op {
                    error: zk::Error::NoNode,
                    ..
                }) => {}
                Err(f) => return Err(f.into_error(fence, op, &path, |_, e| write_error(op, &path, e))),
            }
            let r = inner
                .sessions
                .fenced_multi(fence, op, &path, |w| w.add_create(&path, &data, &persistent))
                .await;
            match r {
                Ok(_) => return Ok(()),
                Err(MultiFailure::Op {
                    error: zk::Error::NoNode,
                    ..
                }) => inner.sessions.ensure_parents(&path).await?,
                Err(MultiFailure::Op {
                    error: zk::Error::NodeExists,
                    ..
                }) => {}
                Err(f) => return Err(f.into_error(fence, op, &path, |_, e| write_error(op, &path, e))),
            }
        }
        Err(Error::unavailable(
            format!("ZooKeeper for {op} on {path}"),
            "node kept changing",
        ))
    }

    /// Deletes `component`'s record (and its then empty node), fenced.
    pub(crate) async fn delete_leader_information(&self, fence: &Fence, component: &ComponentId) -> Result<()> {
        let inner = self;
        let path = inner.paths.leader_info(component);
        let dir = crate::paths::parent(&path).to_string();
        let op = "delete leader information";
        // Delete the component's node with it when nothing else is in there.
        let r = inner
            .sessions
            .fenced_multi(fence, op, &path, |w| {
                w.add_delete(&path, None)?;
                w.add_delete(&dir, None)
            })
            .await;
        let r = match r {
            Err(MultiFailure::Op { .. }) => {
                inner
                    .sessions
                    .fenced_multi(fence, op, &path, |w| w.add_delete(&path, None))
                    .await
            }
            other => other,
        };
        match r {
            Ok(_)
            | Err(MultiFailure::Op {
                error: zk::Error::NoNode,
                ..
            }) => Ok(()),
            Err(f) => Err(f.into_error(fence, op, &path, |_, e| write_error(op, &path, e))),
        }
    }
}

/// Emits `LeaderInformationChanged` for every change under `leader/` (one
/// persistent recursive watch, re-registered on a new session).
pub(crate) async fn watch_changes(candidacy: Arc<Candidacy>) {
    let dir = candidacy.inner.paths.leader_dir();
    let backoff = candidacy.inner.sessions.config().retry_wait;
    loop {
        let live = match candidacy.inner.sessions.live().await {
            Ok(l) => l,
            Err(Error::Closed { .. }) => return,
            Err(_) => {
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let client = live.client;
        let mut watcher = match client.watch(&dir, zk::AddWatchMode::PersistentRecursive).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "could not watch leader information; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        loop {
            let event = watcher.changed().await;
            if event.event_type == zk::EventType::Session {
                if event.session_state.is_terminated() {
                    break;
                }
                continue;
            }
            let Some(component) = candidacy.inner.paths.component_of(&event.path) else {
                continue;
            };
            let info = match candidacy.inner.read_leader_information(&event.path).await {
                Ok(info) => info,
                Err(e) => {
                    tracing::debug!(%component, error = %e, "could not read changed leader information");
                    continue;
                }
            };
            candidacy.emit(ElectionEvent::LeaderInformationChanged { component, info });
        }
    }
}
