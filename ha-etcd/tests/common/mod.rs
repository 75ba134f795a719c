//! The etcd harness of the conformance suite and of the backend-specific tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, GetOptions};
use ha_core::storage::StateStorage;
use ha_core::{
    ClusterId, ComponentId, Error, HaBackend, HaServices, LeaderElection, LeaderElectionService, LeaderGrant, Result,
    DEFAULT_ELECTION_GROUP,
};
use ha_etcd::{EtcdBackend, EtcdConfig};
use ha_testkit::{EtcdServer, Harness};

/// Lease TTL used by the tests (etcd's minimum with the test server's raft timings).
pub(crate) const TTL: Duration = Duration::from_secs(1);

/// Key prefix used by the tests.
pub(crate) const PREFIX: &str = "/ha";

/// One etcd per test binary, killed when the binary exits (the server's watchdog).
pub(crate) fn shared_server() -> &'static EtcdServer {
    static SERVER: OnceLock<EtcdServer> = OnceLock::new();
    SERVER.get_or_init(|| EtcdServer::start().expect("start etcd (is the etcd-server package installed?)"))
}

/// One 3-member etcd cluster per test binary (watchdogs clean up at exit).
pub(crate) fn shared_cluster() -> &'static EtcdServer {
    static CLUSTER: OnceLock<EtcdServer> = OnceLock::new();
    CLUSTER.get_or_init(|| EtcdServer::start_cluster(3).expect("start a 3-member etcd cluster"))
}

/// The harness over the shared 3-member cluster (clients know every member).
pub(crate) fn cluster_harness() -> EtcdHarness {
    init_tracing();
    EtcdHarness::new(shared_cluster().endpoints())
}

/// The config of test instances against `endpoints`.
pub(crate) fn config(endpoints: Vec<String>) -> EtcdConfig {
    let mut c = EtcdConfig::new(endpoints).with_lease_ttl(TTL).with_key_prefix(PREFIX);
    // Generous for a loaded 2-core machine, still below the TTL.
    c.request_timeout = Duration::from_millis(800);
    c
}

/// The harness over the shared server.
pub(crate) fn shared_harness() -> EtcdHarness {
    init_tracing();
    EtcdHarness::new(shared_server().endpoints())
}

/// Runs the conformance suite (and helps the other tests) on real etcd.
pub(crate) struct EtcdHarness {
    endpoints: Vec<String>,
    ttl: Duration,
    backends: Mutex<Vec<(usize, EtcdBackend)>>,
}

fn addr(b: &Arc<dyn HaBackend>) -> usize {
    Arc::as_ptr(b) as *const () as usize
}

impl EtcdHarness {
    pub(crate) fn new(endpoints: Vec<String>) -> Self {
        Self::with_ttl(endpoints, TTL)
    }

    /// A harness whose instances use lease TTL `ttl` (its crash timeout follows).
    pub(crate) fn with_ttl(endpoints: Vec<String>, ttl: Duration) -> Self {
        Self {
            endpoints,
            ttl,
            backends: Mutex::new(Vec::new()),
        }
    }

    /// A plain etcd client to look behind the backend's back.
    pub(crate) async fn client(&self) -> Client {
        Client::connect(&self.endpoints, None).await.expect("etcd client")
    }

    /// Connects an instance and keeps a handle for crash simulation.
    pub(crate) async fn backend(&self, cluster_id: &ClusterId) -> Result<EtcdBackend> {
        let config = config(self.endpoints.clone()).with_lease_ttl(self.ttl);
        EtcdBackend::connect(cluster_id, &config).await
    }

    /// The etcd handle behind `services`, if this harness made it.
    pub(crate) fn etcd_of(&self, services: &HaServices) -> Option<EtcdBackend> {
        let a = addr(services.backend());
        let list = self.backends.lock().unwrap();
        list.iter().find(|(p, _)| *p == a).map(|(_, b)| b.clone())
    }
}

fn unavailable(e: etcd_client::Error) -> Error {
    Error::unavailable("etcd (test harness)", e)
}

#[async_trait]
impl Harness for EtcdHarness {
    fn name(&self) -> &str {
        "etcd"
    }

    async fn connect(&self, cluster_id: &ClusterId) -> Result<Arc<dyn HaBackend>> {
        let backend = self.backend(cluster_id).await?;
        let arc: Arc<dyn HaBackend> = Arc::new(backend.clone());
        self.backends.lock().unwrap().push((addr(&arc), backend));
        Ok(arc)
    }

    fn crash_timeout(&self) -> Duration {
        // TTL, plus etcd's expiry sweep (every 500 ms), plus slack.
        self.ttl + Duration::from_millis(1000)
    }

    async fn list_records(&self, cluster_id: &ClusterId) -> Result<Vec<String>> {
        let mut c = Client::connect(&self.endpoints, None).await.map_err(unavailable)?;
        let resp = c
            .get(
                format!("{PREFIX}/{cluster_id}/"),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .map_err(unavailable)?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect())
    }

    async fn write_leader_record(
        &self,
        cluster_id: &ClusterId,
        component: &ComponentId,
        record: Option<bytes::Bytes>,
    ) -> Result<()> {
        let mut c = Client::connect(&self.endpoints, None).await.map_err(unavailable)?;
        let key = format!("{PREFIX}/{cluster_id}/leader/{component}");
        match record {
            Some(raw) => c.put(key, raw.to_vec(), None).await.map(|_| ()),
            None => c.delete(key, None).await.map(|_| ()),
        }
        .map_err(unavailable)
    }

    /// Stops the instance's keep-alive loop without revoking its lease, then drops
    /// everything: the lease ends only by TTL on the server.
    async fn crash(&self, services: HaServices) {
        let etcd = self.etcd_of(&services).expect("services made by this harness");
        etcd.halt();
        let a = addr(services.backend());
        self.backends.lock().unwrap().retain(|(p, _)| *p != a);
        drop(services);
    }
}

/// Logs to the test's captured output; `RUST_LOG` picks the level.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// One "process" of a backend-specific test: services plus the etcd handle.
pub(crate) struct Proc {
    pub(crate) ha: HaServices,
    pub(crate) etcd: EtcdBackend,
}

/// Connects a process for `cluster` to `endpoints` (payloads in memory).
pub(crate) async fn process(endpoints: Vec<String>, cluster: &ClusterId) -> Proc {
    try_process(endpoints, cluster).await.expect("connect")
}

/// [`process`], or the error of connecting (e.g. the member has no raft leader yet).
pub(crate) async fn try_process(endpoints: Vec<String>, cluster: &ClusterId) -> ha_core::Result<Proc> {
    connect_process(&config(endpoints), cluster).await
}

/// [`process`] with lease TTL `ttl` (and the request timeout that goes with it).
pub(crate) async fn process_with_ttl(endpoints: Vec<String>, cluster: &ClusterId, ttl: Duration) -> Proc {
    let config = config(endpoints).with_lease_ttl(ttl);
    connect_process(&config, cluster).await.expect("connect")
}

async fn connect_process(config: &EtcdConfig, cluster: &ClusterId) -> ha_core::Result<Proc> {
    let etcd = EtcdBackend::connect(cluster, config).await?;
    let storage = StateStorage::open(&format!("memory://{cluster}"), cluster, &Default::default()).expect("storage");
    Ok(Proc {
        ha: HaServices::new(Arc::new(etcd.clone()), storage, 1),
        etcd,
    })
}

/// Joins the default group as `component`.
pub(crate) async fn contend(ha: &HaServices, component: &str) -> (LeaderElectionService, LeaderElection) {
    let svc = ha
        .leader_election_service(DEFAULT_ELECTION_GROUP)
        .await
        .expect("service");
    let e = svc.register(ComponentId::new(component).unwrap()).expect("register");
    (svc, e)
}

/// Waits for a grant, at most `timeout`.
pub(crate) async fn granted_within(e: &mut LeaderElection, timeout: Duration) -> LeaderGrant {
    tokio::time::timeout(timeout, e.granted())
        .await
        .expect("granted in time")
        .expect("service alive")
}

/// A fresh cluster-id for a backend-specific test.
pub(crate) fn cluster(name: &str) -> ClusterId {
    ClusterId::random(name)
}

/// The member index of the raft leader of `server`.
pub(crate) async fn raft_leader(server: &EtcdServer) -> usize {
    find_raft_leader(&server.endpoints())
        .await
        .expect("no raft leader found")
}

/// Index of the raft leader among `endpoints`, asking each member (a paused or dead
/// one is skipped); waits a little during an election.
pub(crate) async fn find_raft_leader(endpoints: &[String]) -> Option<usize> {
    for _ in 0..100 {
        for (i, ep) in endpoints.iter().enumerate() {
            let status = tokio::time::timeout(Duration::from_millis(500), async {
                Client::connect([ep.as_str()], None).await?.status().await
            })
            .await;
            if let Ok(Ok(st)) = status {
                if st.leader() != 0 && st.header().map(|h| h.member_id()) == Some(st.leader()) {
                    return Some(i);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Runs a blocking member operation (restart waits until healthy) off the runtime's
/// workers; panics if it fails.
pub(crate) async fn member_op(
    server: &Arc<Mutex<EtcdServer>>,
    what: &str,
    i: usize,
    op: fn(&mut EtcdServer, usize) -> std::io::Result<()>,
) {
    let server = server.clone();
    let r = tokio::task::spawn_blocking(move || op(&mut server.lock().unwrap_or_else(|e| e.into_inner()), i)).await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("etcd member {i}: {what} failed: {e}"),
        Err(e) => panic!("etcd member {i}: {what} panicked: {e}"),
    }
}

/// Cuts member `i` of a partitionable cluster from the others for 300 ms to 300 ms +
/// 2·`ttl` (sometimes shorter, sometimes longer than a lease), then heals.
pub(crate) async fn isolate_for(
    server: &Arc<Mutex<EtcdServer>>,
    i: usize,
    ttl: Duration,
    rng: &mut ha_testkit::chaos::SplitMix64,
) {
    let hold = Duration::from_millis(300 + rng.below(2 * ttl.as_millis() as u64));
    server
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .isolate(i)
        .expect("isolate an etcd member");
    tokio::time::sleep(hold).await;
    server.lock().unwrap_or_else(|e| e.into_inner()).heal_peers();
}
