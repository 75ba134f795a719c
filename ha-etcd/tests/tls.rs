//! TLS with client certificates against an etcd serving clients over TLS only.
//! Needs the crate feature `tls` (`cargo test -p ha-etcd --features tls --test tls`)
//! and the `openssl` command to make a throw-away CA.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{cluster, config, contend, granted_within, init_tracing};
use ha_core::storage::StateStorage;
use ha_core::{Error, HaServices, JobId};
use ha_etcd::{EtcdBackend, TlsFiles};
use ha_testkit::{EtcdServer, EtcdServerTls};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl").args(args).current_dir(dir).status().unwrap();
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certs(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=ha-test-ca",
        ],
    );
    for name in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_election_and_fenced_write() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let p = |f: &str| dir.path().join(f);
    let server = EtcdServer::start_tls(EtcdServerTls {
        ca: p("ca.pem"),
        cert: p("server.pem"),
        key: p("server.key"),
    })
    .expect("start etcd with TLS");
    assert!(server.endpoint(0).starts_with("https://"));

    let c = cluster("tls");
    let mut cfg = config(server.endpoints());
    cfg.tls = Some(TlsFiles {
        ca_cert: Some(p("ca.pem")),
        client_cert: Some(p("client.pem")),
        client_key: Some(p("client.key")),
    });
    let etcd = EtcdBackend::connect(&c, &cfg).await.expect("connect over mutual TLS");
    let storage = StateStorage::open(&format!("memory://{c}"), &c, &Default::default()).unwrap();
    let ha = HaServices::new(std::sync::Arc::new(etcd), storage, 1);
    let (svc, mut e) = contend(&ha, "dispatcher").await;
    let g = granted_within(&mut e, Duration::from_secs(5)).await;
    let counter = ha.checkpoint_id_counter(&JobId::random()).await.unwrap();
    assert_eq!(counter.get_and_increment(&g.fence).await.unwrap(), 1);
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();

    // Without a client certificate the server refuses the connection.
    let mut no_identity = config(server.endpoints());
    no_identity.tls = Some(TlsFiles {
        ca_cert: Some(p("ca.pem")),
        ..Default::default()
    });
    match EtcdBackend::connect(&c, &no_identity).await {
        Err(Error::Unavailable { .. }) | Err(Error::PermissionDenied { .. }) => {}
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

/// The client's private key never appears in TRACE logs (etcd-client, tonic, rustls
/// via tracing, h2) of a mutual-TLS session, nor in `Debug` of the config (paths
/// only). Current-thread runtime: the capture is this thread's subscriber and sees
/// every task.
#[tokio::test]
async fn tls_key_material_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let p = |f: &str| dir.path().join(f);
    let server = EtcdServer::start_tls(EtcdServerTls {
        ca: p("ca.pem"),
        cert: p("server.pem"),
        key: p("server.key"),
    })
    .expect("start etcd with TLS");
    let capture = ha_testkit::LogCapture::new();
    let _guard = capture.install();
    let c = cluster("tlslog");
    let mut cfg = config(server.endpoints());
    cfg.tls = Some(TlsFiles {
        ca_cert: Some(p("ca.pem")),
        client_cert: Some(p("client.pem")),
        client_key: Some(p("client.key")),
    });
    let etcd = EtcdBackend::connect(&c, &cfg).await.expect("connect over mutual TLS");
    let storage = StateStorage::open(&format!("memory://{c}"), &c, &Default::default()).unwrap();
    let ha = HaServices::new(std::sync::Arc::new(etcd), storage, 1);
    let (svc, mut e) = contend(&ha, "dispatcher").await;
    let g = granted_within(&mut e, Duration::from_secs(5)).await;
    e.confirm(&g, "addr").await.unwrap();
    svc.close().await.unwrap();
    ha.close_and_cleanup_all_data().await.unwrap();

    let key = std::fs::read_to_string(p("client.key")).unwrap();
    let key_lines: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(key_lines.len() > 5);
    let shown = format!("{cfg:?}");
    assert!(key_lines.iter().all(|l| !shown.contains(l)), "{shown}");
    assert!(capture.lines() > 20, "{}", capture.text());
    capture.assert_absent(&key_lines);
    capture.assert_absent(&["PRIVATE KEY"]);
}
