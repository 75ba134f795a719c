//! The one watch per backend instance on the cluster ConfigMap (kube-runtime
//! `watcher`, which re-lists after a 410 Gone and re-watches after a dropped stream),
//! published as a `tokio::sync::watch` of [`Snapshot`]s. Election drivers and every
//! retrieval driver of the instance read from it: no per-component watches.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::shared::Snapshot;

/// Starts the watch of ConfigMap `name`; the task ends when every receiver is gone
/// or the handle is aborted.
pub(crate) fn start(api: Api<ConfigMap>, name: String) -> (watch::Receiver<Snapshot>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Snapshot::default());
    let task = tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff());
        // Objects seen during a (re-)listing; applied at its end.
        let mut listing: Option<Option<Arc<ConfigMap>>> = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(Event::Init) => listing = Some(None),
                Ok(Event::InitApply(cm)) => listing = Some(Some(Arc::new(cm))),
                Ok(Event::InitDone) => {
                    let cm = listing.take().flatten();
                    tx.send_replace(Snapshot { cm, synced: true });
                }
                Ok(Event::Apply(cm)) => {
                    tx.send_replace(Snapshot {
                        cm: Some(Arc::new(cm)),
                        synced: true,
                    });
                }
                Ok(Event::Delete(_)) => {
                    tx.send_replace(Snapshot { cm: None, synced: true });
                }
                Err(e) => {
                    tracing::debug!(error = %e, configmap = %name, "cluster ConfigMap watch interrupted; retrying")
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    (rx, task)
}
