//! S3 secret hygiene: the secret access key and session token given as storage options
//! never appear in `Debug` of the config or storage, in TRACE logs of a payload round
//! trip (object_store, reqwest, hyper included) against a real S3-protocol server
//! (moto), nor in the error of a refused request. Current-thread runtime: the log
//! capture is this thread's subscriber and sees every task.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, HaConfig};
use ha_testkit::{LogCapture, S3Server};

const SECRET_KEY: &str = "s3-SECRET-key-0b7d52e1";
const SESSION_TOKEN: &str = "s3-SESSION-token-a4c3";

fn options(server: &S3Server) -> BTreeMap<String, String> {
    let mut o = server.options();
    o.insert("aws_secret_access_key".into(), SECRET_KEY.into());
    o.insert("aws_token".into(), SESSION_TOKEN.into());
    o
}

#[tokio::test]
async fn s3_secrets_never_logged_or_shown() {
    let server = S3Server::start("ha-secrets");
    let capture = LogCapture::new();
    let _guard = capture.install();
    let cluster = ClusterId::random("s3sec");

    let mut entries = BTreeMap::from([
        ("high-availability.type".to_string(), "embedded".to_string()),
        ("high-availability.storageDir".to_string(), server.url("ha")),
    ]);
    for (k, v) in options(&server) {
        entries.insert(format!("high-availability.storage.{k}"), v);
    }
    let config = HaConfig::from_entries(entries).unwrap();
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains(SECRET_KEY) && !shown.contains(SESSION_TOKEN), "{shown}");

    let storage = StateStorage::open(&server.url("ha"), &cluster, &options(&server)).unwrap();
    let shown = format!("{storage:?}");
    assert!(!shown.contains(SECRET_KEY) && !shown.contains(SESSION_TOKEN), "{shown}");
    let h = storage
        .store("checkpoints/job", "checkpointID-1", Bytes::from_static(b"payload"))
        .await
        .unwrap();
    assert_eq!(
        storage.retrieve("checkpointID-1", &h).await.unwrap(),
        Bytes::from_static(b"payload")
    );
    storage.delete_all().await.unwrap();

    // A refused request (no such bucket): the error carries no secret either.
    let missing = StateStorage::open("s3://no-such-bucket/ha", &cluster, &options(&server)).unwrap();
    let err = missing
        .store("jobgraphs", "g", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET_KEY) && !shown.contains(SESSION_TOKEN), "{shown}");

    let text = capture.text();
    assert!(
        text.contains("reqwest") || text.contains("hyper") || text.contains("object_store"),
        "the capture did not see the HTTP stack's logs:\n{text}"
    );
    capture.assert_absent(&[SECRET_KEY, SESSION_TOKEN]);
}
