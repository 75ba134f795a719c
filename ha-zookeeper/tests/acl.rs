//! `creator` ACLs with digest authentication: after a full HA flow (leader, leader
//! information, job graph with lock, checkpoints, counter) no client without the HA
//! identity — anonymous, another user, or the HA user name with a wrong password —
//! can read, modify, delete, extend or re-ACL any znode of the cluster, and a backend
//! with other credentials cannot wipe it. The data is intact afterwards.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::lockout::assert_locked_out;
use ha_core::storage::StateStorage;
use ha_core::{
    ClusterId, CompletedCheckpoint, ComponentId, Error, HaServices, JobGraph, JobId, DEFAULT_ELECTION_GROUP,
};
use ha_zookeeper::{AclMode, ZooKeeperBackend, ZooKeeperConfig};
use zookeeper_client as zk;

const OWNER: &str = "ha-owner:owner-pw-91b2";

fn owner_config(quorum: &str) -> ZooKeeperConfig {
    let mut c = common::config(quorum, common::SESSION_TIMEOUT);
    c.acl = AclMode::Creator;
    c.digest_auth = Some(OWNER.into());
    c.root = "/ha-creator".into();
    c
}

async fn client(quorum: &str, digest: Option<&str>) -> zk::Client {
    let mut c = zk::Client::connector().with_session_timeout(common::SESSION_TIMEOUT);
    if let Some(d) = digest {
        c = c.with_auth("digest", d.as_bytes());
    }
    c.connect(quorum).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_cannot_read_or_modify_ha_znodes() {
    common::init_tracing();
    let quorum = common::shared_server().connect_string();
    let cluster = ClusterId::random("creator");
    let dir = tempfile::tempdir().unwrap();
    let storage = || {
        StateStorage::open(
            &format!("file://{}", dir.path().display()),
            &cluster,
            &Default::default(),
        )
    };
    let config = owner_config(&quorum);
    let ha = HaServices::new(
        Arc::new(
            ZooKeeperBackend::connect(&cluster.clone(), &config.clone())
                .await
                .unwrap(),
        ),
        storage().unwrap(),
        1,
    );
    let svc = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = e.granted().await.unwrap();
    e.confirm(&g, "akka://leader").await.unwrap();
    let job = JobId::random();
    let graph = JobGraph {
        job_id: job.clone(),
        data: Bytes::from_static(b"graph"),
    };
    ha.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(&g.fence, &graph)
        .await
        .unwrap();
    let counter = ha.checkpoint_id_counter(&job).await.unwrap();
    let checkpoints = ha.completed_checkpoint_store(&job).await.unwrap();
    let id = counter.get_and_increment(&g.fence).await.unwrap();
    checkpoints
        .add_checkpoint(
            &g.fence,
            CompletedCheckpoint {
                job_id: job.clone(),
                checkpoint_id: id,
                data: Bytes::from_static(b"cp"),
            },
        )
        .await
        .unwrap();

    // Every znode of the cluster, as the owner sees it (latch, leader information,
    // job graph and its lock, checkpoint, counter, their parents).
    let cluster_path = format!("{}/{cluster}", config.root);
    let owner = client(&quorum, Some(OWNER)).await;
    let nodes = common::list_tree(&owner, &cluster_path).await.unwrap();
    assert!(nodes.len() >= 8, "{nodes:?}");
    let snapshot: Vec<_> = {
        let mut v = Vec::new();
        for n in &nodes {
            v.push(owner.get_data(n).await.unwrap());
        }
        v
    };

    let anonymous = client(&quorum, None).await;
    let other_user = client(&quorum, Some("mallory:mallory-pw")).await;
    let wrong_password = client(&quorum, Some("ha-owner:not-the-password")).await;
    let mut refused = 0;
    for (who, c) in [
        ("anonymous", &anonymous),
        ("other user", &other_user),
        ("owner name, wrong password", &wrong_password),
    ] {
        refused += assert_locked_out(c, who, &nodes).await;
    }
    assert_eq!(refused, nodes.len() * 6 * 3);

    // A whole backend with other credentials cannot wipe the cluster either.
    let mut intruder_config = owner_config(&quorum);
    intruder_config.digest_auth = Some("mallory:mallory-pw".into());
    let intruder = HaServices::new(
        Arc::new(
            ZooKeeperBackend::connect(&cluster.clone(), &intruder_config)
                .await
                .unwrap(),
        ),
        storage().unwrap(),
        1,
    );
    match intruder.close_and_cleanup_all_data().await {
        Err(Error::PermissionDenied { what }) => assert!(!what.contains("mallory-pw"), "{what}"),
        other => panic!("intruder cleanup: expected PermissionDenied, got {other:?}"),
    }

    // Nothing changed: same nodes, same data and versions.
    assert_eq!(common::list_tree(&owner, &cluster_path).await.unwrap(), nodes);
    for (n, before) in nodes.iter().zip(&snapshot) {
        assert_eq!(&owner.get_data(n).await.unwrap(), before, "{n}");
    }
    assert_eq!(
        ha.job_graph_store()
            .await
            .unwrap()
            .recover_job_graph(&job)
            .await
            .unwrap()
            .unwrap()
            .data,
        graph.data
    );
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();
    assert!(common::list_tree(&owner, &cluster_path).await.unwrap().is_empty());
}
