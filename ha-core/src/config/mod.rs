//! `HaConfig`: Flink-style HA configuration from YAML/TOML files and the environment.
//!
//! Keys follow Flink (`high-availability.type`, `high-availability.cluster-id`,
//! `high-availability.storageDir`, `state.checkpoints.num-retained`), with one section
//! per backend (`high-availability.<mode>.*`) and S3 options under
//! `high-availability.storage.*`. Everything is validated once, at load; every error
//! names the key and, for enumerations, the valid values.
//!
//! A Flink configuration file loads unchanged where the meaning is the same: see
//! [`flink`] for the mode names, Flink's key names, the keys accepted with a warning and
//! the defaults that differ from Flink's.
//!
//! # Environment overrides
//! Every key can be overridden by an environment variable named `HA_` followed by
//! the key upper-cased with `.` and `-` turned into `_`: `HA_HIGH_AVAILABILITY_TYPE`,
//! `HA_HIGH_AVAILABILITY_CLUSTER_ID`, `HA_HIGH_AVAILABILITY_STORAGEDIR`,
//! `HA_STATE_CHECKPOINTS_NUM_RETAINED`, `HA_HIGH_AVAILABILITY_ZOOKEEPER_QUORUM`,
//! `HA_JOB_RESULT_STORE_DELETE_ON_COMMIT`, … — every core and backend key, Flink's
//! names of them (`HA_KUBERNETES_NAMESPACE`), and the storage options:
//! `HA_HIGH_AVAILABILITY_STORAGE_<OPTION>` sets `high-availability.storage.<option>`
//! (lower-cased, e.g. `HA_HIGH_AVAILABILITY_STORAGE_AWS_REGION` →
//! `high-availability.storage.aws_region`). An override replaces the file's value
//! under either name.

mod duration;
mod flatten;
pub mod flink;
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
pub use crate::services::{CheckpointRetention, JobResultRetention};

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
/// `job-result-store.delete-on-commit` (Flink's key; default `true`)
pub const KEY_DELETE_ON_COMMIT: &str = JobResultRetention::KEY_DELETE_ON_COMMIT;
/// `job-result-store.retention` (a duration; unset: clean results are kept forever
/// when delete-on-commit is off)
pub const KEY_RESULT_RETENTION: &str = JobResultRetention::KEY_RETENTION;
/// `execution.checkpointing.externalized-checkpoint-retention` (Flink's key)
pub const KEY_CHECKPOINT_RETENTION: &str = CheckpointRetention::KEY;
/// `high-availability.health.tolerance`: how long after its term ran out a leader
/// that was not revoked still reads healthy (default 5 s).
pub const KEY_HEALTH_TOLERANCE: &str = "high-availability.health.tolerance";
/// `high-availability.election.observe-interval`: how often a leader observer reads
/// an election group's participants (default 100 ms).
pub const KEY_OBSERVE_INTERVAL: &str = "high-availability.election.observe-interval";
/// Prefix of the object-store options for `s3://` storage.
pub const STORAGE_OPTIONS_PREFIX: &str = "high-availability.storage.";

/// Default of [`KEY_HEALTH_TOLERANCE`].
pub const DEFAULT_HEALTH_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(5);

const CORE_KEYS: [&str; 10] = [
    KEY_TYPE,
    KEY_CLUSTER_ID,
    KEY_STORAGE_DIR,
    KEY_NUM_RETAINED,
    KEY_ON_UNREADABLE,
    KEY_DELETE_ON_COMMIT,
    KEY_RESULT_RETENTION,
    KEY_CHECKPOINT_RETENTION,
    KEY_HEALTH_TOLERANCE,
    KEY_OBSERVE_INTERVAL,
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
    checkpoint_retention: CheckpointRetention,
    job_result_retention: JobResultRetention,
    health_tolerance: std::time::Duration,
    observe_interval: std::time::Duration,
    warnings: Vec<String>,
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
            .field("checkpoint_retention", &self.checkpoint_retention)
            .field("job_result_retention", &self.job_result_retention)
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
    /// see [`BackendRegistry::validate`]). Flink's key names and mode names are
    /// understood (see [`flink`]).
    pub fn from_entries(mut entries: BTreeMap<String, String>) -> Result<Self> {
        let warnings = flink::normalize(&mut entries)?;
        let mode = entries
            .get(KEY_TYPE)
            .map(|s| flink::normalize_mode(s))
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
        let checkpoint_retention = match entries.get(KEY_CHECKPOINT_RETENTION) {
            Some(v) => CheckpointRetention::parse(v)?,
            None => CheckpointRetention::default(),
        };
        let delete_on_commit = match entries.get(KEY_DELETE_ON_COMMIT).map(|v| v.trim().to_ascii_lowercase()) {
            None => JobResultRetention::default().delete_on_commit,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                return Err(Error::config(
                    KEY_DELETE_ON_COMMIT,
                    format!("must be `true` or `false`, got `{v}`"),
                ))
            }
        };
        let duration = |key: &str| {
            entries
                .get(key)
                .map(|v| parse_duration(v).map_err(|m| Error::config(key, m)))
                .transpose()
        };
        let job_result_retention = JobResultRetention {
            delete_on_commit,
            retention: duration(KEY_RESULT_RETENTION)?,
        };
        let health_tolerance = duration(KEY_HEALTH_TOLERANCE)?.unwrap_or(DEFAULT_HEALTH_TOLERANCE);
        let observe_interval = duration(KEY_OBSERVE_INTERVAL)?.unwrap_or(crate::services::DEFAULT_OBSERVE_INTERVAL);
        if observe_interval.is_zero() {
            return Err(Error::config(KEY_OBSERVE_INTERVAL, "must be above zero"));
        }
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
            checkpoint_retention,
            job_result_retention,
            health_tolerance,
            observe_interval,
            warnings,
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
        Self::load_with_env(path, registry, std::env::vars())
    }

    /// Like [`HaConfig::load_with`] with the environment given as `vars` (name,
    /// value) instead of the process's.
    pub fn load_with_env(
        path: Option<&Path>,
        registry: &BackendRegistry,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut entries = match path {
            Some(p) => read_file(p)?,
            None => BTreeMap::new(),
        };
        apply_env(&mut entries, registry, vars.into_iter());
        let config = Self::from_entries(entries)?;
        registry.validate(&config)?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        Ok(config)
    }

    /// Notes about the configuration that did not stop it from loading: Flink keys
    /// without a meaning here, a Flink cluster-id path used as an id.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// What a job's end keeps of its checkpoints
    /// (`execution.checkpointing.externalized-checkpoint-retention`).
    pub fn checkpoint_retention(&self) -> CheckpointRetention {
        self.checkpoint_retention
    }

    /// How long clean job results are kept (`job-result-store.delete-on-commit`,
    /// `job-result-store.retention`).
    pub fn job_result_retention(&self) -> JobResultRetention {
        self.job_result_retention
    }

    /// How long after its term ran out an unrevoked leader still reads healthy
    /// (`high-availability.health.tolerance`).
    pub fn health_tolerance(&self) -> std::time::Duration {
        self.health_tolerance
    }

    /// How often a leader observer reads an election group's participants
    /// (`high-availability.election.observe-interval`).
    pub fn observe_interval(&self) -> std::time::Duration {
        self.observe_interval
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
            checkpoint_retention: CheckpointRetention::default(),
            job_result_retention: JobResultRetention::default(),
            health_tolerance: DEFAULT_HEALTH_TOLERANCE,
            observe_interval: crate::services::DEFAULT_OBSERVE_INTERVAL,
            warnings: Vec::new(),
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

/// Applies `HA_*` overrides from `vars` to file `entries`: every key the registry
/// knows, every Flink alias and ignored key, and `high-availability.storage.*`. An
/// override replaces the value under the ha-rs name and drops the file's value under
/// any other name of the same key.
fn apply_env(
    entries: &mut BTreeMap<String, String>,
    registry: &BackendRegistry,
    vars: impl Iterator<Item = (String, String)>,
) {
    let mut keys: Vec<String> = registry.known_keys();
    keys.extend(flink::ALIASES.iter().map(|(a, _)| a.to_string()));
    keys.extend(flink::IGNORED.iter().map(|(k, _)| k.to_string()));
    let by_var: BTreeMap<String, String> = keys.into_iter().map(|k| (env_var_for(&k), k)).collect();
    let storage_var = env_var_for(STORAGE_OPTIONS_PREFIX);
    for (var, value) in vars {
        let key = match by_var.get(&var) {
            Some(key) => key.clone(),
            None => match var.strip_prefix(storage_var.as_str()) {
                Some(option) if !option.is_empty() => {
                    format!("{STORAGE_OPTIONS_PREFIX}{}", option.to_ascii_lowercase())
                }
                _ => continue,
            },
        };
        let target = flink::canonical(&key).to_string();
        for alias in flink::aliases_of(&target) {
            entries.remove(alias);
        }
        entries.insert(target, value);
    }
}

pub(crate) fn core_keys() -> impl Iterator<Item = &'static str> {
    CORE_KEYS.into_iter()
}

pub(crate) use duration::parse_duration;

#[cfg(test)]
mod tests;
