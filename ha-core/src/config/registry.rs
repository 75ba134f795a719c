//! Mode string → backend: the registry that built-in and custom backends join.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use async_trait::async_trait;

use super::{core_keys, HaConfig, KEY_TYPE, STORAGE_OPTIONS_PREFIX};
use crate::driver::HaBackend;
use crate::error::{Error, Result};

/// Backend modes that ship as separate crates, for a helpful error when one is
/// configured but not linked in.
const KNOWN_EXTERNAL: [(&str, &str); 3] = [
    ("zookeeper", "ha-zookeeper"),
    ("etcd", "ha-etcd"),
    ("kubernetes", "ha-kubernetes"),
];

/// A backend that can be chosen by mode string.
#[async_trait]
pub trait BackendProvider: Send + Sync {
    /// The mode string (`high-availability.type`) selecting this backend.
    fn mode(&self) -> &'static str;

    /// Section-relative keys this backend reads (`quorum` for
    /// `high-availability.zookeeper.quorum`); other keys in its section are errors.
    fn config_keys(&self) -> &'static [&'static str];

    /// Checks the backend's section; errors name the key.
    fn validate(&self, config: &HaConfig) -> Result<()>;

    /// Connects a new backend instance (one session) for `config.cluster_id()`.
    async fn connect(&self, config: &HaConfig) -> Result<Arc<dyn HaBackend>>;
}

/// Known backends by mode string.
#[derive(Clone, Default)]
pub struct BackendRegistry {
    providers: BTreeMap<&'static str, Arc<dyn BackendProvider>>,
    /// Why a backend crate's mode is not registered (see
    /// [`BackendRegistry::explain_unregistered`]).
    unregistered: BTreeMap<&'static str, String>,
}

impl std::fmt::Debug for BackendRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.providers.keys()).finish()
    }
}

fn global_lock() -> &'static RwLock<BackendRegistry> {
    static GLOBAL: OnceLock<RwLock<BackendRegistry>> = OnceLock::new();
    GLOBAL.get_or_init(|| RwLock::new(BackendRegistry::with_builtin()))
}

impl BackendRegistry {
    /// A registry with the built-in `embedded` backend.
    pub fn with_builtin() -> Self {
        let mut r = Self::default();
        r.register(Arc::new(crate::embedded::EmbeddedProvider));
        r
    }

    /// A snapshot of the process-wide registry.
    pub fn global() -> Self {
        global_lock().read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds `provider` to the process-wide registry (replacing one of the same mode).
    pub fn register_global(provider: Arc<dyn BackendProvider>) {
        global_lock()
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .register(provider);
    }

    /// Adds `provider` (replacing one of the same mode).
    pub fn register(&mut self, provider: Arc<dyn BackendProvider>) {
        self.providers.insert(provider.mode(), provider);
    }

    /// Records why the backend crates' modes (`zookeeper`, `etcd`, `kubernetes`) that
    /// are not registered by now are missing from this program, e.g. "built without
    /// the cargo feature `etcd`", so that a config selecting one gets `reason(mode)` in
    /// its error. Call it after registering the backends the program has.
    pub fn explain_unregistered(&mut self, reason: impl Fn(&str) -> String) {
        for (mode, _) in KNOWN_EXTERNAL {
            if !self.providers.contains_key(mode) {
                self.unregistered.insert(mode, reason(mode));
            }
        }
    }

    /// [`BackendRegistry::explain_unregistered`] on the process-wide registry.
    pub fn explain_unregistered_global(reason: impl Fn(&str) -> String) {
        global_lock()
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .explain_unregistered(reason);
    }

    /// Registered mode strings, sorted.
    pub fn modes(&self) -> Vec<&'static str> {
        self.providers.keys().copied().collect()
    }

    /// The provider of `mode`, or an error naming `high-availability.type` and the
    /// valid values.
    pub fn provider(&self, mode: &str) -> Result<Arc<dyn BackendProvider>> {
        if let Some(p) = self.providers.get(mode) {
            return Ok(p.clone());
        }
        if let Some((_, p)) = self.providers.iter().find(|(m, _)| m.eq_ignore_ascii_case(mode)) {
            return Ok(p.clone());
        }
        let valid = self.modes().join(", ");
        let hint = match self.unregistered.get(mode) {
            Some(reason) => format!(" ({reason})"),
            None => KNOWN_EXTERNAL
                .iter()
                .find(|(m, _)| *m == mode)
                .map(|(_, krate)| {
                    format!(" (`{mode}` is provided by the `{krate}` crate, which this program does not register)")
                })
                .unwrap_or_default(),
        };
        Err(Error::config(
            KEY_TYPE,
            format!("unknown mode `{mode}`{hint}; valid values: {valid}"),
        ))
    }

    /// Every key any registered backend or the core reads, fully qualified.
    pub fn known_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = core_keys().map(String::from).collect();
        for (mode, p) in &self.providers {
            keys.extend(p.config_keys().iter().map(|k| format!("high-availability.{mode}.{k}")));
        }
        keys
    }

    /// Checks the mode, rejects unknown `high-availability.*` keys, and lets the
    /// backend validate its section.
    pub fn validate(&self, config: &HaConfig) -> Result<()> {
        let provider = self.provider(config.mode())?;
        config.validate_core()?;
        let known = self.known_keys();
        for key in config.entries().keys() {
            if !key.starts_with("high-availability.") || key.starts_with(STORAGE_OPTIONS_PREFIX) {
                continue;
            }
            if known.iter().any(|k| k == key) || super::flink::is_ignored(key) {
                continue;
            }
            let section = key["high-availability.".len()..].split('.').next().unwrap_or_default();
            let msg = match self.providers.get(section) {
                Some(p) => format!(
                    "unknown key in the `{section}` section; valid keys: {}",
                    p.config_keys().join(", ")
                ),
                None if KNOWN_EXTERNAL.iter().any(|(m, _)| *m == section) => continue,
                None => "unknown key; core keys: high-availability.type, high-availability.cluster-id, high-availability.storageDir, high-availability.storage.*, high-availability.<mode>.*".to_string(),
            };
            return Err(Error::config(key.clone(), msg));
        }
        provider.validate(config)
    }

    /// Validates `config` and connects a backend instance for it.
    pub async fn connect(&self, config: &HaConfig) -> Result<Arc<dyn HaBackend>> {
        self.validate(config)?;
        self.provider(config.mode())?.connect(config).await
    }
}
