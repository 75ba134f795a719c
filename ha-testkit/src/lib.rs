//! # ha-testkit
//!
//! Everything needed to prove an ha-rs backend right:
//! - [`conformance`]: the shared conformance suite, one case per semantic rule, and
//!   the [`conformance_suite!`] macro that turns it into one named `#[tokio::test]`
//!   per case in a backend crate;
//! - [`chaos`]: contenders under a seeded fault schedule, and an invariant checker;
//! - [`Harness`]: what a backend provides to the suite;
//! - [`EmbeddedHarness`]: the harness of the built-in embedded backend;
//! - [`ZooKeeperServer`]: a real ZooKeeper server or ensemble as child processes,
//!   optionally with a TLS client port;
//! - [`LogCapture`]: all `tracing` output at TRACE in a buffer, to prove secrets are
//!   never logged;
//! - [`TestCerts`]: a throw-away CA and certificates made with `openssl` at test time;
//! - [`EtcdServer`]: real etcd members (single node or cluster) as child processes,
//!   optionally with members that can be cut from each other;
//! - [`S3Server`]: a real S3-protocol server for the `s3://` payload path;
//! - [`StorageFaults`], [`FaultyStore`]: payload storage missing, unavailable, slow,
//!   or with one payload lost or torn;
//! - [`FaultProxy`]: a TCP proxy that cuts, blackholes, delays and partitions;
//! - [`KubeApiEmulator`]: an in-process Kubernetes API server (ConfigMaps, Leases)
//!   with fault injection, for the Kubernetes backend.

mod certs;
pub mod chaos;
pub mod conformance;
mod embedded;
mod etcd;
mod fault_proxy;
mod harness;
mod kube_api;
mod log_capture;
mod peer_partitions;
mod s3_server;
mod storage_faults;
mod zookeeper;

pub use certs::TestCerts;
pub use embedded::EmbeddedHarness;
pub use etcd::{EtcdServer, EtcdServerTls};
pub use fault_proxy::{Condition, FaultProxy, HoldTrigger};
pub use harness::{Ctx, Harness};
pub use kube_api::{ApiAccess, KubeApiEmulator, KubeFaults};
pub use log_capture::{LogCapture, LogCaptureWriter};
pub use s3_server::{free_port, S3Server};
pub use storage_faults::{FaultyStore, StorageCondition, StorageFaults, StorageMode};
pub use zookeeper::{four_letter_word, ZooKeeperOptions, ZooKeeperServer, ZooKeeperTls, ZOOKEEPER_JAR};
