//! Mode `zookeeper` for the ha-core backend registry.

use std::sync::Arc;

use async_trait::async_trait;
use ha_core::{BackendProvider, BackendRegistry, HaBackend, HaConfig, Result};

use crate::config::{ZooKeeperConfig, KEYS};
use crate::ZooKeeperBackend;

/// The provider of mode `zookeeper`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ZooKeeperProvider;

#[async_trait]
impl BackendProvider for ZooKeeperProvider {
    fn mode(&self) -> &'static str {
        "zookeeper"
    }

    fn config_keys(&self) -> &'static [&'static str] {
        KEYS
    }

    fn validate(&self, config: &HaConfig) -> Result<()> {
        ZooKeeperConfig::from_ha_config(config).map(|_| ())
    }

    async fn connect(&self, config: &HaConfig) -> Result<Arc<dyn HaBackend>> {
        let zk = ZooKeeperConfig::from_ha_config(config)?;
        Ok(Arc::new(
            ZooKeeperBackend::connect(&config.cluster_id().clone(), &zk).await?,
        ))
    }
}

/// Adds mode `zookeeper` to the process-wide backend registry.
pub fn register() {
    BackendRegistry::register_global(Arc::new(ZooKeeperProvider));
}
