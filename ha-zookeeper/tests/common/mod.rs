//! The ZooKeeper harness of the conformance suite and the backend-specific tests.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use ha_core::{ClusterId, ComponentId, Error, HaBackend, Result};
use ha_testkit::chaos::{ChaosTarget, Freeze, SplitMix64};
use ha_testkit::{FaultProxy, Harness, ZooKeeperServer};
use ha_zookeeper::{ZooKeeperBackend, ZooKeeperConfig};
use zookeeper_client as zk;

/// Session timeout the suite asks for (the test server grants it).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(4);

/// One ZooKeeper server for the whole test binary (each case uses its own
/// cluster-id). Its JVM dies with the test process (see `ZooKeeperServer`).
pub fn shared_server() -> Arc<ZooKeeperServer> {
    static SERVER: OnceLock<Arc<ZooKeeperServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| Arc::new(ZooKeeperServer::start().expect("start ZooKeeper")))
        .clone()
}

/// The backend config for `quorum` with the suite's timeouts.
pub fn config(quorum: &str, session_timeout: Duration) -> ZooKeeperConfig {
    let mut c = ZooKeeperConfig::new(quorum);
    c.session_timeout = session_timeout;
    c.retry_wait = Duration::from_millis(50);
    c
}

/// Runs the suite on a ZooKeeper server.
#[derive(Clone, Debug)]
pub struct ZkHarness {
    quorum: String,
    session_timeout: Duration,
    /// Set when the harness owns its server: then it may kill or freeze it.
    own_server: Option<Arc<ZooKeeperServer>>,
}

impl ZkHarness {
    pub fn new(quorum: impl Into<String>, session_timeout: Duration) -> Self {
        Self {
            quorum: quorum.into(),
            session_timeout,
            own_server: None,
        }
    }

    /// A harness on a server of its own, which chaos runs may restart and freeze.
    pub fn owning(server: Arc<ZooKeeperServer>, session_timeout: Duration) -> Self {
        Self {
            quorum: server.connect_string(),
            session_timeout,
            own_server: Some(server),
        }
    }

    pub fn config(&self) -> ZooKeeperConfig {
        config(&self.quorum, self.session_timeout)
    }

    /// A fresh, non-detached admin client (closes its session on drop).
    pub async fn admin(&self) -> Result<zk::Client> {
        zk::Client::connector()
            .with_session_timeout(self.session_timeout)
            .connect(&self.quorum)
            .await
            .map_err(|e| Error::unavailable("ZooKeeper admin client", e))
    }

    pub fn cluster_path(&self, cluster_id: &ClusterId) -> String {
        format!("{}/{cluster_id}", self.config().root)
    }
}

/// Runs a blocking member operation (kill/restart wait for the process) off the
/// runtime's workers; panics if it fails.
pub async fn member_op(
    zk: &Arc<ZooKeeperServer>,
    what: &str,
    i: usize,
    op: fn(&ZooKeeperServer, usize) -> std::io::Result<()>,
) {
    let zk = zk.clone();
    match tokio::task::spawn_blocking(move || op(&zk, i)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("ZooKeeper member {i}: {what} failed: {e}"),
        Err(e) => panic!("ZooKeeper member {i}: {what} panicked: {e}"),
    }
}

/// Index of the ZooKeeper leader (waits a little during an election).
pub async fn zk_leader(zk: &Arc<ZooKeeperServer>) -> Option<usize> {
    for _ in 0..60 {
        let zk = zk.clone();
        if let Ok(Some(l)) = tokio::task::spawn_blocking(move || zk.leader()).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The harness on the shared server.
pub fn harness() -> ZkHarness {
    init_tracing();
    ZkHarness::new(shared_server().connect_string(), SESSION_TIMEOUT)
}

/// Every znode at or below `path` (empty if `path` does not exist).
pub async fn list_tree(client: &zk::Client, path: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    match client.check_stat(path).await {
        Ok(Some(_)) => out.push(path.to_string()),
        Ok(None) => return Ok(out),
        Err(e) => return Err(Error::unavailable("list", e)),
    }
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        match client.list_children(&p).await {
            Ok(children) => out.extend(children.into_iter().map(|c| format!("{p}/{c}"))),
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(Error::unavailable("list", e)),
        }
        i += 1;
    }
    Ok(out)
}

#[async_trait]
impl Harness for ZkHarness {
    fn name(&self) -> &str {
        "zookeeper"
    }

    async fn connect(&self, cluster_id: &ClusterId) -> Result<Arc<dyn HaBackend>> {
        Ok(Arc::new(
            ZooKeeperBackend::connect(&cluster_id.clone(), &self.config()).await?,
        ))
    }

    fn crash_timeout(&self) -> Duration {
        // Expiry happens within one tick after the timeout; then one watch round trip.
        self.session_timeout + Duration::from_secs(1)
    }

    async fn list_records(&self, cluster_id: &ClusterId) -> Result<Vec<String>> {
        list_tree(&self.admin().await?, &self.cluster_path(cluster_id)).await
    }

    async fn write_leader_record(
        &self,
        cluster_id: &ClusterId,
        component: &ComponentId,
        record: Option<bytes::Bytes>,
    ) -> Result<()> {
        let path = format!("{}/leader/{component}/connection_info", self.cluster_path(cluster_id));
        write_record(&self.admin().await?, &path, record, zk::Acls::anyone_all()).await
    }
}

/// Writes (creating parents) or deletes the node at `path` behind the services' back.
pub(crate) async fn write_record(
    client: &zk::Client,
    path: &str,
    record: Option<bytes::Bytes>,
    acls: zk::Acls<'static>,
) -> Result<()> {
    let failed = |e| Error::unavailable("write leader record", e);
    let Some(data) = record else {
        return match client.delete(path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => Ok(()),
            Err(e) => Err(failed(e)),
        };
    };
    match client.set_data(path, &data, None).await {
        Ok(_) => return Ok(()),
        Err(zk::Error::NoNode) => {}
        Err(e) => return Err(failed(e)),
    }
    let persistent = zk::CreateMode::Persistent.with_acls(acls);
    let mut prefix = String::new();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        prefix.push('/');
        prefix.push_str(part);
        let bytes: &[u8] = if i + 1 == parts.len() { &data } else { &[] };
        match client.create(&prefix, bytes, &persistent).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(())
}

/// Freezes a contender as SIGSTOP would: its connection stays open, nothing flows.
struct ProxyFreeze(FaultProxy);

impl Freeze for ProxyFreeze {
    fn freeze(&self) {
        self.0.blackhole();
    }

    fn thaw(&self) {
        self.0.heal();
    }
}

#[async_trait]
impl ChaosTarget for ZkHarness {
    async fn connect_freezable(&self, cluster_id: &ClusterId) -> Result<(Arc<dyn HaBackend>, Box<dyn Freeze>)> {
        let first = self.quorum.split(',').next().unwrap_or_default();
        let target: std::net::SocketAddr = first
            .parse()
            .map_err(|e| Error::config("quorum", format!("`{first}`: {e}")))?;
        let proxy = FaultProxy::start(target)
            .await
            .map_err(|e| Error::unavailable("fault proxy", e))?;
        let mut config = self.config();
        config.quorum = proxy.addr().to_string();
        let backend = ZooKeeperBackend::connect(&cluster_id.clone(), &config).await?;
        Ok((Arc::new(backend), Box::new(ProxyFreeze(proxy))))
    }

    fn lease(&self) -> Duration {
        self.session_timeout
    }

    fn backend_faults(&self) -> Vec<&'static str> {
        if self.own_server.is_some() {
            vec!["restart-zookeeper", "pause-zookeeper"]
        } else {
            Vec::new()
        }
    }

    async fn inject_backend_fault(&self, name: &str, rng: &mut SplitMix64) -> Result<()> {
        let Some(server) = self.own_server.clone() else {
            return Err(Error::config("fault", "harness does not own its server"));
        };
        let down = Duration::from_millis(rng.below(self.session_timeout.as_millis() as u64 / 2));
        let io = |e: std::io::Error| Error::unavailable("ZooKeeper server control", e);
        tracing::info!(fault = name, ?down, "injecting ZooKeeper fault");
        match name {
            // Killed and started again on the same data: sessions survive if the
            // outage is shorter than their timeout.
            "restart-zookeeper" => {
                let s = server.clone();
                tokio::task::spawn_blocking(move || s.kill(0))
                    .await
                    .map_err(|e| Error::unavailable("join", e))?
                    .map_err(io)?;
                tokio::time::sleep(down).await;
                tokio::task::spawn_blocking(move || server.restart(0))
                    .await
                    .map_err(|e| Error::unavailable("join", e))?
                    .map_err(io)?;
                tracing::info!(fault = name, "ZooKeeper serves again");
                Ok(())
            }
            // Frozen for less than half a session timeout: every client is suspended.
            "pause-zookeeper" => {
                server.pause(0).map_err(io)?;
                tokio::time::sleep(down).await;
                server.resume(0).map_err(io)
            }
            other => Err(Error::config("fault", format!("unknown fault `{other}`"))),
        }
    }
}

#[cfg(feature = "tls")]
pub mod secure;

pub mod lockout;
