//! `LeaderRetrievalService`: a watch-channel view of one component's confirmed leader.
//!
//! The value is `Some(LeaderInformation)` once a leader has confirmed and published
//! its address, `None` while no confirmed leader is known. Updates arrive from the
//! backend's watch, not by polling. Only confirmed leaders are ever visible, because
//! only confirmed leaders publish.

use tokio::sync::watch;

use crate::driver::{HaBackend, LeaderRetrievalDriver};
use crate::error::{Error, Result};
use crate::ids::{ComponentId, LeaderInformation};

/// Watches the confirmed leader of one component. Dropping it stops the watch.
pub struct LeaderRetrievalService {
    component: ComponentId,
    rx: watch::Receiver<Option<LeaderInformation>>,
    _driver: Box<dyn LeaderRetrievalDriver>,
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
    /// Starts watching `component` on `backend`.
    pub async fn start(backend: &dyn HaBackend, component: &ComponentId) -> Result<Self> {
        let (tx, rx) = watch::channel(None);
        let driver = backend.retrieval_driver(component, tx).await?;
        Ok(Self {
            component: component.clone(),
            rx,
            _driver: driver,
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
            .map_err(|_| Error::closed("leader retrieval driver"))?;
        Ok(v.clone())
    }
}
