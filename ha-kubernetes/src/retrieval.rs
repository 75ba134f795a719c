//! Leader retrieval: a task per retrieval driver that maps the shared cluster-
//! ConfigMap watch onto one component's `leader.<component>` key.

use std::sync::Arc;

use ha_core::driver::LeaderRetrievalDriver;
use ha_core::{ComponentId, LeaderInformation};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::{Core, Snapshot};
use crate::names::leader_key;

pub(crate) struct KubeRetrieval {
    task: JoinHandle<()>,
}

impl LeaderRetrievalDriver for KubeRetrieval {}

impl Drop for KubeRetrieval {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn info_of(snapshot: &Snapshot, key: &str) -> Option<LeaderInformation> {
    let raw = snapshot.cm.as_ref()?.data.as_ref()?.get(key)?;
    match LeaderInformation::from_json(key, raw.as_bytes()) {
        Ok(i) => Some(i),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable leader information; treating as no leader");
            None
        }
    }
}

fn publish(tx: &watch::Sender<Option<LeaderInformation>>, info: Option<LeaderInformation>) {
    tx.send_if_modified(|cur| {
        let changed = *cur != info;
        *cur = info;
        changed
    });
}

impl KubeRetrieval {
    /// Waits (bounded by the request timeout) for the shared watch's first listing so
    /// the current leader is sent first, then follows the watch.
    pub(crate) async fn start(
        core: &Arc<Core>,
        component: &ComponentId,
        tx: watch::Sender<Option<LeaderInformation>>,
    ) -> Self {
        let key = leader_key(component);
        let mut rx = core.snapshots.clone();
        let synced = tokio::time::timeout(core.timings.request_timeout(), rx.wait_for(|s| s.synced))
            .await
            .is_ok_and(|r| r.is_ok());
        if !synced {
            tracing::debug!(%component, "cluster ConfigMap watch not listed yet; retrieval starts empty");
        }
        let first = rx.borrow_and_update().clone();
        if first.synced {
            publish(&tx, info_of(&first, &key));
        }
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let snapshot = rx.borrow_and_update().clone();
                        if snapshot.synced {
                            publish(&tx, info_of(&snapshot, &key));
                        }
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        Self { task }
    }
}
