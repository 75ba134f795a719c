//! Backend-specific fault tests on the emulator: a slow and an unavailable API
//! server, stale leaders, a deposed leader's late create, failover with many jobs,
//! graceful release by watch, lost replies, size limit, finished jobs, cleanup. Timings: lease 2 s, renew deadline 1.4 s, retry 0.3 s (request timeout
//! 0.7 s).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use ha_core::storage::StateStorage;
use ha_core::{
    CompletedCheckpoint, Error, HaServices, JobGraph, JobId, JobResult, JobStatus, LeaderElection,
    LeaderElectionService, LeaderGrant, StoreNamespace, DEFAULT_ELECTION_GROUP,
};
use ha_kubernetes::{LeaseTimings, LockKind};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, PostParams};
use tokio::time::Instant;

use common::KubeHarness;

struct Cluster {
    harness: KubeHarness,
    cluster_id: ha_core::ClusterId,
    _dir: tempfile::TempDir,
    storage_url: String,
}

impl Cluster {
    fn new() -> Self {
        Self::with_lock(LockKind::default())
    }

    fn with_lock(lock: LockKind) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage_url = format!("file://{}", dir.path().display());
        Self {
            harness: KubeHarness::emulator().with_lock(lock),
            cluster_id: ha_core::ClusterId::random("faults"),
            _dir: dir,
            storage_url,
        }
    }

    fn emulator(&self) -> &ha_testkit::KubeApiEmulator {
        self.harness.emulator_ref().expect("emulator")
    }

    async fn process_with(&self, timings: LeaseTimings) -> HaServices {
        let backend = ha_kubernetes::KubernetesBackend::with_client_and_lock(
            self.harness.client().await,
            self.harness.namespace(),
            &self.cluster_id,
            timings,
            self.harness.lock,
        )
        .expect("backend");
        let storage = StateStorage::open(&self.storage_url, &self.cluster_id, &Default::default()).expect("storage");
        HaServices::new(Arc::new(backend), storage, 1)
    }

    async fn process(&self) -> HaServices {
        self.process_with(self.harness.timings).await
    }

    async fn config_map(&self, name: &str) -> Option<ConfigMap> {
        self.harness
            .config_maps()
            .await
            .get_opt(name)
            .await
            .expect("get ConfigMap")
    }

    /// The default group's lock record as JSON (annotation, or the Lease's spec).
    async fn lock_record(&self) -> String {
        match self.harness.lock {
            LockKind::ConfigMap => self
                .config_map(&self.cluster_cm())
                .await
                .unwrap()
                .metadata
                .annotations
                .unwrap()["control-plane.alpha.kubernetes.io/leader"]
                .clone(),
            LockKind::Lease => {
                let leases: kube::Api<Lease> =
                    kube::Api::namespaced(self.harness.client().await, self.harness.namespace());
                let lease = leases.get(&format!("{}-leader", self.cluster_id)).await.unwrap();
                serde_json::to_string(&lease.spec).unwrap()
            }
        }
    }

    fn cluster_cm(&self) -> String {
        format!("{}-cluster-config-map", self.cluster_id)
    }
}

async fn contend(ha: &HaServices) -> (LeaderElectionService, LeaderElection) {
    let s = ha
        .leader_election_service(DEFAULT_ELECTION_GROUP)
        .await
        .expect("election service");
    let e = s
        .register(ha_core::ComponentId::new("dispatcher").expect("id"))
        .expect("register");
    (s, e)
}

fn assert_not_leader<T: std::fmt::Debug>(what: &str, r: ha_core::Result<T>) {
    match r {
        Err(Error::NotLeader { .. }) => {}
        other => panic!("{what}: expected NotLeader, got {other:?}"),
    }
}

/// `(when, contender, leading?)` for every change of every contender's grant.
type Timeline = Arc<Mutex<Vec<(Instant, usize, bool)>>>;

fn record(timeline: &Timeline, idx: usize, mut election: LeaderElection) -> tokio::task::JoinHandle<()> {
    let timeline = timeline.clone();
    if election.current().is_some() {
        timeline.lock().unwrap().push((Instant::now(), idx, true));
    }
    tokio::spawn(async move {
        while let Ok(g) = election.changed().await {
            timeline.lock().unwrap().push((Instant::now(), idx, g.is_some()));
        }
    })
}

/// Panics if two contenders were ever leading at the same time.
fn assert_no_overlap(timeline: &Timeline) {
    let events = timeline.lock().unwrap().clone();
    let mut leading = std::collections::BTreeSet::new();
    for (at, idx, is_leader) in &events {
        if *is_leader {
            leading.insert(*idx);
        } else {
            leading.remove(idx);
        }
        assert!(
            leading.len() <= 1,
            "split brain at {at:?}: {leading:?} lead at once; timeline {events:?}"
        );
    }
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Latency rising to and beyond the request timeout: at no moment do two contenders
/// lead, and leadership is given up (never taken over) while renewals cannot finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_api_server_never_splits_the_brain() {
    let c = Cluster::new();
    let (a, b) = (c.process().await, c.process().await);
    let (_sa, ea) = contend(&a).await;
    let (_sb, eb) = contend(&b).await;
    let timeline: Timeline = Arc::default();
    let t1 = record(&timeline, 0, ea);
    let t2 = record(&timeline, 1, eb);
    let tl = timeline.clone();
    wait_until("a first leader", Duration::from_secs(10), || {
        tl.lock().unwrap().iter().any(|e| e.2)
    })
    .await;
    for latency_ms in [200u64, 500, 650, 900, 1300] {
        c.emulator().faults().set_latency(Duration::from_millis(latency_ms));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_no_overlap(&timeline);
    }
    c.emulator().faults().reset();
    let tl = timeline.clone();
    wait_until("a leader after the slowness", Duration::from_secs(15), || {
        let ev = tl.lock().unwrap();
        let mut leading = std::collections::BTreeSet::new();
        for (_, i, l) in ev.iter() {
            if *l {
                leading.insert(*i);
            } else {
                leading.remove(i);
            }
        }
        leading.len() == 1
    })
    .await;
    assert_no_overlap(&timeline);
    assert!(
        timeline.lock().unwrap().iter().any(|e| !e.2),
        "with every request slower than the request timeout, the leader must have stepped down"
    );
    t1.abort();
    t2.abort();
    a.close().await.ok();
    b.close().await.ok();
}

/// The API server becomes unavailable for longer than the lease: the leader steps
/// down before the lease could have expired for anyone else, refuses its own writes
/// from then on, and after recovery a later term is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_api_makes_the_leader_step_down_in_time() {
    let c = Cluster::new();
    let timings = c.harness.timings;
    let (a, b) = (c.process().await, c.process().await);
    let (_sa, mut ea) = contend(&a).await;
    let ga = tokio::time::timeout(Duration::from_secs(10), ea.granted())
        .await
        .expect("a granted")
        .unwrap();
    let (_sb, eb) = contend(&b).await;
    let graphs = a.job_graph_store().await.unwrap();
    let job = JobId::random();
    let graph = JobGraph {
        job_id: job.clone(),
        data: Bytes::from_static(b"graph"),
    };
    graphs.put_job_graph(&ga.fence, &graph).await.unwrap();

    let outage = Instant::now();
    c.emulator().set_unavailable(true);
    tokio::time::timeout(Duration::from_secs(10), ea.revoked(&ga))
        .await
        .expect("revoked")
        .unwrap();
    let stepped_down = outage.elapsed();
    // Safety bound, not a speed figure: others may judge the record expired only a
    // lease after they last saw it change, which was before the outage.
    assert!(
        stepped_down < timings.lease_duration,
        "leader stepped down {stepped_down:?} into the outage, not before the lease ({:?})",
        timings.lease_duration
    );
    // Refused locally, without reaching the (unavailable) API server.
    let raw = a
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    assert_not_leader(
        "write after stepping down",
        raw.add_and_lock(&ga.fence, "jobGraph-after", Bytes::from_static(b"x"))
            .await,
    );
    tokio::time::sleep((timings.lease_duration * 2).saturating_sub(outage.elapsed())).await;
    assert!(
        eb.current().is_none() && ea.current().is_none(),
        "nobody can be granted while the API is down"
    );

    c.emulator().set_unavailable(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    let epoch = loop {
        if let Some(g) = ea.current().or_else(|| eb.current()) {
            break g.epoch;
        }
        assert!(Instant::now() < deadline, "no leader after the API came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(epoch > ga.epoch, "the term after the outage has a higher epoch");
    assert_not_leader("old term after recovery", graphs.put_job_graph(&ga.fence, &graph).await);
    a.close().await.ok();
    b.close().await.ok();
}

/// A leader crashes (its record is left to expire); after the hand-over, its fence is
/// refused by the cluster ConfigMap and by the per-job ConfigMap it wrote, whichever
/// live process presents it, and neither ConfigMap changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_leader_writes_are_rejected_in_cluster_and_job_config_maps() {
    stale_leader_writes_are_rejected_in_cluster_and_job_config_maps_with(LockKind::ConfigMap).await;
}

/// The same with the Lease lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_leader_writes_are_rejected_in_cluster_and_job_config_maps_with_lease_lock() {
    stale_leader_writes_are_rejected_in_cluster_and_job_config_maps_with(LockKind::Lease).await;
}

async fn stale_leader_writes_are_rejected_in_cluster_and_job_config_maps_with(lock: LockKind) {
    let c = Cluster::with_lock(lock);
    let a = c.process().await;
    let (sa, mut ea) = contend(&a).await;
    let stale = tokio::time::timeout(Duration::from_secs(10), ea.granted())
        .await
        .expect("a granted")
        .unwrap();
    let job = JobId::random();
    let graph = JobGraph {
        job_id: job.clone(),
        data: Bytes::from_static(b"graph-1"),
    };
    a.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(&stale.fence, &graph)
        .await
        .unwrap();
    let counter = a.checkpoint_id_counter(&job).await.unwrap();
    let id = counter.get_and_increment(&stale.fence).await.unwrap();
    let cp = |id: u64| CompletedCheckpoint {
        job_id: job.clone(),
        checkpoint_id: id,
        data: Bytes::from(format!("cp-{id}")),
    };
    a.completed_checkpoint_store(&job)
        .await
        .unwrap()
        .add_checkpoint(&stale.fence, cp(id))
        .await
        .unwrap();
    let job_cm = format!("{}-{job}-config-map", c.cluster_id);

    let b = c.process().await;
    let (_sb, mut eb) = contend(&b).await;
    drop((sa, ea, counter));
    drop(a); // crash: nothing released
    let gb = tokio::time::timeout(Duration::from_secs(10), eb.granted())
        .await
        .expect("b granted")
        .unwrap();
    assert!(gb.epoch > stale.epoch);
    // The new leader recovers the job, which claims its ConfigMap for the new term.
    let recovered = b
        .completed_checkpoint_store(&job)
        .await
        .unwrap()
        .recover(&gb.fence)
        .await
        .unwrap();
    assert_eq!(recovered.checkpoints, vec![cp(id)]);
    let epoch_json = c.config_map(&job_cm).await.expect("job ConfigMap").data.unwrap()["epoch"].clone();
    assert!(
        epoch_json.contains(&format!("\"epoch\":{}", gb.epoch.0)),
        "the new leader's recovery claimed the job's ConfigMap: {epoch_json}"
    );
    let before = (
        c.config_map(&c.cluster_cm()).await.unwrap().data,
        c.config_map(&job_cm).await.unwrap().data,
    );

    // A process that never led presents the stale fence, so only the API server's
    // check can refuse it.
    let other = c.process().await;
    let changed = JobGraph {
        job_id: job.clone(),
        data: Bytes::from_static(b"graph-2"),
    };
    let graphs = other.job_graph_store().await.unwrap();
    assert_not_leader(
        "job ConfigMap: job graph",
        graphs.put_job_graph(&stale.fence, &changed).await,
    );
    let new_job = JobId::random();
    assert_not_leader(
        "cluster ConfigMap: registering a new job's ConfigMap",
        other
            .checkpoint_id_counter(&new_job)
            .await
            .unwrap()
            .get_and_increment(&stale.fence)
            .await,
    );
    let cps = other.completed_checkpoint_store(&job).await.unwrap();
    assert_not_leader(
        "job ConfigMap: checkpoint",
        cps.add_checkpoint(&stale.fence, cp(id + 1)).await,
    );
    let counter = other.checkpoint_id_counter(&job).await.unwrap();
    assert_not_leader("job ConfigMap: counter", counter.get_and_increment(&stale.fence).await);
    let raw = other
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    assert_not_leader(
        "job ConfigMap: raw add",
        raw.add_and_lock(
            &stale.fence,
            "checkpointID-0000000000000000099",
            Bytes::from_static(b"x"),
        )
        .await,
    );
    let after = (
        c.config_map(&c.cluster_cm()).await.unwrap().data,
        c.config_map(&job_cm).await.unwrap().data,
    );
    assert_eq!(before, after, "stale writes changed a ConfigMap");
    // The new leader writes fine.
    graphs.put_job_graph(&gb.fence, &changed).await.unwrap();
    assert_eq!(counter.get_and_increment(&gb.fence).await.unwrap(), id + 1);
    b.close().await.ok();
    other.close().await.ok();
}

/// A resigning leader releases the lock; a follower whose own polling would not come
/// for 20 s takes over on the release's watch event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_release_hands_over_by_watch() {
    graceful_release_hands_over_by_watch_with(LockKind::ConfigMap).await;
}

/// The same with the Lease lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_release_hands_over_by_watch_with_lease_lock() {
    graceful_release_hands_over_by_watch_with(LockKind::Lease).await;
}

async fn graceful_release_hands_over_by_watch_with(lock: LockKind) {
    let c = Cluster::with_lock(lock);
    let a = c.process().await;
    let (sa, mut ea) = contend(&a).await;
    tokio::time::timeout(Duration::from_secs(10), ea.granted())
        .await
        .expect("a granted")
        .unwrap();
    let slow = LeaseTimings::new(
        Duration::from_secs(60),
        Duration::from_secs(50),
        Duration::from_secs(20),
    )
    .unwrap();
    let b = c.process_with(slow).await;
    let (_sb, mut eb) = contend(&b).await;
    // Let b's first attempt see a's record and its watch list the ConfigMap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(eb.current().is_none());
    sa.close().await.unwrap();
    let record = c.lock_record().await;
    let b_id = b.backend().instance_id().to_string();
    assert!(
        record.contains("\"holderIdentity\":\"\"") || record.contains(&b_id),
        "record neither released nor taken over: {record}"
    );
    tokio::time::timeout(Duration::from_secs(10), eb.granted())
        .await
        .expect("b granted from the watch event, long before its next poll")
        .unwrap();
    a.close().await.ok();
    b.close().await.ok();
}

/// A write whose reply is lost is `OutcomeUnknown`, and it did land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_reply_is_outcome_unknown() {
    let c = Cluster::new();
    let a = c.process().await;
    let (_s, mut e) = contend(&a).await;
    let g = tokio::time::timeout(Duration::from_secs(10), e.granted())
        .await
        .expect("granted")
        .unwrap();
    let job = JobId::random();
    let store = a
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    let name = "checkpointID-0000000000000000001";
    // Only the request creating the job's ConfigMap (the only one carrying the entry's
    // name: not the registration of the creation, not background renewals) loses its
    // reply.
    c.emulator().faults().lose_next_replies_to(1, name);
    match store.add_and_lock(&g.fence, name, Bytes::from_static(b"v")).await {
        Err(Error::OutcomeUnknown { key, .. }) => assert!(key.contains(name), "{key}"),
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    assert_eq!(store.get(name).await.unwrap().unwrap().value, Bytes::from_static(b"v"));
    a.close().await.ok();
}

/// Values beyond the 1 MiB ConfigMap limit fail with `TooLarge` naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_beyond_one_mebibyte_are_too_large() {
    let c = Cluster::new();
    let a = c.process().await;
    let (_s, mut e) = contend(&a).await;
    let g = tokio::time::timeout(Duration::from_secs(10), e.granted())
        .await
        .expect("granted")
        .unwrap();
    let job = JobId::random();
    let store = a
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job))
        .await
        .unwrap();
    let big = Bytes::from(vec![b'x'; 1024 * 1024 + 10]);
    match store
        .add_and_lock(&g.fence, "checkpointID-0000000000000000001", big)
        .await
    {
        Err(Error::TooLarge { key, limit, .. }) => {
            assert!(key.contains("checkpointID-0000000000000000001"), "{key}");
            assert_eq!(limit, 1024 * 1024);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    a.close().await.ok();
}

/// Cleanup deletes every ConfigMap of the cluster (by label) and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_leaves_no_config_map() {
    let c = Cluster::new();
    let cms = c.harness.config_maps().await;
    let unrelated = |name: &str, labels: Option<(&str, &str)>| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: labels.map(|(k, v)| [(k.to_string(), v.to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &unrelated("unrelated-plain", None))
        .await
        .unwrap();
    cms.create(
        &PostParams::default(),
        &unrelated("other-cluster", Some(("app", "other"))),
    )
    .await
    .unwrap();
    let a = c.process().await;
    let (sa, mut e) = contend(&a).await;
    let g = tokio::time::timeout(Duration::from_secs(10), e.granted())
        .await
        .expect("granted")
        .unwrap();
    e.confirm(&g, "addr").await.unwrap();
    for _ in 0..2 {
        let job = JobId::random();
        let graph = JobGraph {
            job_id: job.clone(),
            data: Bytes::from_static(b"g"),
        };
        a.job_graph_store()
            .await
            .unwrap()
            .put_job_graph(&g.fence, &graph)
            .await
            .unwrap();
        let id = a
            .checkpoint_id_counter(&job)
            .await
            .unwrap()
            .get_and_increment(&g.fence)
            .await
            .unwrap();
        let cp = CompletedCheckpoint {
            job_id: job.clone(),
            checkpoint_id: id,
            data: Bytes::from_static(b"c"),
        };
        a.completed_checkpoint_store(&job)
            .await
            .unwrap()
            .add_checkpoint(&g.fence, cp)
            .await
            .unwrap();
    }
    let names = || async {
        let mut n: Vec<String> = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        n.sort();
        n
    };
    assert_eq!(names().await.len(), 5, "cluster + 2 job ConfigMaps + 2 unrelated");
    sa.close().await.unwrap();
    a.close_and_cleanup_all_data().await.unwrap();
    assert_eq!(names().await, ["other-cluster", "unrelated-plain"]);
}

/// A crashed leader is replaced no earlier than a lease after its last renewal was
/// visible: followers date renewals by the record changing, so every renewal must
/// change it (sub-second `renewTime`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_leader_is_replaced_only_after_a_full_lease() {
    crashed_leader_is_replaced_only_after_a_full_lease_with(LockKind::ConfigMap).await;
}

/// The same with the Lease lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_leader_is_replaced_only_after_a_full_lease_with_lease_lock() {
    crashed_leader_is_replaced_only_after_a_full_lease_with(LockKind::Lease).await;
}

async fn crashed_leader_is_replaced_only_after_a_full_lease_with(lock: LockKind) {
    use futures::StreamExt;
    use kube::runtime::watcher;

    let c = Cluster::with_lock(lock);
    let lease = c.harness.timings.lease_duration;
    // Every write of the lock object (new resourceVersion) as an independent
    // observer sees it; in this test only the lock record is written.
    let changes: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let log = changes.clone();
    let push = move |rv: Option<String>, record: String| {
        let entry = format!("{} {record}", rv.unwrap_or_default());
        let mut log = log.lock().unwrap();
        if log.last().is_none_or(|(_, r)| *r != entry) {
            log.push((Instant::now(), entry));
        }
    };
    let watch = match lock {
        LockKind::ConfigMap => {
            let cms = c.harness.config_maps().await;
            let cfg = watcher::Config::default().fields(&format!("metadata.name={}", c.cluster_cm()));
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(watcher::watcher(cms, cfg));
                while let Some(event) = stream.next().await {
                    let Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) = event else {
                        continue;
                    };
                    let record = cm
                        .metadata
                        .annotations
                        .and_then(|a| a.get("control-plane.alpha.kubernetes.io/leader").cloned())
                        .unwrap_or_default();
                    push(cm.metadata.resource_version, record);
                }
            })
        }
        LockKind::Lease => {
            let leases: kube::Api<Lease> = kube::Api::namespaced(c.harness.client().await, c.harness.namespace());
            let cfg = watcher::Config::default().fields(&format!("metadata.name={}-leader", c.cluster_id));
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(watcher::watcher(leases, cfg));
                while let Some(event) = stream.next().await {
                    let Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) = event else {
                        continue;
                    };
                    push(l.metadata.resource_version, serde_json::to_string(&l.spec).unwrap());
                }
            })
        }
    };
    for round in 0..2u32 {
        let a = c.process().await;
        let (sa, mut ea) = contend(&a).await;
        tokio::time::timeout(Duration::from_secs(10), ea.granted())
            .await
            .expect("a granted")
            .unwrap();
        let b = c.process().await;
        let b_id = b.backend().instance_id().to_string();
        let (sb, mut eb) = contend(&b).await;
        // Let a renew a few times, then crash it at some phase of its cycle.
        tokio::time::sleep(Duration::from_millis(1000 + 130 * u64::from(round))).await;
        drop((sa, ea, a));
        tokio::time::timeout(Duration::from_secs(10), eb.granted())
            .await
            .expect("b granted")
            .unwrap();
        let seen = changes.clone();
        let id = b_id.clone();
        wait_until("the observer to see b's record", Duration::from_secs(5), || {
            seen.lock().unwrap().iter().any(|(_, r)| r.contains(&id))
        })
        .await;
        let log = changes.lock().unwrap().clone();
        let acquired = log
            .iter()
            .rposition(|(_, r)| r.contains(&b_id))
            .expect("b's acquisition seen");
        let first_b = log[..=acquired]
            .iter()
            .position(|(_, r)| r.contains(&b_id))
            .expect("b's first record");
        assert!(first_b > 0, "a's renewals seen before b's acquisition");
        let gap = log[first_b].0 - log[first_b - 1].0;
        assert!(
            gap + Duration::from_millis(100) >= lease,
            "b took over {gap:?} after a's last renewal, less than the lease {lease:?}"
        );
        sb.close().await.unwrap();
        b.close_and_cleanup_all_data().await.ok();
        changes.lock().unwrap().clear();
    }
    watch.abort();
}

/// A lock owner that crashes keeps its lock only until its session Lease is ended by
/// the leader's sweeper (twice the lease duration unchanged); then the leader can
/// remove the entry. A closed owner's lock ends at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_lock_owner_session_ends_and_entry_can_be_removed() {
    let c = Cluster::new();
    let leader = c.process().await;
    let (_s, mut e) = contend(&leader).await;
    let g = tokio::time::timeout(Duration::from_secs(10), e.granted())
        .await
        .expect("granted")
        .unwrap();
    let ls = leader
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    ls.add_and_lock(&g.fence, "jobGraph-x", Bytes::from_static(b"1"))
        .await
        .unwrap();
    let standby = c.process().await;
    let standby_id = standby.backend().instance_id().to_string();
    let os = standby
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    os.get_and_lock("jobGraph-x").await.unwrap();
    assert!(ls.lock_owners("jobGraph-x").await.unwrap().contains(&standby_id));
    assert!(
        !ls.release_and_try_remove(&g.fence, "jobGraph-x").await.unwrap(),
        "standby still holds it"
    );
    drop((os, standby)); // crash: its session Lease is left behind
    let started = Instant::now();
    loop {
        if ls.release_and_try_remove(&g.fence, "jobGraph-x").await.unwrap() {
            break;
        }
        assert!(
            started.elapsed() < c.harness.timings.lease_duration * 6,
            "the crashed owner's session was never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ls.get("jobGraph-x").await.unwrap().is_none());
    leader.close_and_cleanup_all_data().await.unwrap();
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(c.harness.client().await, c.harness.namespace());
    assert!(
        leases.list(&ListParams::default()).await.unwrap().items.is_empty(),
        "session leases left"
    );
}

/// Retrieval of any number of components, and the election, share one watch per
/// backend instance; they all follow the published leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shared_watch_per_instance() {
    let c = Cluster::new();
    let a = c.process().await;
    let svc = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let names = ["dispatcher", "resourcemanager", "restserver", "job-0123"];
    let elections: Vec<LeaderElection> = names
        .iter()
        .map(|n| svc.register(ha_core::ComponentId::new(*n).unwrap()).unwrap())
        .collect();
    let observer = c.process().await;
    let mut retrievals = Vec::new();
    for n in names {
        let id = ha_core::ComponentId::new(n).unwrap();
        retrievals.push(observer.leader_retrieval_service(&id).await.unwrap());
    }
    let mut first = elections.into_iter();
    let mut e0 = first.next().unwrap();
    let g = tokio::time::timeout(Duration::from_secs(10), e0.granted())
        .await
        .expect("granted")
        .unwrap();
    e0.confirm(&g, "addr-dispatcher").await.unwrap();
    for (e, n) in first.zip(names.iter().skip(1)) {
        e.confirm(&g, &format!("addr-{n}")).await.unwrap();
    }
    for (r, n) in retrievals.iter().zip(names) {
        let want = format!("addr-{n}");
        tokio::time::timeout(
            Duration::from_secs(10),
            r.wait_for(|i| i.as_ref().is_some_and(|i| i.address == want)),
        )
        .await
        .expect("retrieval follows the leader")
        .unwrap();
    }
    // Two instances (leader and observer), one watch each.
    assert_eq!(c.emulator().watch_count(), 2);
    a.close().await.ok();
    observer.close().await.ok();
}

async fn granted(election: &mut LeaderElection) -> LeaderGrant {
    tokio::time::timeout(Duration::from_secs(10), election.granted())
        .await
        .expect("granted within 10 s")
        .unwrap()
}

fn fail<T>(job: usize, what: &str, e: Error) -> T {
    panic!("job #{job}: {what} failed: {e}")
}

fn checkpoint(job: &JobId, id: u64) -> CompletedCheckpoint {
    CompletedCheckpoint {
        job_id: job.clone(),
        checkpoint_id: id,
        data: Bytes::from(format!("cp-{job}-{id}")),
    }
}

/// 1,000 jobs, each with a per-job ConfigMap and a checkpoint (set up without latency);
/// then every API request takes 10 ms and the leader crashes. A contender is granted
/// within lease + renew-deadline of the crash (nothing per job stands between the
/// acquisition and the grant) and recovers every job's checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_with_1000_jobs_is_bounded() {
    const JOBS: usize = 1000;
    let c = Cluster::new();
    let a = c.process().await;
    let (sa, mut ea) = contend(&a).await;
    let ga = granted(&mut ea).await;
    let jobs: Vec<JobId> = (0..JOBS).map(|_| JobId::random()).collect();
    futures::stream::iter(jobs.iter())
        .map(|job| {
            let (a, fence) = (&a, &ga.fence);
            async move {
                let store = a.completed_checkpoint_store(job).await.unwrap();
                store.add_checkpoint(fence, checkpoint(job, 1)).await.unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let b = c.process().await;
    let (_sb, mut eb) = contend(&b).await;
    // Let b's first attempt and its watch see a's record.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.emulator().faults().set_latency(Duration::from_millis(10));
    let crashed = Instant::now();
    drop((sa, ea));
    drop(a);
    let t = c.harness.timings;
    let bound = t.lease_duration + t.renew_deadline;
    let gb = match tokio::time::timeout(bound * 5, eb.granted()).await {
        Ok(g) => g.unwrap(),
        Err(_) => panic!(
            "no contender was granted within {:?} of the crash (bound: lease + renew-deadline = {bound:?}) with {JOBS} jobs at 10 ms API latency",
            bound * 5
        ),
    };
    let to_grant = crashed.elapsed();
    assert!(
        to_grant <= bound,
        "granted {to_grant:?} after the crash, beyond lease + renew-deadline = {bound:?}, with {JOBS} jobs"
    );
    assert!(gb.epoch > ga.epoch);
    let recovered: Vec<usize> = futures::stream::iter(jobs.iter())
        .map(|job| {
            let (b, fence) = (&b, &gb.fence);
            async move {
                let store = b.completed_checkpoint_store(job).await.unwrap();
                let r = store.recover(fence).await.unwrap();
                assert_eq!(r.checkpoints, vec![checkpoint(job, 1)], "job {job}");
                r.checkpoints.len()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(recovered.iter().sum::<usize>(), JOBS);
    c.emulator().faults().set_latency(Duration::ZERO);
    b.close().await.ok();
}

/// A deposed leader's create of a per-job ConfigMap that reaches the API server only
/// after a newer term was granted is refused: the new term knows the job may exist and
/// claims its ConfigMap first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_create_of_deposed_leader_is_refused() {
    late_create_of_deposed_leader_is_refused_with(LockKind::ConfigMap).await;
}

/// The same with the Lease lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_create_of_deposed_leader_is_refused_with_lease_lock() {
    late_create_of_deposed_leader_is_refused_with(LockKind::Lease).await;
}

async fn late_create_of_deposed_leader_is_refused_with(lock: LockKind) {
    let c = Cluster::with_lock(lock);
    let a = c.process().await;
    let (sa, mut ea) = contend(&a).await;
    let ga = granted(&mut ea).await;
    let b = c.process().await;
    let (_sb, mut eb) = contend(&b).await;
    let job = JobId::random();
    let t = c.harness.timings;
    // Held past the lease: it lands after b is granted.
    let delay = t.lease_duration + t.renew_deadline + Duration::from_secs(1);
    let faults = c.emulator().faults();
    faults.delay_next_create(job.as_str(), delay);
    let counter = a.checkpoint_id_counter(&job).await.unwrap();
    let fence = ga.fence.clone();
    let late = tokio::spawn(async move { counter.get_and_increment(&fence).await });
    wait_until("a's create to reach the server", Duration::from_secs(5), || {
        faults.delayed_requests() == 1
    })
    .await;
    let held = Instant::now();
    drop((sa, ea));
    drop(a); // crash while the create is in flight
    let gb = granted(&mut eb).await;
    assert!(gb.epoch > ga.epoch);
    assert!(held.elapsed() < delay, "b was granted before the held create landed");
    let outcome = late.await.unwrap();
    assert!(outcome.is_err(), "a's create was acknowledged: {outcome:?}");
    tokio::time::sleep((held + delay + Duration::from_millis(500)).saturating_duration_since(Instant::now())).await;
    let job_cm = format!("{}-{job}-config-map", c.cluster_id);
    if let Some(cm) = c.config_map(&job_cm).await {
        let data = cm.data.unwrap_or_default();
        assert!(
            !data.contains_key("counter"),
            "the deposed leader's late create landed after b was granted (epoch {}): {data:?}",
            gb.epoch.0
        );
    }
    let counter = b.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter.get().await.unwrap(), 1, "b sees a's counter write");
    assert_eq!(counter.get_and_increment(&gb.fence).await.unwrap(), 1);
    b.close().await.ok();
}

/// 3,000 jobs are submitted, finished and cleaned (more than fill 1 MiB with job
/// results in the cluster ConfigMap): no write fails, the cluster ConfigMap stays
/// below 64 KiB, and no per-job ConfigMap of a finished job is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_do_not_fill_the_cluster_config_map() {
    const JOBS: usize = 3000;
    let c = Cluster::new();
    let a = c.process().await;
    let (_sa, mut ea) = contend(&a).await;
    let ga = granted(&mut ea).await;
    let graphs = a.job_graph_store().await.unwrap();
    let results = a.job_result_store().await.unwrap();
    let jobs: Vec<JobId> = (0..JOBS).map(|_| JobId::random()).collect();
    futures::stream::iter(jobs.iter().enumerate())
        .map(|(i, job)| {
            let (a, fence, graphs, results) = (&a, &ga.fence, &graphs, &results);
            async move {
                let graph = JobGraph {
                    job_id: job.clone(),
                    data: Bytes::from_static(b"graph"),
                };
                graphs
                    .put_job_graph(fence, &graph)
                    .await
                    .unwrap_or_else(|e| fail(i, "put_job_graph", e));
                let id = a
                    .checkpoint_id_counter(job)
                    .await
                    .unwrap()
                    .get_and_increment(fence)
                    .await
                    .unwrap_or_else(|e| fail(i, "get_and_increment", e));
                a.completed_checkpoint_store(job)
                    .await
                    .unwrap()
                    .add_checkpoint(fence, checkpoint(job, id))
                    .await
                    .unwrap_or_else(|e| fail(i, "add_checkpoint", e));
                let result = JobResult {
                    job_id: job.clone(),
                    status: JobStatus::Finished,
                    data: Bytes::from_static(b"result"),
                };
                results
                    .create_dirty(fence, &result)
                    .await
                    .unwrap_or_else(|e| fail(i, "create_dirty", e));
                let cleanup = a
                    .cleanup_job(fence, job, JobStatus::Finished)
                    .await
                    .unwrap_or_else(|e| fail(i, "cleanup_job", e));
                assert!(cleanup.is_complete(), "job #{i}: {cleanup:?}");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let cluster = c.config_map(&c.cluster_cm()).await.expect("cluster ConfigMap");
    let size = serde_json::to_vec(&cluster).unwrap().len();
    assert!(
        size < 64 * 1024,
        "cluster ConfigMap is {size} bytes after {JOBS} finished jobs"
    );
    for job in jobs.iter().step_by(97) {
        // `job-result-store.delete-on-commit` (the default): a clean result is removed.
        assert_eq!(results.state(job).await.unwrap(), None, "job {job}");
        let job_cm = format!("{}-{job}-config-map", c.cluster_id);
        assert!(c.config_map(&job_cm).await.is_none(), "{job_cm} left after cleanup");
        let result_cm = format!("{}-{job}-job-result", c.cluster_id);
        assert!(
            c.config_map(&result_cm).await.is_none(),
            "{result_cm} left after cleanup"
        );
    }
    a.close().await.ok();
}

/// Epochs never go back: after the lock record was corrupted, and after the cluster
/// ConfigMap was deleted, the next term's epoch is above the epoch stored in a job's
/// ConfigMap, and the new leader writes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_never_goes_back_after_the_lock_record_is_lost() {
    let c = Cluster::new();
    let a = c.process().await;
    let job = JobId::random();
    let mut job_epoch = 0;
    for round in 0..3 {
        let (s, mut e) = contend(&a).await;
        let g = granted(&mut e).await;
        if round == 2 {
            a.checkpoint_id_counter(&job)
                .await
                .unwrap()
                .get_and_increment(&g.fence)
                .await
                .unwrap();
            job_epoch = g.epoch.0;
        }
        s.close().await.unwrap();
    }
    assert!(job_epoch >= 3, "three terms: {job_epoch}");
    let cms = c.harness.config_maps().await;
    let corrupt =
        serde_json::json!({"metadata": {"annotations": {"control-plane.alpha.kubernetes.io/leader": "not a record"}}});
    cms.patch(
        &c.cluster_cm(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&corrupt),
    )
    .await
    .unwrap();
    let b = c.process().await;
    let (sb, mut eb) = contend(&b).await;
    let gb = granted(&mut eb).await;
    assert!(
        gb.epoch.0 > job_epoch,
        "after a corrupt lock record the epoch went back to {} (job {job} holds epoch {job_epoch})",
        gb.epoch.0
    );
    let counter = b.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter.get_and_increment(&gb.fence).await.unwrap(), 2);
    sb.close().await.unwrap();
    cms.delete(&c.cluster_cm(), &Default::default()).await.unwrap();
    let (_sc, mut ec) = contend(&b).await;
    let gc = granted(&mut ec).await;
    assert!(
        gc.epoch.0 > gb.epoch.0,
        "after the cluster ConfigMap was deleted the epoch went back to {} (job {job} holds epoch {})",
        gc.epoch.0,
        gb.epoch.0
    );
    assert_eq!(counter.get_and_increment(&gc.fence).await.unwrap(), 3);
    a.close().await.ok();
    b.close().await.ok();
}

/// With the Lease lock, epochs never go back either: after the Lease's count was
/// reset (a Lease re-created by hand), after the Lease was deleted, and after the
/// Lease and the cluster ConfigMap were deleted, the next term's epoch is above every
/// stamp (the cluster ConfigMap's, the job's), and the new leader writes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_never_goes_back_after_the_lease_is_lost() {
    let c = Cluster::with_lock(LockKind::Lease);
    let a = c.process().await;
    let job = JobId::random();
    let mut last = 0;
    for round in 0..3 {
        let (s, mut e) = contend(&a).await;
        let g = granted(&mut e).await;
        if round == 2 {
            a.checkpoint_id_counter(&job)
                .await
                .unwrap()
                .get_and_increment(&g.fence)
                .await
                .unwrap();
        }
        last = g.epoch.0;
        s.close().await.unwrap();
    }
    assert!(last >= 3, "three terms: {last}");
    let leases: kube::Api<Lease> = kube::Api::namespaced(c.harness.client().await, c.harness.namespace());
    let lease = format!("{}-leader", c.cluster_id);
    let reset = serde_json::json!({"spec": {"leaseTransitions": 0, "holderIdentity": ""}});
    leases
        .patch(
            &lease,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&reset),
        )
        .await
        .unwrap();
    let b = c.process().await;
    let counter = b.checkpoint_id_counter(&job).await.unwrap();
    let losses = [
        "a reset Lease count",
        "a deleted Lease",
        "a deleted Lease and cluster ConfigMap",
    ];
    for (expected, lost) in (2..).zip(losses) {
        match lost {
            "a deleted Lease" => {
                leases.delete(&lease, &Default::default()).await.unwrap();
            }
            "a deleted Lease and cluster ConfigMap" => {
                leases.delete(&lease, &Default::default()).await.unwrap();
                let cms = c.harness.config_maps().await;
                cms.delete(&c.cluster_cm(), &Default::default()).await.unwrap();
            }
            _ => {}
        }
        let (s, mut e) = contend(&b).await;
        let g = granted(&mut e).await;
        assert!(
            g.epoch.0 > last,
            "after {lost} the epoch went back to {} (the last term had {last})",
            g.epoch.0
        );
        assert_eq!(
            counter.get_and_increment(&g.fence).await.unwrap(),
            expected,
            "after {lost}"
        );
        last = g.epoch.0;
        s.close().await.unwrap();
    }
    a.close().await.ok();
    b.close().await.ok();
}

/// A lock taken while a removal is under way always wins: the removal, whose read of
/// the entry the emulator holds until the new owner (whose session did not exist when
/// the removal started) has locked it, leaves the entry and its lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lock_wins_over_removal() {
    let c = Cluster::new();
    let a = c.process().await;
    let (_sa, mut ea) = contend(&a).await;
    let ga = granted(&mut ea).await;
    let job = JobId::random();
    let name = "checkpointID-0000000000000000001";
    let ns = StoreNamespace::Checkpoints(job.clone());
    let store_a = a.backend().state_handle_store(&ns).await.unwrap();
    store_a
        .add_and_lock(&ga.fence, name, Bytes::from_static(b"v"))
        .await
        .unwrap();
    store_a.release(name).await.unwrap();
    let n = c.process().await;
    let store_n = n.backend().state_handle_store(&ns).await.unwrap();
    let job_cm = format!("{}-{job}-config-map", c.cluster_id);
    let faults = c.emulator().faults();
    faults.delay_next("GET", &job_cm, Duration::from_millis(400));
    let fence = ga.fence.clone();
    let remover = tokio::spawn(async move { store_a.release_and_try_remove(&fence, name).await });
    wait_until("the removal's read to be held", Duration::from_secs(5), || {
        faults.delayed_requests() == 1
    })
    .await;
    store_n.get_and_lock(name).await.unwrap();
    let removed = remover.await.unwrap().unwrap();
    assert!(!removed, "the removal stripped a concurrent lock and removed the entry");
    assert_eq!(
        store_n.lock_owners(name).await.unwrap(),
        vec![n.backend().instance_id().to_string()]
    );
    n.close().await.ok();
    a.close().await.ok();
}
