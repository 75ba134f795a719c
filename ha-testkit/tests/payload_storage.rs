//! `StateStorage` and the checkpoint store on every payload URL scheme: `file://`,
//! `memory://` and `s3://` against a real S3-protocol server (moto).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use ha_core::embedded::EmbeddedCluster;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, CompletedCheckpoint, Error, HaServices, JobId, DEFAULT_ELECTION_GROUP};
use ha_testkit::S3Server;

async fn round_trip_and_verification(storage: StateStorage) {
    let h = storage
        .store("checkpoints/job", "checkpointID-1", Bytes::from_static(b"payload"))
        .await
        .unwrap();
    assert_eq!(
        storage.retrieve("checkpointID-1", &h).await.unwrap(),
        Bytes::from_static(b"payload")
    );
    assert_eq!(storage.list_all().await.unwrap(), vec![h.path.clone()]);

    storage
        .overwrite_for_test(&h.path, Bytes::from_static(b"paylo4d"))
        .await
        .unwrap();
    let err = storage.retrieve("checkpointID-1", &h).await.unwrap_err();
    assert!(matches!(err, Error::CorruptData { .. }), "{err}");
    assert!(
        err.to_string().contains("checksum mismatch") && err.to_string().contains(&h.path),
        "{err}"
    );

    storage.discard(&h).await.unwrap();
    storage.discard(&h).await.expect("discarding twice is fine");
    let err = storage.retrieve("checkpointID-1", &h).await.unwrap_err();
    assert!(matches!(err, Error::MissingPayload { .. }), "{err}");
    assert!(
        err.to_string().contains("checkpointID-1") && err.to_string().contains(&h.path),
        "{err}"
    );

    for i in 0..3 {
        storage
            .store("jobgraphs", &format!("g{i}"), Bytes::from(vec![i; 10]))
            .await
            .unwrap();
    }
    assert_eq!(storage.list_all().await.unwrap().len(), 3);
    storage.delete_all().await.unwrap();
    assert!(storage.list_all().await.unwrap().is_empty());
}

/// Runs the checkpoint store end to end with payloads in `storage`.
async fn checkpoints_end_to_end(storage: StateStorage, cluster: &ClusterId) {
    let backend = Arc::new(EmbeddedCluster::new(cluster.clone(), std::time::Duration::from_secs(1)).connect());
    let ha = HaServices::new(backend, storage.clone(), 2);
    let election = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = election.register("dispatcher".parse().unwrap()).unwrap();
    let f = e.granted().await.unwrap().fence;
    let job = JobId::random();
    let store = ha.completed_checkpoint_store(&job).await.unwrap();
    for id in 1..=4 {
        let data = Bytes::from(format!("checkpoint {id}"));
        store
            .add_checkpoint(
                &f,
                CompletedCheckpoint {
                    job_id: job.clone(),
                    checkpoint_id: id,
                    data,
                },
            )
            .await
            .unwrap();
    }
    let recovered = store.recover(&f).await.unwrap();
    assert_eq!(
        recovered
            .checkpoints
            .iter()
            .map(|c| c.checkpoint_id)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    ha.cleaner().flush().await;
    assert_eq!(storage.list_all().await.unwrap().len(), 2);
    ha.close_and_cleanup_all_data().await.unwrap();
    assert!(storage.list_all().await.unwrap().is_empty());
}

#[tokio::test]
async fn file_scheme() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ha")).unwrap();
    let url = format!("file://{}/ha", dir.path().display());
    let cluster = ClusterId::random("file");
    round_trip_and_verification(StateStorage::open(&url, &cluster, &BTreeMap::new()).unwrap()).await;
    let storage = StateStorage::open(&url, &cluster, &BTreeMap::new()).unwrap();
    let h = storage.store("blobs", "b", Bytes::from_static(b"x")).await.unwrap();
    // Payloads live under <storageDir>/<cluster-id>/.
    assert!(h.path.starts_with(cluster.as_str()), "{}", h.path);
    assert!(dir.path().join("ha").join(&h.path).is_file());
    storage.delete_all().await.unwrap();
    checkpoints_end_to_end(storage, &cluster).await;
}

#[tokio::test]
async fn memory_scheme() {
    let cluster = ClusterId::random("mem");
    let open = || StateStorage::open("memory://payload-storage-test", &cluster, &BTreeMap::new()).unwrap();
    round_trip_and_verification(open()).await;
    checkpoints_end_to_end(open(), &cluster).await;
}

#[tokio::test]
async fn s3_scheme_on_a_real_s3_server() {
    let server = S3Server::start("ha-test");
    let cluster = ClusterId::random("s3");
    let open = || StateStorage::open(&server.url("ha"), &cluster, &server.options()).unwrap();
    round_trip_and_verification(open()).await;
    checkpoints_end_to_end(open(), &cluster).await;
}

#[tokio::test]
async fn s3_errors_are_clear() {
    let server = S3Server::start("ha-test");
    let cluster = ClusterId::random("s3");
    // A bucket that does not exist: the error names the storage and is retryable-unavailable, not a panic.
    let storage = StateStorage::open("s3://no-such-bucket/ha", &cluster, &server.options()).unwrap();
    let err = storage
        .store("jobgraphs", "g", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("payload storage"), "{err}");
    // S3 secrets never show in Debug.
    let good = StateStorage::open(&server.url("ha"), &cluster, &server.options()).unwrap();
    assert!(!format!("{good:?}").contains("testing-secret"));
}

/// S3 unreachable (moto behind a cut proxy): adds fail as `Unavailable` without
/// acknowledging anything, recovery fails as `Unavailable` and quarantines nothing, and
/// once S3 is back every acknowledged checkpoint is recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unavailable_is_retryable_not_quarantine() {
    let server = S3Server::start("ha-test");
    let proxy = ha_testkit::FaultProxy::start(server.endpoint().trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let mut options = server.options();
    options.insert("aws_endpoint".into(), format!("http://{}", proxy.addr()));
    // Fail fast instead of object_store's default retries for minutes.
    options.insert("max-retries".into(), "1".into());
    options.insert("retry-timeout".into(), "2 s".into());
    let cluster = ClusterId::random("s3down");
    let storage = StateStorage::open(&server.url("ha"), &cluster, &options).unwrap();
    let backend = Arc::new(EmbeddedCluster::new(cluster.clone(), std::time::Duration::from_secs(5)).connect());
    let ha = HaServices::new(backend, storage, 3);
    let election = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = election.register(ha_core::ComponentId::new("jm").unwrap()).unwrap();
    let f = e.granted().await.unwrap().fence;
    let job = JobId::random();
    let store = ha.completed_checkpoint_store(&job).await.unwrap();
    let cp = |id: u64| CompletedCheckpoint {
        job_id: job.clone(),
        checkpoint_id: id,
        data: Bytes::from(vec![id as u8; 100]),
    };
    for id in 1..=2 {
        store.add_checkpoint(&f, cp(id)).await.unwrap();
    }
    proxy.partition();
    let err = store.add_checkpoint(&f, cp(3)).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert_eq!(
        store.checkpoint_ids().await.unwrap(),
        vec![1, 2],
        "nothing acknowledged"
    );
    let err = store.recover(&f).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(store.quarantined_keys().await.unwrap().is_empty());
    proxy.heal();
    let recovered = store.recover(&f).await.unwrap();
    let ids: Vec<u64> = recovered.checkpoints.iter().map(|c| c.checkpoint_id).collect();
    assert_eq!(ids, vec![1, 2]);
    ha.close_and_cleanup_all_data().await.unwrap();
}
