//! Typed access to one backend's config section, with errors that name the full key.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{is_secret_key, parse_duration};
use crate::error::{Error, Result};

/// The entries of `high-availability.<mode>.*`, read with typed getters whose errors
/// name the full key.
#[derive(Clone, Copy)]
pub struct BackendOptions<'a> {
    mode: &'a str,
    entries: &'a BTreeMap<String, String>,
}

impl std::fmt::Debug for BackendOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = self.prefix();
        let mut m = f.debug_map();
        for (k, v) in self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            m.entry(k, &if is_secret_key(k) { "<redacted>" } else { v.as_str() });
        }
        m.finish()
    }
}

impl<'a> BackendOptions<'a> {
    pub(crate) fn new(mode: &'a str, entries: &'a BTreeMap<String, String>) -> Self {
        Self { mode, entries }
    }

    fn prefix(&self) -> String {
        format!("high-availability.{}.", self.mode)
    }

    /// The full key of the section-relative `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix())
    }

    /// The raw string value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.entries.get(&self.key(name)).map(|s| s.trim())
    }

    /// A string that must be set.
    pub fn required(&self, name: &str) -> Result<&'a str> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Error::config(self.key(name), "is required")),
        }
    }

    /// A duration (`500 ms`, `2 s`, `1 min`), or `default`.
    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|m| Error::config(self.key(name), m)),
        }
    }

    /// An unsigned integer, or `default`.
    pub fn u64(&self, name: &str, default: u64) -> Result<u64> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Error::config(self.key(name), format!("must be a non-negative integer, got `{v}`"))),
        }
    }

    /// A boolean (`true`/`false`), or `default`.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool> {
        match self.get(name) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(Error::config(
                self.key(name),
                format!("must be `true` or `false`, got `{v}`"),
            )),
        }
    }

    /// One of `valid`, or `default`; the error lists the valid values.
    pub fn one_of(&self, name: &str, valid: &[&'static str], default: &'static str) -> Result<&'static str> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => valid.iter().copied().find(|c| *c == v).ok_or_else(|| {
                Error::config(
                    self.key(name),
                    format!("unknown value `{v}`; valid values: {}", valid.join(", ")),
                )
            }),
        }
    }

    /// A comma-separated list (YAML/TOML lists arrive in this form).
    pub fn list(&self, name: &str) -> Vec<&'a str> {
        self.get(name)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
}
