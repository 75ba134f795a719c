//! User/password authentication against an etcd with auth enabled (its own server):
//! the prefix-scoped HA user works, other clients cannot touch its keys, and no
//! password is ever logged or shown in an error.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{cluster, config, contend, granted_within, init_tracing};
use etcd_client::{Client, ConnectOptions, DeleteOptions, GetOptions, Permission, Txn, TxnOp};
use ha_core::storage::StateStorage;
use ha_core::{Error, HaServices, JobGraph, JobId};
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

/// An auth-enabled etcd with the HA user (`/ha/` read-write), another user whose role
/// covers only `/other/`, and `root`.
async fn auth_server() -> EtcdServer {
    let server = EtcdServer::start().expect("start etcd");
    let mut admin = Client::connect(server.endpoints(), None).await.unwrap();
    admin.user_add("root", "root-secret-pw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    for (role, prefix) in [("ha-rw", "/ha/"), ("other-rw", "/other/")] {
        admin.role_add(role).await.unwrap();
        admin
            .role_grant_permission(role, Permission::read_write(prefix).with_prefix())
            .await
            .unwrap();
    }
    admin.user_add("flink", "flink-secret-pw", None).await.unwrap();
    admin.user_grant_role("flink", "ha-rw").await.unwrap();
    admin.user_add("other", "other-secret-pw", None).await.unwrap();
    admin.user_grant_role("other", "other-rw").await.unwrap();
    admin.auth_enable().await.unwrap();
    server
}

/// Every HA key, with value and mod revision, as the HA user sees it.
async fn ha_keys(server: &EtcdServer, cluster: &ha_core::ClusterId) -> Vec<(String, Vec<u8>, i64)> {
    let opts = ConnectOptions::new().with_user("flink", "flink-secret-pw");
    let mut c = Client::connect(server.endpoints(), Some(opts)).await.unwrap();
    let resp = c
        .get(format!("/ha/{cluster}/"), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().to_vec(),
                kv.mod_revision(),
            )
        })
        .collect()
}

/// After a full HA flow by the prefix-scoped user, neither an unauthenticated client
/// nor a user with a role on another prefix can read, overwrite, delete or add keys
/// under the HA prefix (etcd refuses every request), and the HA data is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_clients_cannot_modify_ha_keys() {
    init_tracing();
    let server = auth_server().await;
    let c = cluster("authz");
    let mut cfg = config(server.endpoints());
    cfg.credentials = Some(("flink".into(), "flink-secret-pw".into()));
    let etcd = EtcdBackend::connect(&c, &cfg).await.expect("connect with credentials");
    let storage = StateStorage::open(&format!("memory://{c}"), &c, &Default::default()).unwrap();
    let ha = HaServices::new(std::sync::Arc::new(etcd), storage, 1);
    let (svc, mut e) = contend(&ha, "dispatcher").await;
    let g = granted_within(&mut e, Duration::from_secs(5)).await;
    e.confirm(&g, "addr").await.unwrap();
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
    let before = ha_keys(&server, &c).await;
    assert!(before.len() >= 4, "{before:?}");

    let anonymous = Client::connect(server.endpoints(), None).await.unwrap();
    let other = Client::connect(
        server.endpoints(),
        Some(ConnectOptions::new().with_user("other", "other-secret-pw")),
    )
    .await
    .unwrap();
    let mut refused = 0;
    for (who, mut client) in [("unauthenticated", anonymous), ("user of /other/", other)] {
        for (key, _, _) in &before {
            let attempts = [
                ("get", client.get(key.as_str(), None).await.map(|_| ())),
                ("put", client.put(key.as_str(), "intruder", None).await.map(|_| ())),
                ("delete", client.delete(key.as_str(), None).await.map(|_| ())),
                (
                    "txn put",
                    client
                        .txn(Txn::new().and_then([TxnOp::put(key.as_str(), "intruder", None)]))
                        .await
                        .map(|_| ()),
                ),
            ];
            for (op, outcome) in attempts {
                match outcome {
                    Err(etcd_client::Error::GRpcStatus(s))
                        if s.message().contains("permission denied") || s.message().contains("user name is empty") =>
                    {
                        refused += 1
                    }
                    other => panic!("{who}: {op} {key}: expected a refusal, got {other:?}"),
                }
            }
        }
        let prefix_delete = client
            .delete(format!("/ha/{c}/"), Some(DeleteOptions::new().with_prefix()))
            .await;
        assert!(prefix_delete.is_err(), "{who}: prefix delete was allowed");
        let new_key = client.put(format!("/ha/{c}/intruder"), "x", None).await;
        assert!(new_key.is_err(), "{who}: a new key under the HA prefix was allowed");
    }
    assert_eq!(refused, before.len() * 4 * 2);
    assert_eq!(ha_keys(&server, &c).await, before, "HA data changed");
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();
}

/// The HA user's password never appears in TRACE logs of every crate (etcd-client,
/// tonic, h2 included) during a successful run, nor in the logs, the error's Display
/// or Debug of a connect with a wrong password. Current-thread runtime: the capture is
/// this thread's subscriber and sees every task.
#[tokio::test]
async fn passwords_never_logged_at_trace() {
    let server = auth_server().await;
    let capture = ha_testkit::LogCapture::new();
    let _guard = capture.install();
    let c = cluster("authlog");
    let mut cfg = config(server.endpoints());
    cfg.credentials = Some(("flink".into(), "flink-secret-pw".into()));
    let etcd = EtcdBackend::connect(&c, &cfg).await.expect("connect with credentials");
    assert!(!format!("{etcd:?} {cfg:?} {cfg:#?}").contains("flink-secret-pw"));
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
    wrong.credentials = Some(("flink".into(), "wrong-secret-pw".into()));
    let err = EtcdBackend::connect(&c, &wrong).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{shown}");
    assert!(
        !shown.contains("wrong-secret-pw") && !shown.contains("flink-secret-pw"),
        "{shown}"
    );
    let text = capture.text();
    assert!(
        text.contains("h2") || text.contains("tonic") || text.contains("etcd_client"),
        "the capture did not see the client stack's logs:\n{text}"
    );
    capture.assert_absent(&["flink-secret-pw", "wrong-secret-pw"]);
    // Nor the auth token etcd handed out (etcd's simple tokens are 16 letters, a dot
    // and an index; the client sends one as gRPC metadata on every request).
    let token = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .find(|w| is_simple_token(w));
    assert_eq!(token, None, "an etcd auth token appears in the logs");
}

/// Whether `w` looks like an etcd simple auth token: `[a-zA-Z]{16}\.[0-9]+`.
fn is_simple_token(w: &str) -> bool {
    match w.split_once('.') {
        Some((head, tail)) => {
            head.len() == 16
                && head.bytes().all(|b| b.is_ascii_alphabetic())
                && !tail.is_empty()
                && tail.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

#[test]
fn simple_token_shape() {
    assert!(is_simple_token("QYtbVHNyGsVPvYmw.12"));
    assert!(!is_simple_token("fenced.1") && !is_simple_token("QYtbVHNyGsVPvYmw."));
}
