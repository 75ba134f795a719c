//! Leader retrieval: a persistent watch (ZooKeeper ≥ 3.6) on one component's
//! `connection_info` node, feeding a `tokio::sync::watch` channel.
//!
//! The current value is read right after the watch is registered, so no change can
//! fall between the two. After a reconnect the node is read again (changes made while
//! disconnected are not lost); after a session loss the watch is registered anew on
//! the new session.

use std::sync::Arc;

use ha_core::driver::LeaderRetrievalDriver;
use ha_core::{Error, LeaderInformation, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zookeeper_client as zk;

use crate::backend::Inner;

pub(crate) struct ZkRetrieval {
    task: JoinHandle<()>,
}

impl LeaderRetrievalDriver for ZkRetrieval {}

impl Drop for ZkRetrieval {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn publish(tx: &watch::Sender<Option<LeaderInformation>>, info: Option<LeaderInformation>) {
    tx.send_if_modified(|cur| {
        let changed = *cur != info;
        *cur = info;
        changed
    });
}

impl ZkRetrieval {
    /// Registers the watch, sends the current value, then follows changes.
    pub(crate) async fn start(
        inner: Arc<Inner>,
        path: String,
        tx: watch::Sender<Option<LeaderInformation>>,
    ) -> Result<Self> {
        let first = register(&inner, &path).await?;
        publish(&tx, inner.read_leader_information(&path).await?);
        let task = tokio::spawn(follow(inner, path, tx, first));
        Ok(Self { task })
    }
}

async fn register(inner: &Inner, path: &str) -> Result<zk::PersistentWatcher> {
    let live = inner.sessions.live().await?;
    live.client
        .watch(path, zk::AddWatchMode::Persistent)
        .await
        .map_err(|e| crate::error::read_error(path, e))
}

async fn follow(
    inner: Arc<Inner>,
    path: String,
    tx: watch::Sender<Option<LeaderInformation>>,
    first: zk::PersistentWatcher,
) {
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
        if let Ok(info) = inner.read_leader_information(&path).await {
            publish(&tx, info);
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
            match inner.read_leader_information(&path).await {
                Ok(info) => publish(&tx, info),
                Err(e) => tracing::debug!(%path, error = %e, "could not read leader information"),
            }
        }
    }
}
