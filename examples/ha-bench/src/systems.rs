//! The systems under test: real servers started for the run, and how to connect,
//! gracefully close and crash one ha-rs "process" on each backend.

use std::sync::Arc;
use std::time::Duration;

use ha_core::embedded::EmbeddedCluster;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, HaBackend, HaServices};
use ha_etcd::{EtcdBackend, EtcdConfig};
use ha_kubernetes::{KubernetesBackend, LeaseTimings};
use ha_testkit::{EtcdServer, KubeApiEmulator, ZooKeeperServer};
use ha_zookeeper::{ZooKeeperBackend, ZooKeeperConfig};

use crate::BoxResult;

/// Namespace of the Kubernetes emulator objects.
pub(crate) const KUBE_NAMESPACE: &str = "ha-bench";

/// The backends ha-bench knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(crate) enum Kind {
    Embedded,
    Zookeeper,
    Etcd,
    Kubernetes,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Embedded => "embedded",
            Kind::Zookeeper => "zookeeper",
            Kind::Etcd => "etcd",
            Kind::Kubernetes => "kubernetes",
        }
    }
}

/// Where the servers of a run listen (all loopback); enough to connect from a child
/// process too.
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct Endpoints {
    /// ZooKeeper connect string.
    #[arg(long, hide = true)]
    pub(crate) zk: Option<String>,
    /// etcd client endpoint.
    #[arg(long, hide = true)]
    pub(crate) etcd: Option<String>,
    /// Kubernetes API (emulator) URL.
    #[arg(long, hide = true)]
    pub(crate) kube: Option<String>,
    /// Session timeout / lease TTL / lease duration used by every system, in ms.
    #[arg(long = "ttl-ms", default_value_t = 1000)]
    pub(crate) ttl_ms: u64,
    /// Storage root shared by the processes of one measurement (default: in memory).
    #[arg(long, hide = true)]
    pub(crate) storage: Option<String>,
}

/// The servers of one run, started on free loopback ports, stopped on drop.
pub(crate) struct Servers {
    pub(crate) zookeeper: Option<ZooKeeperServer>,
    /// Kept for its lifetime: the server stops on drop.
    _etcd: Option<EtcdServer>,
    pub(crate) kube: Option<KubeApiEmulator>,
    pub(crate) endpoints: Endpoints,
}

impl Servers {
    /// Starts the servers the chosen backends (and peers) need.
    pub(crate) fn start(kinds: &[Kind], ttl_ms: u64) -> BoxResult<Self> {
        let zookeeper = if kinds.contains(&Kind::Zookeeper) {
            Some(ZooKeeperServer::start()?)
        } else {
            None
        };
        let etcd = if kinds.contains(&Kind::Etcd) {
            Some(EtcdServer::start()?)
        } else {
            None
        };
        let kube = if kinds.contains(&Kind::Kubernetes) {
            Some(KubeApiEmulator::start()?)
        } else {
            None
        };
        let endpoints = Endpoints {
            zk: zookeeper.as_ref().map(|z| z.connect_string()),
            etcd: etcd.as_ref().map(|e| e.endpoint(0)),
            kube: kube.as_ref().map(|k| k.url()),
            ttl_ms,
            storage: None,
        };
        Ok(Self {
            zookeeper,
            _etcd: etcd,
            kube,
            endpoints,
        })
    }
}

impl Endpoints {
    /// Session timeout / lease TTL / lease duration of every system.
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    pub(crate) fn zk_connect_string(&self) -> BoxResult<String> {
        Ok(self.zk.clone().ok_or("ZooKeeper not started")?)
    }

    pub(crate) fn etcd_endpoints(&self) -> BoxResult<Vec<String>> {
        Ok(vec![self.etcd.clone().ok_or("etcd not started")?])
    }

    pub(crate) fn kube_client(&self) -> BoxResult<kube::Client> {
        let url = self.kube.as_ref().ok_or("Kubernetes emulator not started")?;
        let mut config = kube::Config::new(url.parse()?);
        config.default_retry = false;
        Ok(kube::Client::try_from(config)?)
    }

    /// Lease timings derived from the TTL the way the Kubernetes tests scale them.
    pub(crate) fn kube_timings(&self) -> BoxResult<LeaseTimings> {
        Ok(LeaseTimings::new(self.ttl(), self.ttl() * 7 / 10, self.ttl() * 3 / 20)?)
    }

    /// How often an idle instance talks to the backend to keep its session.
    pub(crate) fn renew_period(&self, kind: Kind) -> Duration {
        match kind {
            // ZooKeeper clients ping at a third of the session timeout; ha-etcd keeps
            // its lease alive every TTL/3; the Kubernetes backend renews every retry period.
            Kind::Zookeeper | Kind::Etcd | Kind::Embedded => self.ttl() / 3,
            Kind::Kubernetes => self.ttl() * 3 / 20,
        }
    }

    /// A command re-executing this binary with `args` and these endpoints (a child
    /// process of the run: a contender, a retriever, a scale child).
    pub(crate) fn self_command(&self, args: &[&str]) -> BoxResult<tokio::process::Command> {
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.args(args).args(["--ttl-ms", &self.ttl_ms.to_string()]);
        for (flag, value) in [
            ("--zk", &self.zk),
            ("--etcd", &self.etcd),
            ("--kube", &self.kube),
            ("--storage", &self.storage),
        ] {
            if let Some(v) = value {
                cmd.args([flag, v]);
            }
        }
        Ok(cmd)
    }

    /// Connects one ha-rs "process" of `cluster` on `kind`.
    pub(crate) async fn connect(&self, kind: Kind, cluster: &ClusterId) -> BoxResult<Process> {
        let (backend, etcd): (Arc<dyn HaBackend>, _) = match kind {
            Kind::Embedded => (Arc::new(EmbeddedCluster::shared(cluster, self.ttl()).connect()), None),
            Kind::Zookeeper => {
                let mut config = ZooKeeperConfig::new(self.zk_connect_string()?);
                config.session_timeout = self.ttl();
                config.retry_wait = Duration::from_millis(50);
                (
                    Arc::new(ZooKeeperBackend::connect(&cluster.clone(), &config).await?),
                    None,
                )
            }
            Kind::Etcd => {
                let config = EtcdConfig::new(self.etcd_endpoints()?)
                    .with_lease_ttl(self.ttl())
                    .with_key_prefix("/ha-bench");
                let backend = EtcdBackend::connect(cluster, &config).await?;
                (Arc::new(backend.clone()), Some(backend))
            }
            Kind::Kubernetes => (
                Arc::new(KubernetesBackend::with_client(
                    self.kube_client()?,
                    KUBE_NAMESPACE,
                    cluster,
                    self.kube_timings()?,
                )?),
                None,
            ),
        };
        let url = self.storage.clone().unwrap_or_else(|| format!("memory://{cluster}"));
        let storage = StateStorage::open(&url, cluster, &Default::default())?;
        Ok(Process {
            ha: HaServices::new(backend, storage, 1),
            etcd,
        })
    }
}

/// One ha-rs "process": its services, plus what is needed to crash it.
pub(crate) struct Process {
    pub(crate) ha: HaServices,
    etcd: Option<EtcdBackend>,
}

impl Process {
    /// Ends the process without telling the backend: its session/lease ends only by
    /// timeout. (ZooKeeper sessions are detached and Kubernetes/embedded leases simply
    /// stop being renewed on drop; the etcd keep-alive is halted first.)
    pub(crate) fn crash(self) {
        if let Some(etcd) = &self.etcd {
            etcd.halt();
        }
        drop(self);
    }

    /// Deletes the cluster's records and closes the session.
    pub(crate) async fn cleanup(self) {
        if let Err(e) = self.ha.close_and_cleanup_all_data().await {
            eprintln!("ha-bench: cleanup failed: {e}");
        }
    }
}
