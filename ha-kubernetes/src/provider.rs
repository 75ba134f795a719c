//! Mode `kubernetes` in the backend registry.

use std::sync::Arc;

use async_trait::async_trait;
use ha_core::{BackendProvider, HaBackend, HaConfig, Result};

use crate::config::{KubernetesConfig, KEYS, MODE};
use crate::layout::Layout;
use crate::KubernetesBackend;

/// Connects [`KubernetesBackend`]s from `high-availability.kubernetes.*`.
#[derive(Debug, Default, Clone, Copy)]
pub struct KubernetesProvider;

#[async_trait]
impl BackendProvider for KubernetesProvider {
    fn mode(&self) -> &'static str {
        MODE
    }

    fn config_keys(&self) -> &'static [&'static str] {
        KEYS
    }

    fn validate(&self, config: &HaConfig) -> Result<()> {
        Layout::new(config.cluster_id())?;
        KubernetesConfig::from_ha_config(config).map(|_| ())
    }

    async fn connect(&self, config: &HaConfig) -> Result<Arc<dyn HaBackend>> {
        let k8s = KubernetesConfig::from_ha_config(config)?;
        Ok(Arc::new(KubernetesBackend::connect(config.cluster_id(), &k8s).await?))
    }
}
