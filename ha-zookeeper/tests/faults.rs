//! Backend-specific fault tests, each on its own ZooKeeper server or ensemble (they
//! pause, partition or kill servers, which must not disturb other tests).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, ComponentId, Error, HaServices, JobGraph, JobId, DEFAULT_ELECTION_GROUP};
use ha_testkit::{FaultProxy, ZooKeeperServer};
use ha_zookeeper::{ConnectionState, ZooKeeperBackend, ZooKeeperConfig};
use tokio::time::Instant;

struct Cluster {
    id: ClusterId,
    _dir: tempfile::TempDir,
    url: String,
}

impl Cluster {
    fn new(prefix: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("file://{}", dir.path().display());
        Self {
            id: ClusterId::random(prefix),
            _dir: dir,
            url,
        }
    }

    async fn process(&self, config: ZooKeeperConfig) -> (ZooKeeperBackend, HaServices) {
        let backend = ZooKeeperBackend::connect(&self.id.clone(), &config)
            .await
            .expect("connect backend");
        let storage = StateStorage::open(&self.url, &self.id, &Default::default()).expect("storage");
        let services = HaServices::new(Arc::new(backend.clone()), storage, 1);
        (backend, services)
    }
}

fn graph(job: &JobId, n: u64) -> JobGraph {
    JobGraph {
        job_id: job.clone(),
        data: Bytes::from(format!("graph-{n}")),
    }
}

async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader's session expires (its client is cut off by a proxy): it is told it lost
/// leadership before the other contender is granted, the other contender is granted
/// within session timeout + 1 s, and once the old leader is back (on a new session)
/// its next write with the old fence is rejected as `NotLeader`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_hands_over_and_fences_the_expired_leader() {
    common::init_tracing();
    let zk = ZooKeeperServer::start().expect("start ZooKeeper");
    let server = zk.client_addr(0).expect("member 0");
    let proxy = FaultProxy::start(server).await.expect("proxy");
    let session = Duration::from_secs(2);
    let cluster = Cluster::new("expiry");
    let (a_backend, a) = cluster
        .process(common::config(&proxy.addr().to_string(), session))
        .await;
    let (_b_backend, b) = cluster.process(common::config(&zk.connect_string(), session)).await;
    assert_eq!(a_backend.negotiated_session_timeout().await, Some(session));
    let a_session = a_backend.session_id().await;

    let sa = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut ea = sa.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let ga = ea.granted().await.unwrap();
    ea.confirm(&ga, "addr-a").await.unwrap();
    let job = JobId::random();
    let a_graphs = a.job_graph_store().await.unwrap();
    a_graphs.put_job_graph(&ga.fence, &graph(&job, 1)).await.unwrap();

    let sb = b.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut eb = sb.register(ComponentId::new("dispatcher").unwrap()).unwrap();

    let cut = Instant::now();
    proxy.partition();
    let a_revoked = tokio::spawn(async move {
        ea.revoked(&ga).await.unwrap();
        (Instant::now(), ea, ga)
    });
    let gb = tokio::time::timeout(session + Duration::from_secs(1), eb.granted())
        .await
        .expect("the other contender is granted within session timeout + 1 s")
        .unwrap();
    let granted_at = Instant::now();
    let (revoked_at, _ea, ga) = tokio::time::timeout(Duration::from_secs(5), a_revoked)
        .await
        .expect("the expired leader is revoked")
        .unwrap();
    assert!(
        revoked_at <= granted_at,
        "the expired leader must be told before anyone else is granted (revoked {:?} after the cut, other granted {:?} after)",
        revoked_at - cut,
        granted_at - cut
    );
    assert!(gb.epoch > ga.epoch);
    tracing::info!(revoked = ?(revoked_at - cut), granted = ?(granted_at - cut), "expiry hand-over");

    // Back online: the old session is gone; the backend opens a new one.
    proxy.heal();
    wait_until(Duration::from_secs(15), "expired leader on a new session", || async {
        let id = a_backend.session_id().await;
        id.is_some() && id != a_session && a_backend.connection_state().await == ConnectionState::Connected
    })
    .await;
    match a_graphs.put_job_graph(&ga.fence, &graph(&job, 2)).await {
        Err(Error::NotLeader { .. }) => {}
        other => panic!("expired leader's write: expected NotLeader, got {other:?}"),
    }
    let b_graphs = b.job_graph_store().await.unwrap();
    assert_eq!(b_graphs.recover_job_graph(&job).await.unwrap(), Some(graph(&job, 1)));
    b_graphs.put_job_graph(&gb.fence, &graph(&job, 3)).await.unwrap();
    sb.close().await.unwrap();
    sa.close().await.unwrap();
    b.close().await.unwrap();
    a.close().await.unwrap();
}

/// With `tolerate-suspended-connections`, the server freezes (SIGSTOP) for longer than
/// the connection timeout but well within the term's validity: the leader's connection
/// is suspended, then reconnects to the same session, and the leader keeps its term
/// throughout — no revoke, no new grant — and can write with its fence afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_then_reconnected_leader_keeps_leadership() {
    common::init_tracing();
    let zk = ZooKeeperServer::start().expect("start ZooKeeper");
    let mut config = common::config(&zk.connect_string(), Duration::from_secs(8));
    config.connection_timeout = Duration::from_secs(1);
    config.tolerate_suspended_connections = true;
    let cluster = Cluster::new("suspend");
    let (a_backend, a) = cluster.process(config.clone()).await;
    let (_b_backend, b) = cluster.process(config).await;
    let sa = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut ea = sa.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let ga = ea.granted().await.unwrap();
    let sb = b.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let eb = sb.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let session_before = a_backend.session_id().await;

    let suspended_seen = Arc::new(AtomicBool::new(false));
    let probe = {
        let (backend, seen) = (a_backend.clone(), suspended_seen.clone());
        tokio::spawn(async move {
            loop {
                if backend.connection_state().await == ConnectionState::Suspended {
                    seen.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // A validity lasts at least 0.3 × session (2.4 s) past the last renewal.
    zk.pause(0).unwrap();
    let no_change = tokio::time::timeout(Duration::from_millis(1800), ea.changed()).await;
    zk.resume(0).unwrap();
    assert!(no_change.is_err(), "the grant changed while suspended: {no_change:?}");
    wait_until(Duration::from_secs(10), "reconnected", || async {
        a_backend.connection_state().await == ConnectionState::Connected
    })
    .await;
    // Still nothing happens after the reconnect.
    let no_change = tokio::time::timeout(Duration::from_millis(500), ea.changed()).await;
    assert!(
        no_change.is_err(),
        "the grant changed after reconnecting: {no_change:?}"
    );
    probe.abort();
    assert!(
        suspended_seen.load(Ordering::SeqCst),
        "the connection was never seen suspended"
    );
    assert_eq!(
        a_backend.session_id().await,
        session_before,
        "same session after reconnect"
    );
    assert!(ea.has_leadership(&ga));
    assert!(eb.current().is_none(), "the other contender was granted");
    let job = JobId::random();
    a.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(&ga.fence, &graph(&job, 1))
        .await
        .expect("the leader writes with its fence after reconnecting");
    sb.close().await.unwrap();
    sa.close().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A 3-member ensemble loses a follower, then its leader, while the HA leader keeps
/// taking checkpoint ids: every id handed out is unique and increasing, writes resume
/// after each failure, and the HA leader keeps its term (the ensemble recovers well
/// within what the session allows, and suspended connections are tolerated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_members_killed_while_leader_keeps_writing() {
    common::init_tracing();
    let zk = Arc::new(ZooKeeperServer::start_ensemble(3).expect("start ensemble"));
    let mut config = common::config(&zk.connect_string(), Duration::from_secs(15));
    config.connection_timeout = Duration::from_secs(2);
    config.tolerate_suspended_connections = true;
    let cluster = Cluster::new("ensemble");
    let (_a_backend, a) = cluster.process(config.clone()).await;
    let (_b_backend, b) = cluster.process(config).await;
    let sa = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut ea = sa.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let ga = ea.granted().await.unwrap();
    let sb = b.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let eb = sb.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let job = JobId::random();
    let counter = a.checkpoint_id_counter(&job).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, fence, counter) = (stop.clone(), ga.fence.clone(), counter.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut failures = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && ids.len() < 100_000 {
                match counter.get_and_increment(&fence).await {
                    Ok(id) => ids.push(id),
                    Err(e) => {
                        assert!(!e.is_not_leader(), "the HA leader was fenced off: {e}");
                        failures.push(e.to_string());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (ids, failures)
        })
    };
    let progress = |counter: ha_core::CheckpointIdCounter| async move { counter.get().await.unwrap_or(0) };
    let before = progress(counter.clone()).await;
    wait_until(Duration::from_secs(20), "writes before faults", || {
        let c = counter.clone();
        async move { c.get().await.unwrap_or(0) > before + 20 }
    })
    .await;

    let leader = zk.leader().expect("ensemble leader");
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    {
        let zk = zk.clone();
        tokio::task::spawn_blocking(move || zk.kill(follower))
            .await
            .unwrap()
            .unwrap();
    }
    let mark = progress(counter.clone()).await;
    wait_until(Duration::from_secs(30), "writes after a follower died", || {
        let c = counter.clone();
        async move { c.get().await.unwrap_or(0) > mark + 20 }
    })
    .await;
    {
        let zk = zk.clone();
        tokio::task::spawn_blocking(move || zk.restart(follower))
            .await
            .unwrap()
            .unwrap();
    }
    let zk_leader = zk.leader().expect("ensemble leader");
    {
        let zk = zk.clone();
        tokio::task::spawn_blocking(move || zk.kill(zk_leader))
            .await
            .unwrap()
            .unwrap();
    }
    let killed_at = Instant::now();
    let mark = progress(counter.clone()).await;
    wait_until(
        Duration::from_secs(45),
        "writes after the ZooKeeper leader died",
        || {
            let c = counter.clone();
            async move { c.get().await.unwrap_or(0) > mark + 20 }
        },
    )
    .await;
    tracing::info!(recovered_after = ?killed_at.elapsed(), "writes resumed after ZooKeeper leader kill");
    stop.store(true, Ordering::SeqCst);
    let (ids, failures) = writer.await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids not strictly increasing");
    assert!(ids.len() > 60, "too few writes: {}", ids.len());
    tracing::info!(writes = ids.len(), failures = failures.len(), "ensemble fault run");
    assert!(ea.has_leadership(&ga), "the HA leader lost its term");
    assert!(eb.current().is_none(), "the other contender was granted");
    sb.close().await.unwrap();
    sa.close().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A fenced write whose reply is lost (the server freezes after receiving it and the
/// client gives up on the connection) is reported as `OutcomeUnknown`, never as a
/// plain failure; retrying the same checkpoint is then idempotent (suspended
/// connections tolerated, so the term outlives the short freeze).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_write_reply_is_outcome_unknown_and_retry_is_idempotent() {
    common::init_tracing();
    let zk = Arc::new(ZooKeeperServer::start().expect("start ZooKeeper"));
    let mut config = common::config(&zk.connect_string(), Duration::from_secs(10));
    config.connection_timeout = Duration::from_secs(1);
    config.tolerate_suspended_connections = true;
    let cluster = Cluster::new("lostreply");
    let (_backend, a) = cluster.process(config).await;
    let sa = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut ea = sa.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let ga = ea.granted().await.unwrap();
    let job = JobId::random();
    let store = a.completed_checkpoint_store(&job).await.unwrap();
    let cp = |id: u64| ha_core::CompletedCheckpoint {
        job_id: job.clone(),
        checkpoint_id: id,
        data: Bytes::from(format!("checkpoint-{id}")),
    };
    store.add_checkpoint(&ga.fence, cp(1)).await.unwrap();

    zk.pause(0).unwrap();
    let attempt = {
        let (store, fence, cp2) = (store.clone(), ga.fence.clone(), cp(2));
        tokio::spawn(async move { store.add_checkpoint(&fence, cp2).await })
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    zk.resume(0).unwrap();
    match attempt.await.unwrap() {
        Err(Error::OutcomeUnknown { .. }) => {}
        other => panic!("a write with a lost reply must be OutcomeUnknown, got {other:?}"),
    }
    assert!(ea.has_leadership(&ga), "a short suspension must not revoke");
    let retried = tokio::time::timeout(Duration::from_secs(15), store.add_checkpoint(&ga.fence, cp(2)))
        .await
        .expect("retry completes");
    retried.expect("retrying the same checkpoint succeeds");
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![2]);
    sa.close().await.unwrap();
    a.close_and_cleanup_all_data().await.unwrap();
}

/// A contender joins while the server is frozen: its latch create is sent, the client
/// loses the connection, the server thaws. However the lost create and its retry are
/// ordered on the server, the contender ends up with exactly one latch node, leads on
/// it (epoch = that node's czxid), and leaves nothing behind when it resigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_with_lost_create_reply_leaves_one_latch_node() {
    common::init_tracing();
    let zk = ZooKeeperServer::start().expect("start ZooKeeper");
    let mut config = common::config(&zk.connect_string(), Duration::from_secs(10));
    config.connection_timeout = Duration::from_secs(1);
    let cluster = Cluster::new("lostcreate");
    let (backend, a) = cluster.process(config).await;
    let latch_dir = format!("{}/leader/latch/{DEFAULT_ELECTION_GROUP}", backend.cluster_path());
    // The latch directory exists already, so the create is the request that is lost.
    let admin = zookeeper_client::Client::connect(&zk.connect_string()).await.unwrap();
    admin
        .mkdir(
            &latch_dir,
            &zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all()),
        )
        .await
        .unwrap();

    zk.pause(0).unwrap();
    let join = {
        let a = a.clone();
        tokio::spawn(async move { a.leader_election_service(DEFAULT_ELECTION_GROUP).await })
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    zk.resume(0).unwrap();
    let sa = join.await.unwrap().expect("joins after reconnecting");
    let mut ea = sa.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let ga = tokio::time::timeout(Duration::from_secs(15), ea.granted())
        .await
        .expect("granted")
        .unwrap();
    // Give a late landing of the lost create time to show up and be collapsed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_until(Duration::from_secs(5), "exactly one latch node", || {
        let (admin, dir) = (admin.clone(), latch_dir.clone());
        async move { admin.list_children(&dir).await.unwrap().len() == 1 }
    })
    .await;
    let nodes = admin.list_children(&latch_dir).await.unwrap();
    let path = format!("{latch_dir}/{}", nodes[0]);
    assert_eq!(ga.fence.token, path, "leads on its single node");
    let stat = admin.check_stat(&path).await.unwrap().unwrap();
    assert_eq!(ga.epoch.0, stat.czxid as u64);
    assert_eq!(Some(stat.ephemeral_owner), backend.session_id().await);
    sa.close().await.unwrap();
    assert!(admin.list_children(&latch_dir).await.unwrap().is_empty());
    a.close_and_cleanup_all_data().await.unwrap();
}

/// Finding 5 of the correctness review: contender A's client is on follower F, B's on
/// the ZooKeeper leader. F is cut from the other members (quorum and election ports)
/// while A still reaches F: F keeps answering A's pings until `syncLimit·tickTime`,
/// but the quorum expires A's session after the session timeout and grants B. A must
/// stop acting, and be told it lost leadership, no later than B is granted:
/// `Revoked(A) ≤ Granted(B)` and A's last action ≤ `Granted(B)`, by the same clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_cut_from_quorum_revokes_before_new_grant() {
    follower_cut(false).await;
}

/// As [`follower_cut_from_quorum_revokes_before_new_grant`], with
/// `tolerate-suspended-connections`: A keeps leadership through the suspension only up
/// to its validity, counted from the last renewal known to have reached the quorum, so
/// it is still revoked before B is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_cut_with_tolerated_suspension_revokes_before_new_grant() {
    follower_cut(true).await;
}

async fn follower_cut(tolerate_suspended_connections: bool) {
    common::init_tracing();
    let zk = ZooKeeperServer::start_with(ha_testkit::ZooKeeperOptions {
        members: 3,
        tick_time: Duration::from_millis(100),
        // F notices the loss of the leader only after 8 s, well after the session
        // (4 s) can have expired at the quorum.
        sync_limit_ticks: Some(80),
        peer_proxies: true,
        ..Default::default()
    })
    .expect("start ZooKeeper ensemble");
    let leader = zk.leader().expect("an ensemble leader");
    let follower = (0..zk.len()).find(|&i| i != leader).expect("a follower");
    let session = Duration::from_secs(4);
    let cluster = Cluster::new("follower-cut");
    let on = |i: usize| {
        let mut c = common::config(&zk.client_addr(i).unwrap().to_string(), session);
        c.tolerate_suspended_connections = tolerate_suspended_connections;
        c
    };
    let (_a_backend, a) = cluster.process(on(follower)).await;
    let (_b_backend, b) = cluster.process(on(leader)).await;
    let sa = a.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    // A's candidacy renews its term from about now on (every quarter session since
    // the fix; every third before it).
    let joined = Instant::now();
    let mut ea = sa.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let ga = ea.granted().await.unwrap();
    let sb = b.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut eb = sb.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    // The worst moment: right after a renewal went through, so A's client has just
    // heard from the ensemble and will not for a long while.
    tokio::time::sleep_until(joined + session / 2 + Duration::from_millis(40)).await;
    assert!(ea.has_leadership(&ga) && eb.current().is_none());

    // A acts as leader every few ms for as long as it has leadership, and notes when
    // it is told it lost it.
    let cut = Instant::now();
    zk.isolate(follower).unwrap();
    let a_side = tokio::spawn(async move {
        let mut last_action = Instant::now();
        loop {
            if ea.has_leadership(&ga) {
                last_action = Instant::now();
            }
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(2), ea.revoked(&ga)).await {
                r.unwrap();
                return (last_action, Instant::now(), ea, ga);
            }
        }
    });
    let gb = tokio::time::timeout(Duration::from_secs(20), eb.granted())
        .await
        .expect("B is granted once the quorum expired A's session")
        .unwrap();
    let granted_at = Instant::now();
    let (last_action, revoked_at, _ea, ga) = tokio::time::timeout(Duration::from_secs(20), a_side)
        .await
        .expect("A is revoked")
        .unwrap();
    zk.heal_peers();
    let ms = |t: Instant| t.saturating_duration_since(cut).as_millis();
    let overlap = revoked_at
        .saturating_duration_since(granted_at)
        .max(last_action.saturating_duration_since(granted_at));
    println!(
        "follower cut (tolerate suspended: {tolerate_suspended_connections}): A last acted at {} ms, revoked at {} ms, B granted at {} ms after the cut; overlap {} ms",
        ms(last_action),
        ms(revoked_at),
        ms(granted_at),
        overlap.as_millis()
    );
    assert!(gb.epoch > ga.epoch);
    assert!(
        last_action <= granted_at,
        "A acted {} ms after B was granted (A last acted at {} ms, B granted at {} ms after the cut)",
        last_action.saturating_duration_since(granted_at).as_millis(),
        ms(last_action),
        ms(granted_at)
    );
    assert!(
        revoked_at <= granted_at,
        "A was revoked {} ms after B was granted (revoked at {} ms, B granted at {} ms after the cut)",
        revoked_at.saturating_duration_since(granted_at).as_millis(),
        ms(revoked_at),
        ms(granted_at)
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = sb.close().await;
        let _ = b.close().await;
    })
    .await;
    drop((sa, a));
}

/// A leader's client touches its session (renewals and keep-alive pings) no more often
/// than it needs: every packet pushes the server's expiry of a crashed leader later.
/// The Java client pings after a third of the session timeout of silence; the leader
/// renews every quarter. With a 2 s session, the largest silence between two sends of
/// an idle leader must be at least 0.22 × the session timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_leader_does_not_touch_its_session_more_often_than_needed() {
    common::init_tracing();
    let zk = ZooKeeperServer::start().expect("start ZooKeeper");
    let proxy = FaultProxy::start(zk.client_addr(0).expect("member 0"))
        .await
        .expect("proxy");
    let session = Duration::from_secs(2);
    let cluster = Cluster::new("keepalive");
    let (backend, services) = cluster
        .process(common::config(&proxy.addr().to_string(), session))
        .await;
    assert_eq!(backend.negotiated_session_timeout().await, Some(session));
    let svc = services.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut election = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let grant = election.granted().await.unwrap();
    election.confirm(&grant, "addr").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let to = std::time::Instant::now();
    let sends: Vec<_> = proxy
        .client_sends()
        .into_iter()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    assert!(
        sends.len() >= 4,
        "an idle leader still renews: {} sends in 4 s",
        sends.len()
    );
    let largest = sends.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    tracing::info!(?largest, sends = sends.len(), "an idle leader's sends in 4 s");
    assert!(
        largest >= session.mul_f64(0.22),
        "the largest silence between an idle leader's sends was {largest:?} over {} sends in 4 s, \
         under 0.22 × the {session:?} session timeout: a crashed leader's session outlives it longer than needed",
        sends.len()
    );
    assert!(election.current().is_some(), "still leading");
    svc.close().await.unwrap();
    services.close().await.unwrap();
}
