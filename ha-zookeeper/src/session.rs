//! The ZooKeeper session of one backend instance, and its replacement after expiry.
//!
//! A `zookeeper-client` [`Client`](zk::Client) reconnects by itself after a connection
//! loss (same session: ephemeral nodes and watches survive). Only when the session is
//! over (expired, closed, auth failed) is a new client needed: [`Sessions::client`]
//! hands out the live client and replaces a terminated one.
//!
//! Sessions are *detached*: dropping the last handle does not close the session, it
//! only drops the connection, so the session (and every ephemeral node of it) ends by
//! timeout exactly as when the process crashes. [`Sessions::close`] ends it
//! gracefully by re-attaching to it with a closing client.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ha_core::{Error, Result};
use zookeeper_client as zk;

use crate::config::{AclMode, ZooKeeperConfig};
use crate::error::{is_session_gone, is_transient, read_error, within};
use crate::tls;

/// The live client of the current session.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) client: zk::Client,
}

pub(crate) struct Sessions {
    config: ZooKeeperConfig,
    current: tokio::sync::Mutex<Option<Live>>,
    closed: AtomicBool,
    /// `R/C/leader/latch/`: every fence token of this cluster lies one group below.
    latch_root: std::sync::OnceLock<String>,
}

impl Sessions {
    /// Opens the first session (eagerly, so that a bad quorum fails at connect).
    pub(crate) async fn connect(config: ZooKeeperConfig) -> Result<Self> {
        if let Some((hosts, chroot)) = split_chroot(&config.quorum) {
            ensure_chroot(&config, hosts, chroot).await?;
        }
        let sessions = Self {
            config,
            current: tokio::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
            latch_root: std::sync::OnceLock::new(),
        };
        sessions.live().await?;
        Ok(sessions)
    }

    pub(crate) fn config(&self) -> &ZooKeeperConfig {
        &self.config
    }

    /// Sets the latch directory root of this instance's cluster (`R/C/leader/latch`).
    pub(crate) fn set_latch_root(&self, root: &str) {
        let _ = self.latch_root.set(format!("{}/", root.trim_end_matches('/')));
    }

    /// Whether `token` names a latch node of this cluster (`R/C/leader/latch/<group>/
    /// <node>`): a fence of another cluster-id, or any other path, is no term of ours,
    /// even if that node exists on the same ensemble.
    pub(crate) fn owns_fence_token(&self, token: &str) -> bool {
        let Some(root) = self.latch_root.get() else {
            return true;
        };
        let Some(rest) = token.strip_prefix(root.as_str()) else {
            return false;
        };
        match rest.split_once('/') {
            Some((group, node)) => {
                !group.is_empty() && !node.is_empty() && !node.contains('/') && node.contains("-latch-")
            }
            None => false,
        }
    }

    fn connector(&self) -> Result<zk::Connector> {
        let c = zk::Client::connector()
            .with_session_timeout(self.config.session_timeout)
            .with_connection_timeout(keepalive_connection_timeout(&self.config));
        connector_with_credentials(c, &self.config)
    }

    async fn open(&self) -> Result<zk::Client> {
        let connect = tls::connect(self.connector()?.with_detached(), &self.config, &self.config.quorum);
        let limit = self.config.session_timeout + Duration::from_secs(2);
        let client = match tokio::time::timeout(limit, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(zk::Error::AuthFailed)) => {
                return Err(Error::PermissionDenied {
                    what: format!("ZooKeeper authentication at {}", self.config.quorum),
                })
            }
            Ok(Err(e)) => return Err(Error::unavailable(format!("ZooKeeper at {}", self.config.quorum), e)),
            Err(_) => {
                return Err(Error::unavailable(
                    format!("ZooKeeper at {}", self.config.quorum),
                    format!("no session within {limit:?}"),
                ))
            }
        };
        tracing::info!(
            quorum = %self.config.quorum,
            session = %client.session_id(),
            requested = ?self.config.session_timeout,
            negotiated = ?client.session_timeout(),
            "ZooKeeper session established"
        );
        Ok(client)
    }

    /// The live client, opening a new session if the last one is over.
    pub(crate) async fn live(&self) -> Result<Live> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::closed("ZooKeeper backend instance"));
        }
        let mut current = self.current.lock().await;
        if let Some(live) = current.as_ref() {
            if !live.client.state().is_terminated() {
                return Ok(live.clone());
            }
            tracing::warn!(session = %live.client.session_id(), state = ?live.client.state(), "ZooKeeper session is over; opening a new one");
        }
        let client = self.open().await?;
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::closed("ZooKeeper backend instance"));
        }
        let live = Live { client };
        *current = Some(live.clone());
        Ok(live)
    }

    /// The live client without opening a session (`None` if there is none right now).
    pub(crate) async fn peek(&self) -> Option<Live> {
        self.current.lock().await.clone()
    }

    /// The ACL-bearing create options for `mode`.
    pub(crate) fn create_options(&self, mode: zk::CreateMode) -> zk::CreateOptions<'static> {
        match self.config.acl {
            AclMode::Open => mode.with_acls(zk::Acls::anyone_all()),
            AclMode::Creator => mode.with_acls(zk::Acls::creator_all()),
        }
    }

    /// Bound of a single request: past it, a read is unavailable and a write unknown.
    pub(crate) fn request_timeout(&self, client: &zk::Client) -> Duration {
        client.session_timeout().max(Duration::from_secs(1))
    }

    /// The children of `dir` (none if it does not exist), read as [`read`](Self::read)
    /// does.
    pub(crate) async fn children(&self, dir: &str) -> Result<Vec<String>> {
        self.read(dir, |c| async move {
            match c.list_children(dir).await {
                Ok(ch) => Ok(ch),
                Err(zk::Error::NoNode) => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Runs a read, retrying transient failures with back-off once the connection is
    /// back; a lost session is replaced before the next try.
    pub(crate) async fn read<T, F, Fut>(&self, key: &str, op: F) -> Result<T>
    where
        F: Fn(zk::Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, zk::Error>>,
    {
        let mut wait = self.config.retry_wait;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let live = self.live().await?;
            let limit = self.request_timeout(&live.client);
            tracing::trace!(key, attempt, "read");
            let err = match within(limit, op(live.client.clone())).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !(is_transient(&err) || is_session_gone(&err)) || attempt >= self.config.max_retry_attempts {
                return Err(read_error(key, err));
            }
            tracing::debug!(%key, error = %err, attempt, "retrying ZooKeeper read");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Ends the session gracefully: the server deletes its ephemeral nodes (latch and
    /// lock nodes) at once instead of after the session timeout. Best effort.
    pub(crate) async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(live) = self.current.lock().await.take() else {
            return;
        };
        if live.client.state().is_terminated() {
            return;
        }
        let info = live.client.session().clone();
        drop(live);
        // A non-detached client attached to the same session sends CloseSession when
        // dropped; the detached one loses the session with it.
        let Ok(connector) = self.connector() else {
            return;
        };
        let attach = tls::connect(connector.with_session(info), &self.config, &self.config.quorum);
        match tokio::time::timeout(self.config.session_timeout, attach).await {
            Ok(Ok(closer)) => {
                let mut state = closer.state_watcher();
                drop(closer);
                // Give the close request a moment to reach the server.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while !state.changed().await.is_terminated() {}
                })
                .await;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "ZooKeeper session already gone at close"),
            Err(_) => tracing::debug!("could not re-attach to the ZooKeeper session to close it"),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// The connection timeout given to the client: the configured one, at most 3/5 of the
/// session timeout. The client pings after 3/8 of it of silence (9/40 of the session
/// timeout at most); above 3/5 it ignores it and pings after 3/20, more than twice as
/// often as the Java client (after 1/3). Every packet pushes the server's expiry of
/// the session, so a crashed leader would hold its latch node longer.
fn keepalive_connection_timeout(config: &ZooKeeperConfig) -> Duration {
    config.connection_timeout.min(config.session_timeout * 3 / 5)
}

/// Adds the digest credentials and the TLS settings of `config` to `connector`.
fn connector_with_credentials(connector: zk::Connector, config: &ZooKeeperConfig) -> Result<zk::Connector> {
    let connector = match &config.digest_auth {
        Some(auth) => connector.with_auth("digest", auth.as_bytes()),
        None => connector,
    };
    tls::apply(connector, config)
}

/// `host:port,host:port/chroot` → (`host:port,host:port`, `/chroot`).
fn split_chroot(quorum: &str) -> Option<(&str, &str)> {
    let i = quorum.find('/')?;
    let chroot = quorum[i..].trim_end_matches('/');
    (!chroot.is_empty()).then_some((&quorum[..i], chroot))
}

/// Creates the chroot node if missing: a chrooted client cannot create its own root.
async fn ensure_chroot(config: &ZooKeeperConfig, hosts: &str, chroot: &str) -> Result<()> {
    let connector = zk::Client::connector().with_session_timeout(config.session_timeout);
    let connector = connector_with_credentials(connector, config)?;
    let limit = config.session_timeout + Duration::from_secs(2);
    let client = match tokio::time::timeout(limit, tls::connect(connector, config, hosts)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(Error::unavailable(format!("ZooKeeper at {hosts}"), e)),
        Err(_) => return Err(Error::unavailable(format!("ZooKeeper at {hosts}"), "no session")),
    };
    let options = match config.acl {
        AclMode::Open => zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        AclMode::Creator => zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all()),
    };
    match client.mkdir(chroot, &options).await {
        Ok(()) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(read_error(chroot, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroot_is_split_off_the_quorum() {
        assert_eq!(split_chroot("a:1,b:2/flink/prod"), Some(("a:1,b:2", "/flink/prod")));
        assert_eq!(split_chroot("a:1,b:2"), None);
        assert_eq!(split_chroot("a:1/"), None);
    }
}
