//! A ZooKeeper with a TLS client port that needs client certificates, and a harness
//! whose backends reach it over TLS only, authenticate with digest credentials and
//! create every znode with `creator` ACLs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use ha_core::{ClusterId, ComponentId, HaBackend, Result};
use ha_testkit::{Harness, TestCerts, ZooKeeperOptions, ZooKeeperServer, ZooKeeperTls};
use ha_zookeeper::{AclMode, TlsFiles, ZooKeeperBackend, ZooKeeperConfig};
use zookeeper_client as zk;

use super::{init_tracing, list_tree, SESSION_TIMEOUT};

/// The digest credentials of the HA user (secret: must never show in logs).
pub const HA_DIGEST: &str = "ha-user:ha-digest-s3cr3t-7f1c";

/// A TLS ZooKeeper server and the certificates it trusts.
pub struct SecureZk {
    pub certs: TestCerts,
    pub server: ZooKeeperServer,
}

impl SecureZk {
    /// Makes a CA and certificates and starts a server whose TLS port needs a client
    /// certificate.
    pub fn start() -> Self {
        let certs = TestCerts::generate().expect("make test certificates");
        certs.issue("intruder").expect("issue the intruder's certificate");
        let server = ZooKeeperServer::start_with(ZooKeeperOptions {
            tls: Some(ZooKeeperTls {
                key_store_pem: certs.server_keystore(),
                trust_store_pem: certs.ca_cert(),
                require_client_cert: true,
            }),
            ..Default::default()
        })
        .expect("start ZooKeeper with a TLS port");
        Self { certs, server }
    }

    /// TLS connect string.
    pub fn quorum(&self) -> String {
        self.server.secure_connect_string().expect("TLS port")
    }

    /// The client TLS settings (CA, client certificate and key).
    pub fn tls(&self) -> TlsFiles {
        TlsFiles {
            ca_cert: Some(self.certs.ca_cert()),
            client_cert: Some(self.certs.client_cert()),
            client_key: Some(self.certs.client_key()),
        }
    }

    /// Backend config: TLS, digest `auth`, `creator` ACLs.
    pub fn config(&self, digest: &str) -> ZooKeeperConfig {
        let mut c = super::config(&self.quorum(), SESSION_TIMEOUT);
        c.tls = Some(self.tls());
        c.digest_auth = Some(digest.to_string());
        c.acl = AclMode::Creator;
        c
    }

    /// A raw TLS client with the HA processes' client certificate and the given digest
    /// credentials (`None`: none).
    pub async fn raw_client(&self, digest: Option<&str>) -> zk::Client {
        self.raw_client_as("client", digest).await
    }

    /// A raw TLS client with the certificate `<cert>.pem` (issued by the test CA, see
    /// [`TestCerts::issue`]) and the given digest credentials.
    pub async fn raw_client_as(&self, cert: &str, digest: Option<&str>) -> zk::Client {
        let tls = zk::TlsOptions::new()
            .with_pem_ca(&std::fs::read_to_string(self.certs.ca_cert()).unwrap())
            .unwrap()
            .with_pem_identity(
                &std::fs::read_to_string(self.certs.path(&format!("{cert}.pem"))).unwrap(),
                &std::fs::read_to_string(self.certs.path(&format!("{cert}.key"))).unwrap(),
            )
            .unwrap();
        let mut c = zk::Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .with_tls(tls);
        if let Some(d) = digest {
            c = c.with_auth("digest", d.as_bytes());
        }
        c.secure_connect(&self.quorum()).await.expect("raw TLS client")
    }
}

/// One TLS server for the whole test binary.
pub fn shared() -> Arc<SecureZk> {
    static SERVER: OnceLock<Arc<SecureZk>> = OnceLock::new();
    SERVER.get_or_init(|| Arc::new(SecureZk::start())).clone()
}

/// Runs the conformance suite over TLS with digest auth and `creator` ACLs.
pub struct SecureHarness {
    zk: Arc<SecureZk>,
}

/// The secure harness on the shared TLS server.
pub fn secure_harness() -> SecureHarness {
    init_tracing();
    SecureHarness { zk: shared() }
}

impl SecureHarness {
    fn cluster_path(&self, cluster_id: &ClusterId) -> String {
        format!("{}/{cluster_id}", self.zk.config(HA_DIGEST).root)
    }
}

#[async_trait]
impl Harness for SecureHarness {
    fn name(&self) -> &str {
        "zookeeper-tls-digest-creator"
    }

    async fn connect(&self, cluster_id: &ClusterId) -> Result<Arc<dyn HaBackend>> {
        Ok(Arc::new(
            ZooKeeperBackend::connect(&cluster_id.clone(), &self.zk.config(HA_DIGEST)).await?,
        ))
    }

    fn crash_timeout(&self) -> Duration {
        SESSION_TIMEOUT + Duration::from_secs(1)
    }

    async fn list_records(&self, cluster_id: &ClusterId) -> Result<Vec<String>> {
        // The HA user's own identity: under `creator` ACLs nobody else may even read.
        list_tree(
            &self.zk.raw_client(Some(HA_DIGEST)).await,
            &self.cluster_path(cluster_id),
        )
        .await
    }

    async fn write_leader_record(
        &self,
        cluster_id: &ClusterId,
        component: &ComponentId,
        record: Option<bytes::Bytes>,
    ) -> Result<()> {
        let path = format!("{}/leader/{component}/connection_info", self.cluster_path(cluster_id));
        let client = self.zk.raw_client(Some(HA_DIGEST)).await;
        super::write_record(&client, &path, record, zk::Acls::creator_all()).await
    }
}
