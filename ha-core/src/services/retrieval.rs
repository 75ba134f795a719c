//! `LeaderRetrievalService`: a watch-channel view of one component's confirmed leader.
//!
//! The value is `Some(LeaderInformation)` once a leader has confirmed and published
//! its address, `None` while no confirmed leader is known. The service owns the
//! watch: the backend only streams the raw record
//! ([`HaBackend::watch_leader_record`]); decoding (a corrupt record reads as "no
//! leader" and is logged), de-duplication and the channel live here, once for every
//! backend. Only confirmed leaders are ever visible, because only confirmed leaders
//! publish.

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;

use crate::driver::HaBackend;
use crate::error::{Error, Result};
use crate::ids::{ComponentId, LeaderInformation};

/// Decodes a raw leader record; a corrupt one reads as no leader.
pub(crate) fn decode_lenient(component: &ComponentId, record: Option<&Bytes>) -> Option<LeaderInformation> {
    let raw = record?;
    match LeaderInformation::from_json(&format!("leader/{component}"), raw) {
        Ok(info) => Some(info),
        Err(e) => {
            tracing::warn!(%component, error = %e, "unreadable leader information; treating as no leader");
            None
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches the confirmed leader of one component. Dropping it stops the watch.
pub struct LeaderRetrievalService {
    component: ComponentId,
    rx: watch::Receiver<Option<LeaderInformation>>,
    _task: AbortOnDrop,
}

impl std::fmt::Debug for LeaderRetrievalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderRetrievalService")
            .field("component", &self.component)
            .field("leader", &*self.rx.borrow())
            .finish()
    }
}

impl LeaderRetrievalService {
    /// Starts watching `component` on `backend`; the current leader is known when
    /// this returns.
    pub async fn start(backend: &dyn HaBackend, component: &ComponentId) -> Result<Self> {
        let mut records = backend.watch_leader_record(component).await?;
        let first = records.next().await.flatten();
        let (tx, rx) = watch::channel(decode_lenient(component, first.as_ref()));
        let watched = component.clone();
        let task = tokio::spawn(async move {
            while let Some(record) = records.next().await {
                let info = decode_lenient(&watched, record.as_ref());
                tx.send_if_modified(|cur| {
                    let changed = *cur != info;
                    *cur = info;
                    changed
                });
            }
        });
        Ok(Self {
            component: component.clone(),
            rx,
            _task: AbortOnDrop(task),
        })
    }

    /// The component watched.
    pub fn component(&self) -> &ComponentId {
        &self.component
    }

    /// The latest known confirmed leader.
    pub fn current(&self) -> Option<LeaderInformation> {
        self.rx.borrow().clone()
    }

    /// A receiver to await changes with (`changed()`, `wait_for()`).
    pub fn subscribe(&self) -> watch::Receiver<Option<LeaderInformation>> {
        self.rx.clone()
    }

    /// Waits until the published leader satisfies `pred` and returns it.
    pub async fn wait_for(
        &self,
        mut pred: impl FnMut(&Option<LeaderInformation>) -> bool,
    ) -> Result<Option<LeaderInformation>> {
        let mut rx = self.rx.clone();
        let v = rx
            .wait_for(|v| pred(v))
            .await
            .map_err(|_| Error::closed("leader retrieval"))?;
        Ok(v.clone())
    }
}
