//! `HaConfig`: Flink-style HA configuration from YAML/TOML files and the environment.
//!
//! Keys follow Flink (`high-availability.type`, `high-availability.cluster-id`,
//! `high-availability.storageDir`, `state.checkpoints.num-retained`), with one section
//! per backend (`high-availability.<mode>.*`) and S3 options under
//! `high-availability.storage.*`. Everything is validated once, at load; every error
//! names the key and, for enumerations, the valid values.
//!
//! # Environment overrides
//! Each known key can be overridden by an environment variable named `HA_` followed by
//! the key upper-cased with `.` and `-` turned into `_`: `HA_HIGH_AVAILABILITY_TYPE`,
//! `HA_HIGH_AVAILABILITY_CLUSTER_ID`, `HA_HIGH_AVAILABILITY_STORAGEDIR`,
//! `HA_STATE_CHECKPOINTS_NUM_RETAINED`, `HA_HIGH_AVAILABILITY_ZOOKEEPER_QUORUM`, …

mod duration;
mod flatten;
mod options;
mod registry;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub use options::BackendOptions;
pub use registry::{BackendProvider, BackendRegistry};

use crate::error::{Error, Result};
use crate::ids::ClusterId;
use crate::services::OnUnreadable;

/// `high-availability.type`
pub const KEY_TYPE: &str = "high-availability.type";
/// `high-availability.cluster-id`
pub const KEY_CLUSTER_ID: &str = "high-availability.cluster-id";
/// `high-availability.storageDir`
pub const KEY_STORAGE_DIR: &str = "high-availability.storageDir";
/// `state.checkpoints.num-retained`
pub const KEY_NUM_RETAINED: &str = "state.checkpoints.num-retained";
/// `high-availability.checkpoints.on-unreadable`
pub const KEY_ON_UNREADABLE: &str = crate::services::OnUnreadable::KEY;
/// Prefix of the object-store options for `s3://` storage.
pub const STORAGE_OPTIONS_PREFIX: &str = "high-availability.storage.";

const CORE_KEYS: [&str; 5] = [
    KEY_TYPE,
    KEY_CLUSTER_ID,
    KEY_STORAGE_DIR,
    KEY_NUM_RETAINED,
    KEY_ON_UNREADABLE,
];

/// The default mode: the in-process embedded backend.
pub const DEFAULT_MODE: &str = "embedded";
/// The default cluster-id, as in Flink.
pub const DEFAULT_CLUSTER_ID: &str = "default";
/// The storage used by the embedded mode when none is configured.
pub const DEFAULT_EMBEDDED_STORAGE: &str = "memory://ha-embedded";

/// Validated HA configuration.
#[derive(Clone)]
pub struct HaConfig {
    mode: String,
    cluster_id: ClusterId,
    storage_dir: String,
    storage_options: BTreeMap<String, String>,
    num_retained: usize,
    on_unreadable: OnUnreadable,
    entries: BTreeMap<String, String>,
}

/// Whether a key's value must never be shown.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "credential",
        "auth",
        "private",
        "key_id",
        "access-key",
        "access_key",
    ]
    .iter()
    .any(|s| k.contains(s))
        || k.ends_with(".key")
}

impl fmt::Debug for HaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .entries
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret_key(k) { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("HaConfig")
            .field("mode", &self.mode)
            .field("cluster_id", &self.cluster_id)
            .field("storage_dir", &self.storage_dir)
            .field("num_retained", &self.num_retained)
            .field("on_unreadable", &self.on_unreadable)
            .field("entries", &shown)
            .finish()
    }
}

/// Whether `value` is a URL (or a comma-separated list of them) with a password in
/// its user info.
pub(crate) fn url_has_password(value: &str) -> bool {
    value
        .split(',')
        .any(|v| url::Url::parse(v.trim()).is_ok_and(|u| u.password().is_some()))
}

/// The environment variable that overrides `key`.
pub fn env_var_for(key: &str) -> String {
    let mut name = String::from("HA_");
    name.extend(key.chars().map(|c| {
        if c == '.' || c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    name
}

impl HaConfig {
    /// Builds a config from flat entries, checking the core keys (not yet the mode:
    /// see [`BackendRegistry::validate`]).
    pub fn from_entries(entries: BTreeMap<String, String>) -> Result<Self> {
        let mode = entries
            .get(KEY_TYPE)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| DEFAULT_MODE.into());
        if mode.is_empty() {
            return Err(Error::config(KEY_TYPE, "is empty"));
        }
        let cluster_id = ClusterId::new(
            entries
                .get(KEY_CLUSTER_ID)
                .map(String::as_str)
                .unwrap_or(DEFAULT_CLUSTER_ID),
        )
        .map_err(|e| Error::config(KEY_CLUSTER_ID, e.to_string()))?;
        // A URL with `user:password@` would show its password wherever the value is
        // shown (Debug, errors naming the URL): refused, without echoing the value.
        if let Some(key) = entries.iter().find(|(_, v)| url_has_password(v)).map(|(k, _)| k) {
            return Err(Error::config(
                key.as_str(),
                "must not carry a password in the URL (`user:password@`); use the section's credential keys",
            ));
        }
        let storage_dir = match entries.get(KEY_STORAGE_DIR) {
            Some(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ if mode == DEFAULT_MODE => DEFAULT_EMBEDDED_STORAGE.to_string(),
            _ => String::new(),
        };
        let num_retained = match entries.get(KEY_NUM_RETAINED) {
            None => 1,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n >= 1 => n as usize,
                _ => {
                    return Err(Error::config(
                        KEY_NUM_RETAINED,
                        format!("must be a positive integer, got `{v}`"),
                    ))
                }
            },
        };
        let on_unreadable = match entries.get(KEY_ON_UNREADABLE) {
            Some(v) => OnUnreadable::parse(v)?,
            None => OnUnreadable::default(),
        };
        let storage_options = entries
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(STORAGE_OPTIONS_PREFIX)
                    .map(|o| (o.to_string(), v.clone()))
            })
            .collect();
        Ok(Self {
            mode,
            cluster_id,
            storage_dir,
            storage_options,
            num_retained,
            on_unreadable,
            entries,
        })
    }

    /// Parses a YAML document; `source` names it in errors.
    pub fn from_yaml_str(source: &str, text: &str) -> Result<Self> {
        Self::from_entries(parse_yaml(source, text)?)
    }

    /// Parses a TOML document; `source` names it in errors.
    pub fn from_toml_str(source: &str, text: &str) -> Result<Self> {
        Self::from_entries(parse_toml(source, text)?)
    }

    /// Loads `path` (`.yaml`, `.yml` or `.toml`, or none for defaults), applies
    /// environment overrides and validates everything against the process-wide
    /// [`BackendRegistry::global`].
    pub fn load(path: Option<&Path>) -> Result<Self> {
        Self::load_with(path, &BackendRegistry::global())
    }

    /// Like [`HaConfig::load`] with an explicit registry.
    pub fn load_with(path: Option<&Path>, registry: &BackendRegistry) -> Result<Self> {
        let mut entries = match path {
            Some(p) => read_file(p)?,
            None => BTreeMap::new(),
        };
        for key in registry.known_keys() {
            if let Ok(value) = std::env::var(env_var_for(&key)) {
                entries.insert(key, value);
            }
        }
        let config = Self::from_entries(entries)?;
        registry.validate(&config)?;
        Ok(config)
    }

    /// The mode string choosing the backend (`high-availability.type`).
    pub fn mode(&self) -> &str {
        &self.mode
    }

    /// The cluster-id (`high-availability.cluster-id`).
    pub fn cluster_id(&self) -> &ClusterId {
        &self.cluster_id
    }

    /// Payload storage URL (`high-availability.storageDir`); empty only in a config
    /// that failed [`BackendRegistry::validate`].
    pub fn storage_dir(&self) -> &str {
        &self.storage_dir
    }

    /// Checks what depends on the mode being known; called by the registry after the
    /// mode check so that a wrong mode is reported first.
    pub(crate) fn validate_core(&self) -> Result<()> {
        if self.storage_dir.is_empty() {
            return Err(Error::config(
                KEY_STORAGE_DIR,
                format!(
                    "is required for mode `{}`: a URL such as file:///var/lib/ha, s3://bucket/ha or memory://name",
                    self.mode
                ),
            ));
        }
        Ok(())
    }

    /// object_store options for S3 (`high-availability.storage.*`).
    pub fn storage_options(&self) -> &BTreeMap<String, String> {
        &self.storage_options
    }

    /// Completed checkpoints retained per job (`state.checkpoints.num-retained`).
    pub fn num_retained(&self) -> usize {
        self.num_retained
    }

    /// What checkpoint recovery does with unreadable entries
    /// (`high-availability.checkpoints.on-unreadable`: `quarantine` or `fail`).
    pub fn on_unreadable(&self) -> OnUnreadable {
        self.on_unreadable
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The options of the active backend's section (`high-availability.<mode>.*`).
    pub fn backend_options(&self) -> BackendOptions<'_> {
        BackendOptions::new(&self.mode, &self.entries)
    }

    /// Returns a copy with `key` set to `value`, re-validated.
    pub fn with(&self, key: &str, value: impl Into<String>) -> Result<Self> {
        let mut entries = self.entries.clone();
        entries.insert(key.to_string(), value.into());
        Self::from_entries(entries)
    }

    pub(crate) fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }
}

impl Default for HaConfig {
    fn default() -> Self {
        Self {
            mode: DEFAULT_MODE.into(),
            cluster_id: ClusterId::new(DEFAULT_CLUSTER_ID).unwrap_or_else(|_| ClusterId::random("default")),
            storage_dir: DEFAULT_EMBEDDED_STORAGE.into(),
            storage_options: BTreeMap::new(),
            num_retained: 1,
            on_unreadable: OnUnreadable::default(),
            entries: BTreeMap::new(),
        }
    }
}

fn parse_yaml(source: &str, text: &str) -> Result<BTreeMap<String, String>> {
    let doc: serde_norway::Value = serde_norway::from_str(text)
        .map_err(|e| Error::config("<document>", format!("{source} is not valid YAML: {e}")))?;
    let mut out = BTreeMap::new();
    flatten::flatten(source, doc.into(), &mut out)?;
    Ok(out)
}

fn parse_toml(source: &str, text: &str) -> Result<BTreeMap<String, String>> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // Not `{e}`: its Display quotes the offending source line, which may hold a
        // password or key. Position and message only.
        let at = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(" at line {line}, column {column}")
            })
            .unwrap_or_default();
        Error::config(
            "<document>",
            format!("{source} is not valid TOML{at}: {}", e.message().trim_end()),
        )
    })?;
    let mut out = BTreeMap::new();
    flatten::flatten(source, toml::Value::Table(doc).into(), &mut out)?;
    Ok(out)
}

fn read_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config("<config file>", format!("cannot read {source}: {e}")))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => parse_yaml(&source, &text),
        Some("toml") => parse_toml(&source, &text),
        _ => Err(Error::config(
            "<config file>",
            format!("{source}: unknown format (valid extensions: .yaml, .yml, .toml)"),
        )),
    }
}

pub(crate) fn core_keys() -> impl Iterator<Item = &'static str> {
    CORE_KEYS.into_iter()
}

pub(crate) use duration::parse_duration;

#[cfg(test)]
mod tests;
