//! The election service's close and confirm on a wrapped embedded backend (paused
//! clock): close hands the confirmed components and the resign to the driver in one
//! call, which a backend may turn into one request; confirm returns once the record
//! is published, and the guard that repairs the record starts its watch by itself,
//! retrying while the watch cannot be opened.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ha_core::driver::{
    CheckpointIdCounterDriver, LeaderElectionDriver, LeaderRecordStream, StateHandleStore, TermSink,
};
use ha_core::embedded::{EmbeddedBackend, EmbeddedCluster};
use ha_core::storage::StateStorage;
use ha_core::{
    ClusterId, ComponentId, ElectionGroup, Error, Fence, HaBackend, HaServices, JobId, LeaderInformation, Participant,
    Result, StoreNamespace, DEFAULT_ELECTION_GROUP,
};

type Calls = Arc<Mutex<Vec<String>>>;

/// An embedded backend whose election drivers record the calls the service makes, and
/// whose record watch fails its first `watch_failures` openings.
#[derive(Debug)]
struct Wrapped {
    inner: EmbeddedBackend,
    watch_failures: AtomicUsize,
    calls: Calls,
}

struct Recording {
    inner: Box<dyn LeaderElectionDriver>,
    calls: Calls,
}

impl Recording {
    fn note(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl LeaderElectionDriver for Recording {
    async fn publish_leader_information(
        &self,
        fence: &Fence,
        component: &ComponentId,
        info: &LeaderInformation,
    ) -> Result<()> {
        self.note(format!("publish {component}"));
        self.inner.publish_leader_information(fence, component, info).await
    }

    async fn delete_leader_information(&self, fence: &Fence, component: &ComponentId) -> Result<()> {
        self.note(format!("delete {component}"));
        self.inner.delete_leader_information(fence, component).await
    }

    async fn resign(&self) -> Result<()> {
        self.note("resign".into());
        self.inner.resign().await
    }

    async fn hand_off(&self, fence: &Fence, target: &str) -> Result<()> {
        self.inner.hand_off(fence, target).await
    }

    async fn delete_leader_information_and_resign(&self, fence: &Fence, components: &[ComponentId]) -> Result<()> {
        let names: Vec<&str> = components.iter().map(ComponentId::as_str).collect();
        self.note(format!("delete {} and resign", names.join(",")));
        self.inner.delete_leader_information_and_resign(fence, components).await
    }
}

#[async_trait]
impl HaBackend for Wrapped {
    fn cluster_id(&self) -> &ClusterId {
        self.inner.cluster_id()
    }

    fn instance_id(&self) -> &str {
        self.inner.instance_id()
    }

    async fn election_driver(&self, group: &ElectionGroup, sink: TermSink) -> Result<Box<dyn LeaderElectionDriver>> {
        Ok(Box::new(Recording {
            inner: self.inner.election_driver(group, sink).await?,
            calls: self.calls.clone(),
        }))
    }

    async fn watch_leader_record(&self, component: &ComponentId) -> Result<LeaderRecordStream> {
        let failing = self
            .watch_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(Error::unavailable("record watch (test)", "refused"));
        }
        self.inner.watch_leader_record(component).await
    }

    async fn leader_components(&self) -> Result<Vec<ComponentId>> {
        self.inner.leader_components().await
    }

    async fn participants(&self, group: &ElectionGroup) -> Result<Vec<Participant>> {
        self.inner.participants(group).await
    }

    async fn state_handle_store(&self, namespace: &StoreNamespace) -> Result<Arc<dyn StateHandleStore>> {
        self.inner.state_handle_store(namespace).await
    }

    async fn checkpoint_id_counter(&self, job: &JobId) -> Result<Arc<dyn CheckpointIdCounterDriver>> {
        self.inner.checkpoint_id_counter(job).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    async fn cleanup_all_data(&self) -> Result<()> {
        self.inner.cleanup_all_data().await
    }
}

fn services(cluster: &EmbeddedCluster, watch_failures: usize) -> (HaServices, Calls) {
    let calls = Calls::default();
    let backend = Wrapped {
        inner: cluster.connect(),
        watch_failures: AtomicUsize::new(watch_failures),
        calls: calls.clone(),
    };
    let storage = StateStorage::open(
        &format!("memory://close-{}", cluster.cluster_id()),
        cluster.cluster_id(),
        &Default::default(),
    )
    .unwrap();
    (HaServices::new(Arc::new(backend), storage, 1), calls)
}

fn leader_records(cluster: &EmbeddedCluster) -> Vec<String> {
    cluster
        .list_records()
        .into_iter()
        .filter(|r| r.strip_prefix("leader/").is_some_and(|c| !c.contains('/')))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn close_hands_the_confirmed_components_and_the_resign_to_the_driver_at_once() {
    let cluster = EmbeddedCluster::new(ClusterId::random("close"), Duration::from_secs(2));
    let (a, a_calls) = services(&cluster, 0);
    let (b, b_calls) = services(&cluster, 0);
    let svc_a = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut confirmed = svc_a.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let _unconfirmed = svc_a.register(ComponentId::new("rest").unwrap()).unwrap();
    let grant = confirmed.granted().await.unwrap();
    confirmed.confirm(&grant, "http://a").await.unwrap();
    assert_eq!(leader_records(&cluster).len(), 1, "{:?}", cluster.list_records());

    let svc_b = b.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut follower = svc_b.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    svc_a.close().await.unwrap();
    assert_eq!(
        *a_calls.lock().unwrap(),
        vec!["publish dispatcher", "delete dispatcher and resign"],
        "one driver call deletes what was confirmed and resigns"
    );
    assert!(leader_records(&cluster).is_empty(), "{:?}", cluster.list_records());
    follower.granted().await.unwrap();

    // A service that holds no term only resigns.
    let (c, c_calls) = services(&cluster, 0);
    let svc_c = c.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let _queued = svc_c.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    svc_c.close().await.unwrap();
    assert_eq!(*c_calls.lock().unwrap(), vec!["resign"]);
    svc_b.close().await.unwrap();
    assert!(b_calls.lock().unwrap().ends_with(&["resign".to_string()]));
}

#[tokio::test(start_paused = true)]
async fn confirm_does_not_wait_for_the_record_guard_which_starts_its_watch_by_itself() {
    let cluster = EmbeddedCluster::new(ClusterId::random("guard"), Duration::from_secs(2));
    let component = ComponentId::new("dispatcher").unwrap();
    // The guard's first three attempts to watch the record fail.
    let (a, _) = services(&cluster, 3);
    let svc = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut e = svc.register(component.clone()).unwrap();
    let grant = e.granted().await.unwrap();
    e.confirm(&grant, "http://a").await.unwrap();
    let (observer, _) = services(&cluster, 0);
    let published = observer.leader_retrieval_service(&component).await.unwrap();
    assert_eq!(published.current().map(|i| i.address), Some("http://a".to_string()));

    // Tampered with before the guard could watch: repaired once it does.
    cluster.write_leader_record(&component, Some(Bytes::from_static(b"garbage")));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh = observer.leader_retrieval_service(&component).await.unwrap();
    assert_eq!(
        fresh.current().map(|i| (i.address, i.session_id)),
        Some(("http://a".to_string(), grant.session_id)),
        "the guard wrote the confirmed record back"
    );
    svc.close().await.unwrap();
}
