//! The raw leader record of a component (`leader/<component>/connection_info`) as a
//! stream, through a persistent watch (ZooKeeper ≥ 3.6).
//!
//! The current value is read right after the watch is registered, so no change can
//! fall between the two. After a reconnect the node is read again (changes made while
//! disconnected are not lost); after a session loss the watch is registered anew on
//! the new session.

use std::sync::Arc;

use ha_core::driver::{leader_record_stream, LeaderRecordStream, RecordSender};
use ha_core::{ComponentId, Error, Result};
use zookeeper_client as zk;

use crate::backend::Shared;

/// Every component with a record (`leader/<component>/connection_info`), ascending.
pub(crate) async fn components(inner: &Shared) -> Result<Vec<ComponentId>> {
    let dir = format!("{}/leader", inner.layout.cluster());
    let children = inner.sessions.children(&dir).await?;
    let mut out = Vec::new();
    for name in children {
        let Ok(component) = ComponentId::new(name.clone()) else {
            continue;
        };
        let path = inner.layout.leader_info(&component);
        if inner.read_leader_record(&path).await?.is_some() {
            out.push(component);
        }
    }
    out.sort();
    Ok(out)
}

/// Registers the watch, reads the current value, then follows changes.
pub(crate) async fn watch(inner: Arc<Shared>, path: String) -> Result<LeaderRecordStream> {
    let first = register(&inner, &path).await?;
    let current = inner.read_leader_record(&path).await?;
    Ok(leader_record_stream(current, move |tx| follow(inner, path, tx, first)))
}

async fn register(inner: &Shared, path: &str) -> Result<zk::PersistentWatcher> {
    let live = inner.sessions.live().await?;
    live.client
        .watch(path, zk::AddWatchMode::Persistent)
        .await
        .map_err(|e| crate::error::read_error(path, e))
}

async fn follow(inner: Arc<Shared>, path: String, tx: RecordSender, first: zk::PersistentWatcher) {
    let backoff = inner.sessions.config().retry_wait;
    let mut watcher = Some(first);
    loop {
        let mut w = match watcher.take() {
            Some(w) => w,
            None => match register(&inner, &path).await {
                Ok(w) => w,
                Err(Error::Closed { .. }) => return,
                Err(e) => {
                    tracing::debug!(%path, error = %e, "could not watch leader information; retrying");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            },
        };
        // Whatever happened before this (re-)registration is read now.
        if let Ok(record) = inner.read_leader_record(&path).await {
            if !tx.send(record) {
                return;
            }
        }
        loop {
            let event = w.changed().await;
            if event.event_type == zk::EventType::Session {
                if event.session_state.is_terminated() {
                    break;
                }
                if event.session_state != zk::SessionState::SyncConnected {
                    continue;
                }
            }
            match inner.read_leader_record(&path).await {
                Ok(record) => {
                    if !tx.send(record) {
                        return;
                    }
                }
                Err(e) => tracing::debug!(%path, error = %e, "could not read leader information"),
            }
        }
    }
}
