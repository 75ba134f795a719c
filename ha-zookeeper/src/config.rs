//! `ZooKeeperConfig`: the `high-availability.zookeeper.*` section, typed and validated.
//!
//! | key (under `high-availability.zookeeper.`) | default | meaning |
//! |---|---|---|
//! | `quorum` | required | `host:port[,host:port…][/chroot]` |
//! | `path.root` | `/ha` | root znode; the cluster lives under `<root>/<cluster-id>` |
//! | `client.session-timeout` | `60 s` | requested session timeout (the server may clamp it) |
//! | `client.connection-timeout` | `15 s` | silence after which a connection counts as lost |
//! | `client.retry-wait` | `200 ms` | first back-off of a retried read (doubles per try) |
//! | `client.max-retry-attempts` | `5` | tries of a read before it fails as unavailable |
//! | `client.tolerate-suspended-connections` | `false` | keep leadership while the connection is suspended (see below) |
//! | `client.acl` | `open` | `open` (world:anyone) or `creator` (only the authenticated creator) |
//! | `client.digest-auth` | none | `user:password` for the `digest` scheme; never logged |
//! | `client.tls.ca-cert` | none | PEM CA file; when set, every quorum member is reached over TLS (crate feature `tls`) |
//! | `client.tls.client-cert`, `client.tls.client-key` | none | PEM client certificate and private key (both or neither), for servers with `ssl.clientAuth=need` |
//!
//! `client.tolerate-suspended-connections` (Flink's option of the same name): with
//! `false`, leadership ends as soon as the connection is suspended, as with Curator's
//! standard policy: a short network blip or a ZooKeeper leader election costs a
//! leadership hand-over (job restarts), but a leader never acts on a connection it
//! cannot confirm. With `true`, leadership survives suspensions up to the term's
//! validity: at most about half the session timeout after the last renewal that went
//! through the ensemble (never counted from when the disconnect was noticed), so
//! blips shorter than that cost nothing. Safety is the same either way (the validity
//! ends before the ensemble can expire the session, and every write is fenced); the
//! trade-off is fewer hand-overs against a leader that keeps acting, unconfirmed, for
//! up to that bound.

use std::fmt;
use std::time::Duration;

use ha_core::driver::kit::{TlsFiles, TlsRules};
use ha_core::{Error, HaConfig, Result};

/// Section-relative keys this backend reads.
pub(crate) const KEYS: &[&str] = &[
    "quorum",
    "path.root",
    "client.session-timeout",
    "client.connection-timeout",
    "client.retry-wait",
    "client.max-retry-attempts",
    "client.tolerate-suspended-connections",
    "client.acl",
    "client.digest-auth",
    "client.tls.ca-cert",
    "client.tls.client-cert",
    "client.tls.client-key",
];

/// Who may touch the znodes this backend creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclMode {
    /// `world:anyone` has all permissions.
    Open,
    /// Only the creator's authenticated identity has permissions (needs digest auth).
    Creator,
}

/// Typed configuration of the ZooKeeper backend. `Debug` never shows the digest
/// credentials.
#[derive(Clone)]
pub struct ZooKeeperConfig {
    /// Connect string: `host:port[,host:port…][/chroot]`.
    pub quorum: String,
    /// Root znode path (absolute, no trailing `/`; empty for the server root).
    pub root: String,
    /// Requested session timeout.
    pub session_timeout: Duration,
    /// Requested connection timeout; used up to 3/5 of the session timeout (the client
    /// pings after 3/8 of it of silence).
    pub connection_timeout: Duration,
    /// First back-off of retried reads.
    pub retry_wait: Duration,
    /// Tries of a read before it fails.
    pub max_retry_attempts: u32,
    /// Keep leadership while the connection is suspended, up to the term's validity
    /// (`false`: leadership ends at suspension). See the module docs.
    pub tolerate_suspended_connections: bool,
    /// ACL of created znodes.
    pub acl: AclMode,
    /// `user:password` for digest authentication.
    pub digest_auth: Option<String>,
    /// TLS to every quorum member, if set (needs the crate feature `tls`).
    pub tls: Option<TlsFiles>,
}

impl fmt::Debug for ZooKeeperConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZooKeeperConfig")
            .field("quorum", &self.quorum)
            .field("root", &self.root)
            .field("session_timeout", &self.session_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .field("retry_wait", &self.retry_wait)
            .field("max_retry_attempts", &self.max_retry_attempts)
            .field("tolerate_suspended_connections", &self.tolerate_suspended_connections)
            .field("acl", &self.acl)
            .field("digest_auth", &self.digest_auth.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl ZooKeeperConfig {
    /// A config for `quorum` with every other option at its default.
    pub fn new(quorum: impl Into<String>) -> Self {
        Self {
            quorum: quorum.into(),
            root: "/ha".into(),
            session_timeout: Duration::from_secs(60),
            connection_timeout: Duration::from_secs(15),
            retry_wait: Duration::from_millis(200),
            max_retry_attempts: 5,
            tolerate_suspended_connections: false,
            acl: AclMode::Open,
            digest_auth: None,
            tls: None,
        }
    }

    /// Reads and validates the `high-availability.zookeeper.*` section of `config`.
    pub fn from_ha_config(config: &HaConfig) -> Result<Self> {
        let o = config.backend_options();
        let d = Self::new("");
        let quorum = o.required("quorum")?.to_string();
        let root =
            normalize_root(o.get("path.root").unwrap_or("/ha")).map_err(|m| Error::config(o.key("path.root"), m))?;
        let session_timeout = o.duration("client.session-timeout", d.session_timeout)?;
        if session_timeout < Duration::from_millis(100) {
            return Err(Error::config(
                o.key("client.session-timeout"),
                "must be at least 100 ms",
            ));
        }
        let connection_timeout = o.duration("client.connection-timeout", d.connection_timeout)?;
        let retry_wait = o.duration("client.retry-wait", d.retry_wait)?;
        let max_retry_attempts = o.u64("client.max-retry-attempts", u64::from(d.max_retry_attempts))?;
        let max_retry_attempts = u32::try_from(max_retry_attempts)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Error::config(o.key("client.max-retry-attempts"), "must be between 1 and 2^32-1"))?;
        let tolerate_suspended_connections = o.bool(
            "client.tolerate-suspended-connections",
            d.tolerate_suspended_connections,
        )?;
        let acl = match o.one_of("client.acl", &["open", "creator"], "open")? {
            "creator" => AclMode::Creator,
            _ => AclMode::Open,
        };
        let digest_auth = o.get("client.digest-auth").filter(|s| !s.is_empty()).map(String::from);
        if let Some(auth) = &digest_auth {
            if !auth.contains(':') {
                // Never echo the value: it is a credential.
                return Err(Error::config(
                    o.key("client.digest-auth"),
                    "must have the form user:password",
                ));
            }
        }
        if acl == AclMode::Creator && digest_auth.is_none() {
            return Err(Error::config(
                o.key("client.acl"),
                "`creator` needs credentials: set high-availability.zookeeper.client.digest-auth",
            ));
        }
        let tls = TlsFiles::from_options(&o, "client.tls.", TLS_RULES)?;
        Ok(Self {
            quorum,
            root,
            session_timeout,
            connection_timeout,
            retry_wait,
            max_retry_attempts,
            tolerate_suspended_connections,
            acl,
            digest_auth,
            tls,
        })
    }
}

/// How this backend checks its `client.tls.*` keys (see [`TlsFiles`]).
pub(crate) const TLS_RULES: TlsRules = TlsRules {
    supported: cfg!(feature = "tls"),
    crate_name: "ha-zookeeper",
    ca_required: true,
};

/// `/ha/` → `/ha`, `/` → ``; rejects relative paths and empty segments.
pub(crate) fn normalize_root(root: &str) -> std::result::Result<String, String> {
    let root = root.trim();
    if !root.starts_with('/') {
        return Err(format!(
            "must be an absolute znode path starting with '/', got `{root}`"
        ));
    }
    let trimmed = root.trim_end_matches('/');
    if trimmed.split('/').skip(1).any(str::is_empty) {
        return Err(format!("must not contain empty path segments, got `{root}`"));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use std::path::PathBuf;

    use super::*;

    fn cfg(extra: &[(&str, &str)]) -> Result<ZooKeeperConfig> {
        let mut entries = BTreeMap::from([
            ("high-availability.type".to_string(), "zookeeper".to_string()),
            ("high-availability.storageDir".to_string(), "memory://x".to_string()),
        ]);
        for (k, v) in extra {
            entries.insert(format!("high-availability.zookeeper.{k}"), v.to_string());
        }
        ZooKeeperConfig::from_ha_config(&HaConfig::from_entries(entries)?)
    }

    #[test]
    fn defaults_and_overrides() {
        let c = cfg(&[("quorum", "127.0.0.1:2181")]).unwrap();
        assert_eq!(c.root, "/ha");
        assert_eq!(c.session_timeout, Duration::from_secs(60));
        assert_eq!(c.acl, AclMode::Open);
        let c = cfg(&[
            ("quorum", "a:1,b:2"),
            ("path.root", "/flink/"),
            ("client.session-timeout", "5 s"),
            ("client.acl", "creator"),
            ("client.digest-auth", "alice:s3cret"),
        ])
        .unwrap();
        assert_eq!(c.root, "/flink");
        assert_eq!(c.session_timeout, Duration::from_secs(5));
        assert_eq!(c.acl, AclMode::Creator);
    }

    #[test]
    fn errors_name_the_key() {
        let e = cfg(&[]).unwrap_err().to_string();
        assert!(e.contains("high-availability.zookeeper.quorum"), "{e}");
        let e = cfg(&[("quorum", "a:1"), ("client.acl", "closed")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("high-availability.zookeeper.client.acl") && e.contains("open, creator"),
            "{e}"
        );
        let e = cfg(&[("quorum", "a:1"), ("client.acl", "creator")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("digest-auth"), "{e}");
        let e = cfg(&[("quorum", "a:1"), ("path.root", "ha")]).unwrap_err().to_string();
        assert!(e.contains("high-availability.zookeeper.path.root"), "{e}");
    }

    #[test]
    fn tls_keys() {
        let c = cfg(&[("quorum", "a:1")]).unwrap();
        assert_eq!(c.tls, None);
        let r = cfg(&[("quorum", "a:1"), ("client.tls.ca-cert", "/etc/ca.pem")]);
        if cfg!(feature = "tls") {
            let tls = r.unwrap().tls.unwrap();
            assert_eq!(tls.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
            assert_eq!(tls.client_cert, None);
            let e = cfg(&[
                ("quorum", "a:1"),
                ("client.tls.ca-cert", "/etc/ca.pem"),
                ("client.tls.client-cert", "/etc/c.pem"),
            ])
            .unwrap_err()
            .to_string();
            assert!(e.contains("high-availability.zookeeper.client.tls.client-key"), "{e}");
            let e = cfg(&[("quorum", "a:1"), ("client.tls.client-key", "/etc/k.pem")])
                .unwrap_err()
                .to_string();
            assert!(e.contains("high-availability.zookeeper.client.tls.ca-cert"), "{e}");
        } else {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("client.tls.ca-cert") && e.contains("feature `tls`"), "{e}");
        }
    }

    #[test]
    fn debug_hides_credentials() {
        let c = cfg(&[("quorum", "a:1"), ("client.digest-auth", "alice:s3cret")]).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("alice"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        let e = cfg(&[("quorum", "a:1"), ("client.digest-auth", "nocolonsecret")])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("nocolonsecret"), "{e}");
    }
}
