//! The etcd server restarts while a leader holds office: leadership either survives
//! on the same lease or is revoked before anyone else is granted — never two leaders.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{cluster, contend, granted_within, init_tracing, process, TTL};
use ha_core::{Error, JobId, LeaderElection};
use ha_testkit::EtcdServer;

/// What the monitor saw.
struct Seen {
    two_leaders: bool,
    a: LeaderElection,
    b: LeaderElection,
}

/// Polls both contenders every 2 ms until stopped, publishing whether `a` leads.
fn monitor(
    a: LeaderElection,
    b: LeaderElection,
    a_leads: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut two_leaders = false;
        while !stop.load(Ordering::SeqCst) {
            two_leaders |= a.current().is_some() && b.current().is_some();
            a_leads.store(a.current().is_some(), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Seen { two_leaders, a, b }
    })
}

async fn restart_case(outage: Duration) {
    init_tracing();
    let mut server = EtcdServer::start().expect("start etcd");
    let eps = server.endpoints();
    let c = cluster("restart");
    let a = process(eps.clone(), &c).await;
    let b = process(eps.clone(), &c).await;
    let (_sa, mut ea) = contend(&a.ha, "dispatcher").await;
    let ga = granted_within(&mut ea, Duration::from_secs(5)).await;
    let (_sb, eb) = contend(&b.ha, "dispatcher").await;
    let lease = a.etcd.lease_id().unwrap();
    let job = JobId::random();
    let counter_a = a.ha.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter_a.get_and_increment(&ga.fence).await.unwrap(), 1);

    let stop = Arc::new(AtomicBool::new(false));
    let a_leads = Arc::new(AtomicBool::new(true));
    let watcher = monitor(ea, eb, a_leads.clone(), stop.clone());

    server.kill(0);
    tokio::time::sleep(outage).await;
    if outage > TTL {
        assert!(
            !a_leads.load(Ordering::SeqCst),
            "a leader that cannot renew its lease for longer than the TTL must be revoked"
        );
    }
    tokio::task::block_in_place(|| server.restart(0)).expect("restart etcd");
    // Old leases run out at most a TTL after the restart; give the election time to settle.
    tokio::time::sleep(TTL * 3).await;
    stop.store(true, Ordering::SeqCst);
    let Seen {
        two_leaders,
        a: ea,
        b: eb,
    } = watcher.await.unwrap();
    assert!(!two_leaders, "two contenders were granted at the same time");

    match (ea.current(), eb.current()) {
        (Some(g), None) if g == ga => {
            // Survived: the same term on the same lease, and it can still write.
            tracing::info!("leadership survived the restart");
            assert_eq!(a.etcd.lease_id(), Some(lease), "leadership survived on the same lease");
            assert_eq!(counter_a.get_and_increment(&ga.fence).await.unwrap(), 2);
        }
        (Some(new), None) | (None, Some(new)) => {
            tracing::info!("leadership was revoked and granted anew");
            assert!(new.epoch > ga.epoch, "a new term has a higher epoch");
            match counter_a.get_and_increment(&ga.fence).await {
                Err(Error::NotLeader { .. }) => {}
                other => panic!("stale term after restart: expected NotLeader, got {other:?}"),
            }
        }
        (None, None) => panic!("nobody leads {:?} after the restart", TTL * 3),
        (Some(_), Some(_)) => panic!("two leaders after the restart"),
    }
    a.ha.close().await.unwrap();
    b.ha.close().await.unwrap();
}

/// A short outage (well within the TTL): the leader keeps office on its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_restart_keeps_or_revokes_never_two() {
    restart_case(Duration::from_millis(150)).await;
}

/// An outage longer than the TTL: the leader is revoked by its own clock while etcd
/// is down; afterwards exactly one leader emerges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_restart_revokes_before_anyone_else_never_two() {
    restart_case(TTL + Duration::from_millis(500)).await;
}
