//! TLS to ZooKeeper's secure client port (the server needs client certificates),
//! with digest authentication and `creator` ACLs. The whole conformance suite runs the
//! same way in `conformance_tls.rs`; these are the TLS-specific cases. Needs the crate
//! feature `tls` and the `openssl` command:
//! `cargo test -p ha-zookeeper --features tls --test tls`.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::lockout::assert_locked_out;
use common::secure::{shared, HA_DIGEST};
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, ComponentId, Error, HaServices, JobGraph, JobId, DEFAULT_ELECTION_GROUP};
use ha_testkit::TestCerts;
use ha_zookeeper::{TlsFiles, ZooKeeperBackend};

/// Election, leader information, retrieval, job graph and counter over TLS; then a
/// TLS client with a valid certificate of the same CA but without the HA identity
/// cannot touch any znode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_flow_over_tls_and_others_cannot_modify() {
    common::init_tracing();
    let zk = shared();
    let cluster = ClusterId::random("tls");
    let config = zk.config(HA_DIGEST);
    let storage = StateStorage::open(&format!("memory://{cluster}"), &cluster, &Default::default()).unwrap();
    let ha = HaServices::new(
        Arc::new(
            ZooKeeperBackend::connect(&cluster.clone(), &config.clone())
                .await
                .unwrap(),
        ),
        storage,
        1,
    );
    let svc = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = e.granted().await.unwrap();
    e.confirm(&g, "akka://tls-leader").await.unwrap();
    let retrieval = ha
        .leader_retrieval_service(&ComponentId::new("dispatcher").unwrap())
        .await
        .unwrap();
    let mut leader = retrieval.subscribe();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), leader.wait_for(|l| l.is_some()))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(seen.unwrap().address, "akka://tls-leader");
    let job = JobId::random();
    ha.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(
            &g.fence,
            &JobGraph {
                job_id: job.clone(),
                data: Bytes::from_static(b"graph"),
            },
        )
        .await
        .unwrap();
    let counter = ha.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter.get_and_increment(&g.fence).await.unwrap(), 1);
    assert_eq!(counter.get_and_increment(&g.fence).await.unwrap(), 2);

    let cluster_path = format!("{}/{cluster}", config.root);
    let owner = zk.raw_client(Some(HA_DIGEST)).await;
    let nodes = common::list_tree(&owner, &cluster_path).await.unwrap();
    assert!(nodes.len() >= 6, "{nodes:?}");
    // ZooKeeper authenticates a TLS client by its certificate too (scheme `x509`), and
    // a `creator` ACL grants every identity of the creating session: the HA digest
    // user and the HA processes' certificate subject, nothing else.
    let (acl, _) = owner.get_acl(&nodes[0]).await.unwrap();
    let mut schemes: Vec<&str> = acl.iter().map(|a| a.scheme()).collect();
    schemes.sort_unstable();
    assert_eq!(schemes, ["digest", "x509"], "{acl:?}");
    assert!(acl.iter().any(|a| a.id().starts_with("ha-user:")), "{acl:?}");
    assert!(acl.iter().any(|a| a.id() == "CN=client"), "{acl:?}");
    // Any other certificate of the same CA, with no or other digest credentials, or
    // with the HA user name and a wrong password: refused everything.
    let anonymous = zk.raw_client_as("intruder", None).await;
    let other = zk.raw_client_as("intruder", Some("mallory:tls-mallory-pw")).await;
    let wrong = zk.raw_client_as("intruder", Some("ha-user:wrong-password")).await;
    assert_locked_out(&anonymous, "other certificate, no digest", &nodes).await;
    assert_locked_out(&other, "other certificate, other digest", &nodes).await;
    assert_locked_out(&wrong, "other certificate, wrong password", &nodes).await;

    drop(retrieval);
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();
    assert!(common::list_tree(&owner, &cluster_path).await.unwrap().is_empty());
}

/// The server needs a client certificate: without one, or with one from another CA,
/// or trusting another CA for the server, no session is established.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_material_gets_no_session() {
    common::init_tracing();
    let zk = shared();
    let foreign = TestCerts::generate().unwrap();
    let cases = [
        (
            "no client certificate",
            TlsFiles {
                ca_cert: Some(zk.certs.ca_cert()),
                client_cert: None,
                client_key: None,
            },
        ),
        (
            "client certificate of another CA",
            TlsFiles {
                ca_cert: Some(zk.certs.ca_cert()),
                client_cert: Some(foreign.client_cert()),
                client_key: Some(foreign.client_key()),
            },
        ),
        (
            "server not trusted",
            TlsFiles {
                ca_cert: Some(foreign.ca_cert()),
                client_cert: Some(zk.certs.client_cert()),
                client_key: Some(zk.certs.client_key()),
            },
        ),
    ];
    for (what, tls) in cases {
        let mut config = zk.config(HA_DIGEST);
        config.tls = Some(tls);
        config.session_timeout = std::time::Duration::from_secs(1);
        match ZooKeeperBackend::connect(&ClusterId::random("badtls"), &config).await {
            Err(Error::Unavailable { .. }) => {}
            other => panic!("{what}: expected Unavailable, got {other:?}"),
        }
    }
}

/// A missing or malformed PEM file is a config error naming the key, not a panic,
/// and never quotes the file's contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_tls_files_name_the_key() {
    let zk = shared();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("key.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nNOT-A-KEY-c0ffee\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut config = zk.config(HA_DIGEST);
    config.tls = Some(TlsFiles {
        ca_cert: Some(dir.path().join("missing.pem")),
        client_cert: None,
        client_key: None,
    });
    let e = ZooKeeperBackend::connect(&ClusterId::random("badpem"), &config)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("high-availability.zookeeper.client.tls.ca-cert"), "{e}");
    let mut config = zk.config(HA_DIGEST);
    config.tls = Some(TlsFiles {
        ca_cert: Some(zk.certs.ca_cert()),
        client_cert: Some(zk.certs.client_cert()),
        client_key: Some(garbage),
    });
    let e = ZooKeeperBackend::connect(&ClusterId::random("badpem"), &config)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("high-availability.zookeeper.client.tls.client-"), "{e}");
    assert!(!e.contains("c0ffee"), "{e}");
}

/// Neither the client's private key, nor the digest credentials, appear in TRACE logs
/// of a TLS session (current-thread runtime: the capture sees every task).
#[tokio::test]
async fn tls_session_logs_no_key_material() {
    let capture = ha_testkit::LogCapture::new();
    let _guard = capture.install();
    let zk = shared();
    let cluster = ClusterId::random("tlslog");
    let backend = ZooKeeperBackend::connect(&cluster.clone(), &zk.config(HA_DIGEST))
        .await
        .unwrap();
    let storage = StateStorage::open(&format!("memory://{cluster}"), &cluster, &Default::default()).unwrap();
    let ha = HaServices::new(Arc::new(backend), storage, 1);
    let svc = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = e.granted().await.unwrap();
    e.confirm(&g, "addr").await.unwrap();
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();
    let text = capture.text();
    assert!(
        text.contains("tcp+tls://"),
        "the capture did not see the TLS connection:\n{text}"
    );
    let key = std::fs::read_to_string(zk.certs.client_key()).unwrap();
    let key_lines: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(key_lines.len() > 5);
    capture.assert_absent(&key_lines);
    capture.assert_absent(&["PRIVATE KEY", HA_DIGEST, HA_DIGEST.split(':').nth(1).unwrap()]);
}
