//! `EtcdConfig`: the typed `high-availability.etcd.*` section.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `endpoints` | required | comma-separated client URLs (`http://host:2379`, `https://…` with TLS) |
//! | `key-prefix` | `/ha` | root of every key; the cluster lives under `<prefix>/<cluster-id>/` |
//! | `lease-ttl` | `10 s` | TTL of the session lease, whole seconds, at least 1 s (etcd may raise it to its minimum; the granted TTL is used) |
//! | `request-timeout` | a third of the TTL, at most 5 s | bound of every request; must be below the TTL |
//! | `username`, `password` | none | etcd user authentication (both or neither) |
//! | `tls.ca-cert`, `tls.client-cert`, `tls.client-key` | none | PEM files; needs the crate feature `tls` |
//!
//! `Debug` never shows the password.

use std::time::Duration;

use ha_core::config::BackendOptions;
use ha_core::driver::kit::{TlsFiles, TlsRules};
use ha_core::{Error, Result};

/// Default session lease TTL.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// Section-relative keys of the etcd section.
pub(crate) const KEYS: &[&str] = &[
    "endpoints",
    "key-prefix",
    "lease-ttl",
    "request-timeout",
    "username",
    "password",
    "tls.ca-cert",
    "tls.client-cert",
    "tls.client-key",
];

/// How this backend checks its `tls.*` keys (see [`TlsFiles`]): without a CA the
/// system's roots are trusted.
pub(crate) const TLS_RULES: TlsRules = TlsRules {
    supported: cfg!(feature = "tls"),
    crate_name: "ha-etcd",
    ca_required: false,
};

/// Connection and session settings of the etcd backend.
#[derive(Clone)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members.
    pub endpoints: Vec<String>,
    /// Root of every key (no trailing `/`).
    pub key_prefix: String,
    /// Requested TTL of the session lease (whole seconds).
    pub lease_ttl: Duration,
    /// Bound of every request; below `lease_ttl`.
    pub request_timeout: Duration,
    /// User name and password for etcd authentication.
    pub credentials: Option<(String, String)>,
    /// TLS settings, if the endpoints use TLS.
    pub tls: Option<TlsFiles>,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("key_prefix", &self.key_prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("request_timeout", &self.request_timeout)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl EtcdConfig {
    /// A config for `endpoints` with every other setting at its default.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            key_prefix: "/ha".to_string(),
            lease_ttl: DEFAULT_LEASE_TTL,
            request_timeout: default_request_timeout(DEFAULT_LEASE_TTL),
            credentials: None,
            tls: None,
        }
    }

    /// Sets the lease TTL and the request timeout that goes with it.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self.request_timeout = default_request_timeout(ttl);
        self
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Parses and validates the `high-availability.etcd.*` section.
    pub fn from_options(opts: &BackendOptions<'_>) -> Result<Self> {
        let endpoints: Vec<String> = opts.list("endpoints").into_iter().map(String::from).collect();
        if endpoints.is_empty() {
            return Err(Error::config(
                opts.key("endpoints"),
                "is required: comma-separated etcd client URLs",
            ));
        }
        let lease_ttl = opts.duration("lease-ttl", DEFAULT_LEASE_TTL)?;
        let request_timeout = opts.duration("request-timeout", default_request_timeout(lease_ttl))?;
        let credentials = match (opts.get("username"), opts.get("password")) {
            (None, None) => None,
            (Some(u), Some(p)) if !u.is_empty() => Some((u.to_string(), p.to_string())),
            (Some(_), None) => return Err(Error::config(opts.key("password"), "is required with username")),
            _ => return Err(Error::config(opts.key("username"), "is required with password")),
        };
        let tls = TlsFiles::from_options(opts, "tls.", TLS_RULES)?;
        let config = Self {
            endpoints,
            key_prefix: opts
                .get("key-prefix")
                .unwrap_or("/ha")
                .trim_end_matches('/')
                .to_string(),
            lease_ttl,
            request_timeout,
            credentials,
            tls,
        };
        config.validate(|name| opts.key(name))?;
        Ok(config)
    }

    /// Checks the settings; `key` maps a section-relative name to the reported key.
    pub(crate) fn validate(&self, key: impl Fn(&str) -> String) -> Result<()> {
        for e in &self.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(Error::config(
                    key("endpoints"),
                    format!("`{e}` must start with http:// or https://"),
                ));
            }
        }
        if self.lease_ttl < Duration::from_secs(1) || self.lease_ttl.subsec_nanos() != 0 {
            return Err(Error::config(
                key("lease-ttl"),
                "must be a whole number of seconds, at least 1 s (etcd lease TTLs are in seconds)",
            ));
        }
        if self.request_timeout.is_zero() || self.request_timeout >= self.lease_ttl {
            return Err(Error::config(
                key("request-timeout"),
                format!("must be above zero and below lease-ttl ({:?})", self.lease_ttl),
            ));
        }
        if !self.key_prefix.starts_with('/') {
            return Err(Error::config(key("key-prefix"), "must start with `/`"));
        }
        if let Some(tls) = &self.tls {
            tls.validate(|name| key(&format!("tls.{name}")), TLS_RULES)?;
        }
        Ok(())
    }
}

fn default_request_timeout(ttl: Duration) -> Duration {
    (ttl / 3).min(Duration::from_secs(5))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use ha_core::HaConfig;

    use super::*;

    fn config(entries: &[(&str, &str)]) -> Result<EtcdConfig> {
        let mut map = BTreeMap::from([
            ("high-availability.type".to_string(), "etcd".to_string()),
            ("high-availability.storageDir".to_string(), "memory://t".to_string()),
        ]);
        for (k, v) in entries {
            map.insert(format!("high-availability.etcd.{k}"), v.to_string());
        }
        let cfg = HaConfig::from_entries(map)?;
        EtcdConfig::from_options(&cfg.backend_options())
    }

    #[test]
    fn defaults_and_parsing() {
        let c = config(&[("endpoints", "http://a:2379, http://b:2379")]).unwrap();
        assert_eq!(c.endpoints, vec!["http://a:2379", "http://b:2379"]);
        assert_eq!(c.key_prefix, "/ha");
        assert_eq!(c.lease_ttl, DEFAULT_LEASE_TTL);
        assert!(c.request_timeout < c.lease_ttl);
    }

    #[test]
    fn errors_name_the_key() {
        let e = config(&[]).unwrap_err().to_string();
        assert!(e.contains("high-availability.etcd.endpoints"), "{e}");
        let e = config(&[("endpoints", "http://a:1"), ("lease-ttl", "500 ms")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("high-availability.etcd.lease-ttl"), "{e}");
        let e = config(&[
            ("endpoints", "http://a:1"),
            ("lease-ttl", "2 s"),
            ("request-timeout", "2 s"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("high-availability.etcd.request-timeout"), "{e}");
        let e = config(&[("endpoints", "http://a:1"), ("username", "u")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("high-availability.etcd.password"), "{e}");
    }

    #[test]
    fn debug_hides_the_password() {
        let c = config(&[
            ("endpoints", "http://a:1"),
            ("username", "root"),
            ("password", "hunter2-secret"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("root"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
