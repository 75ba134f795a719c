//! User/password authentication against an etcd with auth enabled (its own server).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cluster, config, contend, granted_within, init_tracing};
use etcd_client::{Client, Permission};
use ha_core::storage::StateStorage;
use ha_core::{Error, HaServices, JobId};
use ha_etcd::EtcdBackend;
use ha_testkit::EtcdServer;

/// A user whose role may only touch `/ha/` runs a full election and fenced writes;
/// a wrong password is refused as `PermissionDenied`; the password never shows in
/// `Debug`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_scoped_user_works_and_wrong_password_is_refused() {
    init_tracing();
    let server = EtcdServer::start().expect("start etcd");
    let mut admin = Client::connect(server.endpoints(), None).await.unwrap();
    admin.user_add("root", "root-secret-pw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("ha-rw").await.unwrap();
    admin
        .role_grant_permission("ha-rw", Permission::read_write("/ha/").with_prefix())
        .await
        .unwrap();
    admin.user_add("flink", "flink-secret-pw", None).await.unwrap();
    admin.user_grant_role("flink", "ha-rw").await.unwrap();
    admin.auth_enable().await.unwrap();

    let c = cluster("auth");
    let mut cfg = config(server.endpoints());
    cfg.credentials = Some(("flink".into(), "flink-secret-pw".into()));
    assert!(!format!("{cfg:?}").contains("flink-secret-pw"));
    let etcd = EtcdBackend::connect(&c, &cfg).await.expect("connect with credentials");
    let storage = StateStorage::open(&format!("memory://{c}"), &c, &Default::default()).unwrap();
    let ha = HaServices::new(std::sync::Arc::new(etcd), storage, 1);
    let (svc, mut e) = contend(&ha, "dispatcher").await;
    let g = granted_within(&mut e, Duration::from_secs(5)).await;
    e.confirm(&g, "addr").await.unwrap();
    let counter = ha.checkpoint_id_counter(&JobId::random()).await.unwrap();
    assert_eq!(counter.get_and_increment(&g.fence).await.unwrap(), 1);
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();

    let mut wrong = config(server.endpoints());
    wrong.credentials = Some(("flink".into(), "not-the-password".into()));
    match EtcdBackend::connect(&c, &wrong).await {
        Err(Error::PermissionDenied { what }) => assert!(!what.contains("not-the-password")),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}
