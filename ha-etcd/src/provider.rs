//! Mode `etcd` in the backend registry.

use std::sync::Arc;

use async_trait::async_trait;
use ha_core::config::{BackendProvider, BackendRegistry};
use ha_core::{HaBackend, HaConfig, Result};

use crate::backend::EtcdBackend;
use crate::config::{EtcdConfig, KEYS};

/// The provider of mode `etcd`.
#[derive(Debug, Default, Clone, Copy)]
pub struct EtcdProvider;

#[async_trait]
impl BackendProvider for EtcdProvider {
    fn mode(&self) -> &'static str {
        "etcd"
    }

    fn config_keys(&self) -> &'static [&'static str] {
        KEYS
    }

    fn validate(&self, config: &HaConfig) -> Result<()> {
        EtcdConfig::from_options(&config.backend_options()).map(|_| ())
    }

    async fn connect(&self, config: &HaConfig) -> Result<Arc<dyn HaBackend>> {
        let etcd = EtcdConfig::from_options(&config.backend_options())?;
        Ok(Arc::new(EtcdBackend::connect(config.cluster_id(), &etcd).await?))
    }
}

/// Adds mode `etcd` to the process-wide backend registry.
pub fn register() {
    BackendRegistry::register_global(Arc::new(EtcdProvider));
}
