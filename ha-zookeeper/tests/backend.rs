//! Backend-specific behaviour on the shared server: the znode view of cleanup, ACLs
//! with digest auth, the negotiated session timeout, and configuration by mode string.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ha_core::storage::StateStorage;
use ha_core::{
    ClusterId, CompletedCheckpoint, ComponentId, HaBackend, HaConfig, HaServices, JobGraph, JobId, StoreNamespace,
    DEFAULT_ELECTION_GROUP,
};
use ha_testkit::Harness;
use ha_zookeeper::{AclMode, ZooKeeperBackend};
use zookeeper_client as zk;

fn storage(dir: &tempfile::TempDir, cluster: &ClusterId) -> StateStorage {
    StateStorage::open(
        &format!("file://{}", dir.path().display()),
        cluster,
        &Default::default(),
    )
    .unwrap()
}

/// After `close_and_cleanup_all_data` not a single znode of the cluster is left: not
/// the cluster node, not an empty parent, not a lock or latch node of another live
/// process, and the root no longer lists the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_leaves_nothing_under_the_cluster_root() {
    let h = common::harness();
    let cluster = ClusterId::random("wipe");
    let dir = tempfile::tempdir().unwrap();
    let a = HaServices::new(h.connect(&cluster).await.unwrap(), storage(&dir, &cluster), 2);
    let b = HaServices::new(h.connect(&cluster).await.unwrap(), storage(&dir, &cluster), 1);
    let sa = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut ea = sa.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = ea.granted().await.unwrap();
    ea.confirm(&g, "addr").await.unwrap();
    let sb = b.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let _eb = sb.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let job = JobId::random();
    a.job_graph_store()
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
    let counter = a.checkpoint_id_counter(&job).await.unwrap();
    let checkpoints = a.completed_checkpoint_store(&job).await.unwrap();
    for _ in 0..3 {
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
    }
    // A second live process holds a lock (an ephemeral node of its session).
    b.job_graph_store()
        .await
        .unwrap()
        .recover_job_graph(&job)
        .await
        .unwrap();
    let cluster_path = h.cluster_path(&cluster);
    let admin = h.admin().await.unwrap();
    let before = common::list_tree(&admin, &cluster_path).await.unwrap();
    assert!(
        before.iter().any(|p| p.contains("/locks/")),
        "expected lock nodes before cleanup: {before:?}"
    );
    assert!(before.iter().any(|p| p.ends_with("checkpoint_id_counter")));
    assert!(before.iter().any(|p| p.contains("/leader/latch/")));

    sb.close().await.unwrap();
    sa.close().await.unwrap();
    b.close().await.unwrap();
    a.close_and_cleanup_all_data().await.unwrap();
    let left = common::list_tree(&admin, &cluster_path).await.unwrap();
    assert!(left.is_empty(), "znodes left behind: {left:?}");
    let root_children = admin.list_children("/ha").await.unwrap();
    assert!(!root_children.contains(&cluster.to_string()));
}

/// Finding 9 of the correctness review: the empty per-job parents go with a job's
/// terminal shutdown, and `close_and_cleanup_all_data` while this process still
/// contends (its election service not closed) resigns its candidacy before deleting,
/// so no latch directory is re-created behind the cleanup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_while_contending_leaves_nothing() {
    let h = common::harness();
    let cluster = ClusterId::random("wipe-contending");
    let dir = tempfile::tempdir().unwrap();
    let a = HaServices::new(h.connect(&cluster).await.unwrap(), storage(&dir, &cluster), 2);
    let sa = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut ea = sa.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = ea.granted().await.unwrap();
    ea.confirm(&g, "addr").await.unwrap();
    let job = JobId::random();
    let counter = a.checkpoint_id_counter(&job).await.unwrap();
    let checkpoints = a.completed_checkpoint_store(&job).await.unwrap();
    for _ in 0..2 {
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
    }
    let cluster_path = h.cluster_path(&cluster);
    let admin = h.admin().await.unwrap();
    let job_nodes =
        |tree: &[String]| -> Vec<String> { tree.iter().filter(|p| p.contains(job.as_str())).cloned().collect() };
    assert!(!job_nodes(&common::list_tree(&admin, &cluster_path).await.unwrap()).is_empty());
    // The job finishes: its checkpoints and counter go, and so do their parents.
    checkpoints
        .shutdown(&g.fence, ha_core::JobStatus::Finished)
        .await
        .unwrap();
    counter.shutdown(&g.fence, ha_core::JobStatus::Finished).await.unwrap();
    let left = job_nodes(&common::list_tree(&admin, &cluster_path).await.unwrap());
    assert!(left.is_empty(), "znodes of the finished job left behind: {left:?}");

    // Cleanup while still contending and leading.
    assert!(ea.has_leadership(&g));
    a.close_and_cleanup_all_data().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let left = common::list_tree(&admin, &cluster_path).await.unwrap();
    assert!(left.is_empty(), "znodes left behind: {left:?}");
    let root_children = admin.list_children("/ha").await.unwrap();
    assert!(
        !root_children.contains(&cluster.to_string()),
        "the cluster node was re-created: {root_children:?}"
    );
}

/// A fence token is a latch node path; a live latch node of *another* cluster-id on
/// the same ensemble (or any other existing path) is no term of this cluster, and a
/// write presenting it is refused as `NotLeader`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_of_another_cluster_is_refused() {
    let h = common::harness();
    let dir = tempfile::tempdir().unwrap();
    let other = ClusterId::random("fence-other");
    let mine = ClusterId::random("fence-mine");
    let x = HaServices::new(h.connect(&other).await.unwrap(), storage(&dir, &other), 1);
    let y = HaServices::new(h.connect(&mine).await.unwrap(), storage(&dir, &mine), 1);
    let sx = x.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut ex = sx.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let foreign = ex.granted().await.unwrap().fence;
    let mut forged = foreign.clone();
    forged.token = h.cluster_path(&mine);
    let graphs = y.job_graph_store().await.unwrap();
    for fence in [&foreign, &forged] {
        let r = graphs
            .put_job_graph(
                fence,
                &JobGraph {
                    job_id: JobId::random(),
                    data: Bytes::from_static(b"graph"),
                },
            )
            .await;
        assert!(
            matches!(r, Err(ha_core::Error::NotLeader { .. })),
            "a write with fence {} was not refused: {r:?}",
            fence.token
        );
    }
    sx.close().await.unwrap();
    x.close_and_cleanup_all_data().await.unwrap();
    y.close_and_cleanup_all_data().await.unwrap();
}

/// With `acl = creator` and digest credentials, the backend's znodes are readable only
/// by the same identity; the credentials never show in `Debug`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creator_acl_with_digest_auth_locks_out_others() {
    let h = common::harness();
    let mut config = h.config();
    config.acl = AclMode::Creator;
    config.digest_auth = Some("ha-user:top-secret-pw".into());
    config.root = "/ha-acl".into();
    let cluster = ClusterId::random("acl");
    let backend = ZooKeeperBackend::connect(&cluster.clone(), &config.clone())
        .await
        .unwrap();
    let dbg = format!("{backend:?}");
    assert!(!dbg.contains("top-secret-pw") && !dbg.contains("ha-user"), "{dbg}");

    let dir = tempfile::tempdir().unwrap();
    let ha = HaServices::new(Arc::new(backend.clone()), storage(&dir, &cluster), 1);
    let svc = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = e.granted().await.unwrap();
    let store = backend.state_handle_store(&StoreNamespace::JobGraphs).await.unwrap();
    store
        .add_and_lock(&g.fence, "jobGraph-x", Bytes::from_static(b"p"))
        .await
        .unwrap();
    let entry = format!("/ha-acl/{cluster}/jobgraphs/jobGraph-x");

    let anonymous = h.admin().await.unwrap();
    match anonymous.get_data(&entry).await {
        Err(zk::Error::NoAuth) => {}
        other => panic!("anonymous read of {entry}: expected NoAuth, got {other:?}"),
    }
    let authed = zk::Client::connector()
        .with_auth("digest", b"ha-user:top-secret-pw")
        .connect(&common::shared_server().connect_string())
        .await
        .unwrap();
    let (acls, _) = authed.get_acl(&entry).await.unwrap();
    assert!(
        !acls.is_empty()
            && acls
                .iter()
                .all(|a| a.scheme() == "digest" && a.id().starts_with("ha-user:")),
        "{acls:?}"
    );
    // The same identity from another process can read it.
    let peer = ZooKeeperBackend::connect(&cluster.clone(), &config).await.unwrap();
    let peer_store = peer.state_handle_store(&StoreNamespace::JobGraphs).await.unwrap();
    assert_eq!(
        peer_store.get("jobGraph-x").await.unwrap().unwrap().value,
        Bytes::from_static(b"p")
    );
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();
    peer.close().await.unwrap();
}

/// The session timeout the server grants is reported, not the one requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_the_negotiated_session_timeout() {
    let h = common::harness();
    let mut config = h.config();
    config.session_timeout = Duration::from_secs(100); // above the server's maximum
    let backend = ZooKeeperBackend::connect(&ClusterId::random("neg"), &config)
        .await
        .unwrap();
    let max = common::shared_server().options().max_session_timeout;
    assert_eq!(backend.negotiated_session_timeout().await, Some(max));
    backend.close().await.unwrap();
}

/// Mode `zookeeper` is chosen by config once registered; the section is validated
/// with errors naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_by_mode_string() {
    ha_zookeeper::register();
    let dir = tempfile::tempdir().unwrap();
    let entries = |extra: &[(&str, &str)]| {
        let mut m = BTreeMap::from([
            ("high-availability.type".to_string(), "zookeeper".to_string()),
            ("high-availability.cluster-id".to_string(), "by-mode".to_string()),
            (
                "high-availability.storageDir".to_string(),
                format!("file://{}", dir.path().display()),
            ),
            (
                "high-availability.zookeeper.quorum".to_string(),
                common::shared_server().connect_string(),
            ),
            (
                "high-availability.zookeeper.client.session-timeout".to_string(),
                "3 s".to_string(),
            ),
        ]);
        for (k, v) in extra {
            m.insert(k.to_string(), v.to_string());
        }
        HaConfig::from_entries(m).unwrap()
    };
    let ha = HaServices::from_config(&entries(&[])).await.unwrap();
    assert!(format!("{:?}", ha.backend()).contains("ZooKeeperBackend"));
    ha.close().await.unwrap();
    let err = HaServices::from_config(&entries(&[("high-availability.zookeeper.client.typo", "1")]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("high-availability.zookeeper.client.typo"), "{err}");
}

/// A chroot in the quorum string is created if missing and everything lives below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroot_in_quorum_is_honoured() {
    let h = common::harness();
    let chroot = format!("/chroot-{}", uuid::Uuid::new_v4().simple());
    let config = common::config(
        &format!("{}{chroot}", common::shared_server().connect_string()),
        common::SESSION_TIMEOUT,
    );
    let cluster = ClusterId::random("chroot");
    let backend = ZooKeeperBackend::connect(&cluster.clone(), &config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ha = HaServices::new(Arc::new(backend.clone()), storage(&dir, &cluster), 1);
    let svc = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = e.granted().await.unwrap();
    e.confirm(&g, "addr").await.unwrap();
    let admin = h.admin().await.unwrap();
    let under_chroot = common::list_tree(&admin, &format!("{chroot}/ha/{cluster}"))
        .await
        .unwrap();
    assert!(
        under_chroot
            .iter()
            .any(|p| p.ends_with("/leader/dispatcher/connection_info")),
        "{under_chroot:?}"
    );
    assert!(common::list_tree(&admin, &format!("/ha/{cluster}"))
        .await
        .unwrap()
        .is_empty());
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();
    assert!(common::list_tree(&admin, &format!("{chroot}/ha/{cluster}"))
        .await
        .unwrap()
        .is_empty());
    admin.delete(&format!("{chroot}/ha"), None).await.unwrap();
    admin.delete(&chroot, None).await.unwrap();
}

/// `close` ends the session at once (the ephemeral latch and lock nodes are gone when
/// it returns), while dropping without close leaves them until the session expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_the_session_at_once_and_drop_does_not() {
    let h = common::harness();
    let cluster = ClusterId::random("close");
    let dir = tempfile::tempdir().unwrap();
    let leader = HaServices::new(h.connect(&cluster).await.unwrap(), storage(&dir, &cluster), 1);
    let svc = leader.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = e.granted().await.unwrap();
    let store = leader
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    store
        .add_and_lock(&g.fence, "jobGraph-a", Bytes::from_static(b"a"))
        .await
        .unwrap();
    store
        .add_and_lock(&g.fence, "jobGraph-b", Bytes::from_static(b"b"))
        .await
        .unwrap();
    let admin = h.admin().await.unwrap();
    let cluster_path = h.cluster_path(&cluster);
    let ephemerals = |tree: Vec<String>| -> Vec<String> {
        tree.into_iter()
            .filter(|p| p.contains("/locks/") || p.contains("/latch/cluster/"))
            .collect()
    };

    // Two more processes lock the same entries; one closes, one is dropped.
    let closer = h.connect(&cluster).await.unwrap();
    let dropper = h.connect(&cluster).await.unwrap();
    for b in [&closer, &dropper] {
        let s = b.state_handle_store(&StoreNamespace::JobGraphs).await.unwrap();
        s.get_and_lock("jobGraph-a").await.unwrap();
    }
    let (closer_id, dropper_id) = (closer.instance_id().to_string(), dropper.instance_id().to_string());
    closer.close().await.unwrap();
    let owners = admin
        .list_children(&format!("{cluster_path}/jobgraphs/jobGraph-a/locks"))
        .await
        .unwrap();
    assert!(
        !owners.contains(&closer_id),
        "closed owner's lock must be gone at once: {owners:?}"
    );
    drop(dropper);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let owners = admin
        .list_children(&format!("{cluster_path}/jobgraphs/jobGraph-a/locks"))
        .await
        .unwrap();
    assert!(
        owners.contains(&dropper_id),
        "a dropped (crashed) owner's lock lives until its session expires: {owners:?}"
    );

    let before = ephemerals(common::list_tree(&admin, &cluster_path).await.unwrap());
    assert!(before.iter().any(|p| p.contains("/latch/")), "{before:?}");
    leader.close().await.unwrap();
    let after = ephemerals(common::list_tree(&admin, &cluster_path).await.unwrap());
    assert!(
        after.iter().all(|p| p.ends_with(&format!("/locks/{dropper_id}"))),
        "ephemeral nodes of the closed session left: {after:?}"
    );
    drop((svc, e));
}

/// A graceful hand-over leaves neither the leader record nor its component's node (one
/// multi deletes them with the latch node); the next leader's confirm creates both. A
/// leader's repeated confirms overwrite its record, and after a crash the next
/// leader's confirm overwrites the record the crashed one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_record_across_graceful_and_crash_hand_overs() {
    let h = common::harness();
    let cluster = ClusterId::random("records");
    let dir = tempfile::tempdir().unwrap();
    let admin = h.admin().await.unwrap();
    let node = format!("{}/leader/dispatcher", h.cluster_path(&cluster));
    let record = format!("{node}/connection_info");
    let published = || async {
        let (data, _) = admin.get_data(&record).await.unwrap();
        String::from_utf8(data).unwrap()
    };
    let connect = || async { HaServices::new(h.connect(&cluster).await.unwrap(), storage(&dir, &cluster), 1) };
    let component = || ComponentId::new("dispatcher").unwrap();

    let a = connect().await;
    let sa = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut ea = sa.register(component()).unwrap();
    let ga = ea.granted().await.unwrap();
    ea.confirm(&ga, "http://a1").await.unwrap();
    ea.confirm(&ga, "http://a2").await.unwrap();
    assert!(published().await.contains("http://a2"));

    let b = connect().await;
    let sb = b.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut eb = sb.register(component()).unwrap();
    sa.close().await.unwrap();
    let tree = common::list_tree(&admin, h.cluster_path(&cluster).as_str())
        .await
        .unwrap();
    assert!(!tree.iter().any(|p| p.starts_with(&node)), "{tree:?}");
    let gb = tokio::time::timeout(Duration::from_secs(10), eb.granted())
        .await
        .unwrap()
        .unwrap();
    eb.confirm(&gb, "http://b").await.unwrap();
    assert!(published().await.contains("http://b"));

    let c = connect().await;
    let sc = c.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut ec = sc.register(component()).unwrap();
    drop((eb, sb));
    h.crash(b).await;
    let gc = tokio::time::timeout(h.crash_timeout() * 3, ec.granted())
        .await
        .expect("granted after the crashed leader's session ended")
        .unwrap();
    assert!(
        published().await.contains("http://b"),
        "the crashed leader's record stays"
    );
    ec.confirm(&gc, "http://c").await.unwrap();
    assert!(published().await.contains("http://c"));
    sc.close().await.unwrap();
    c.close().await.unwrap();
    a.close_and_cleanup_all_data().await.unwrap();
}
