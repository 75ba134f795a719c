//! The ZooKeeper harness itself: start, readiness, pause/resume, kill/restart, and an
//! ensemble surviving the loss of its leader.

use std::time::Duration;

use ha_testkit::{four_letter_word, ZooKeeperServer};

#[test]
fn standalone_server_pause_resume_kill_restart() {
    let zk = ZooKeeperServer::start().expect("start ZooKeeper");
    assert_eq!(zk.mode(0).as_deref(), Some("standalone"));
    assert_eq!(zk.leader(), Some(0));
    let port = zk.client_addr(0).unwrap().port();
    zk.pause(0).unwrap();
    assert!(zk.is_running(0), "a paused server is still running");
    assert!(
        four_letter_word(port, "srvr").is_err(),
        "a paused server does not answer"
    );
    zk.resume(0).unwrap();
    zk.wait_ready(0, Duration::from_secs(10)).unwrap();
    zk.kill(0).unwrap();
    assert!(!zk.is_running(0));
    assert_eq!(zk.mode(0), None);
    zk.restart(0).unwrap();
    assert_eq!(zk.mode(0).as_deref(), Some("standalone"));
}

#[test]
fn ensemble_elects_a_new_leader_after_leader_kill() {
    let zk = ZooKeeperServer::start_ensemble(3).expect("start ensemble");
    assert_eq!(zk.connect_string().split(',').count(), 3);
    let leader = zk.leader().expect("ensemble has a leader");
    zk.kill(leader).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        if let Some(l) = zk.leader() {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "no new leader elected");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(new_leader, leader);
    zk.restart(leader).unwrap();
    assert_eq!(zk.mode(leader).as_deref(), Some("follower"));
}
