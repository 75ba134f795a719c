//! The watches of one backend instance (kube-runtime `watcher`, which re-lists after
//! a 410 Gone and re-watches after a dropped stream), each on one object by name and
//! published as a `tokio::sync::watch`: the cluster ConfigMap as [`Snapshot`]s, which
//! election drivers and every retrieval driver of the instance read (no
//! per-component watches), and, with the Lease lock, each candidacy's lock Lease.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::shared::Snapshot;

/// Starts the watch of ConfigMap `name`; the task ends when every receiver is gone
/// or the handle is aborted.
pub(crate) fn start(api: Api<ConfigMap>, name: String) -> (watch::Receiver<Snapshot>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Snapshot::default());
    let task = follow(api, name, move |cm| {
        tx.send_replace(Snapshot { cm, synced: true });
        !tx.is_closed()
    });
    (rx, task)
}

/// Follows object `name`, calling `publish` with its state after each (re-)listing
/// and each event (`None`: absent); ends when `publish` returns `false`.
pub(crate) fn follow<K>(
    api: Api<K>,
    name: String,
    mut publish: impl FnMut(Option<Arc<K>>) -> bool + Send + 'static,
) -> JoinHandle<()>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff());
        // Objects seen during a (re-)listing; applied at its end.
        let mut listing: Option<Option<Arc<K>>> = None;
        while let Some(item) = stream.next().await {
            let open = match item {
                Ok(Event::Init) => {
                    listing = Some(None);
                    true
                }
                Ok(Event::InitApply(obj)) => {
                    listing = Some(Some(Arc::new(obj)));
                    true
                }
                Ok(Event::InitDone) => publish(listing.take().flatten()),
                Ok(Event::Apply(obj)) => publish(Some(Arc::new(obj))),
                Ok(Event::Delete(_)) => publish(None),
                Err(e) => {
                    tracing::debug!(error = %e, object = %name, "watch interrupted; retrying");
                    true
                }
            };
            if !open {
                return;
            }
        }
    })
}
