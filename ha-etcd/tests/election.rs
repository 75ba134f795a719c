//! The election on a real etcd beyond the conformance suite: a waiting candidacy is
//! granted exactly when every key ahead of it is gone (it follows the group's
//! deletions instead of re-reading after each), one that loses its key re-joins at the
//! back, and a closing leader deletes its records and its candidacy together.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cluster, contend, granted_within, process, shared_server, PREFIX};
use etcd_client::{Client, GetOptions, SortOrder, SortTarget};
use ha_core::{ClusterId, ComponentId, DEFAULT_ELECTION_GROUP};

const GRANT: Duration = Duration::from_secs(5);
/// How long a contender that must not be granted is watched.
const QUIET: Duration = Duration::from_millis(500);

/// The candidacy keys of the default group, oldest first.
async fn candidacies(client: &mut Client, c: &ClusterId) -> Vec<String> {
    let dir = format!("{PREFIX}/{c}/leader/latch/{DEFAULT_ELECTION_GROUP}/");
    let opts = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    let resp = client.get(dir, Some(opts)).await.unwrap();
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

/// Leader records (`P/C/leader/<component>`) left in the cluster.
async fn records(client: &mut Client, c: &ClusterId) -> Vec<String> {
    let dir = format!("{PREFIX}/{c}/leader/");
    let resp = client
        .get(dir.clone(), Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .filter(|k| !k[dir.len()..].contains('/'))
        .collect()
}

/// a leads, b and c wait. b leaving (c's only predecessor) does not grant c while a
/// leads; a leaving then grants c, with a higher epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_candidacy_is_granted_only_when_every_key_ahead_is_gone() {
    let eps = shared_server().endpoints();
    let c = cluster("ahead");
    let a = process(eps.clone(), &c).await;
    let b = process(eps.clone(), &c).await;
    let d = process(eps.clone(), &c).await;
    let (sa, mut ea) = contend(&a.ha, "dispatcher").await;
    let ga = granted_within(&mut ea, GRANT).await;
    let (sb, _eb) = contend(&b.ha, "dispatcher").await;
    let (_sd, mut ed) = contend(&d.ha, "dispatcher").await;

    sb.close().await.unwrap();
    assert!(
        tokio::time::timeout(QUIET, ed.granted()).await.is_err(),
        "granted while the leader's key was still ahead"
    );
    assert!(ea.has_leadership(&ga));

    sa.close().await.unwrap();
    let gd = granted_within(&mut ed, GRANT).await;
    assert!(gd.epoch > ga.epoch);
    a.ha.close().await.unwrap();
    b.ha.close().await.unwrap();
    d.ha.close().await.unwrap();
}

/// A waiting candidacy whose key is deleted from outside joins again (a new key
/// behind the leader's) and is granted when the leader goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_candidacy_whose_key_is_deleted_joins_again_at_the_back() {
    let eps = shared_server().endpoints();
    let c = cluster("rejoin");
    let mut client = Client::connect(eps.clone(), None).await.unwrap();
    let a = process(eps.clone(), &c).await;
    let b = process(eps.clone(), &c).await;
    let (sa, mut ea) = contend(&a.ha, "dispatcher").await;
    granted_within(&mut ea, GRANT).await;
    let (_sb, mut eb) = contend(&b.ha, "dispatcher").await;
    let keys = candidacies(&mut client, &c).await;
    assert_eq!(keys.len(), 2, "{keys:?}");

    client.delete(keys[1].clone(), None).await.unwrap();
    let deadline = tokio::time::Instant::now() + GRANT;
    loop {
        let now = candidacies(&mut client, &c).await;
        if now.len() == 2 && now[1] == keys[1] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "b never joined again: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(eb.current().is_none());
    sa.close().await.unwrap();
    granted_within(&mut eb, GRANT).await;
    a.ha.close().await.unwrap();
    b.ha.close().await.unwrap();
}

/// Closing a leader deletes the records of its confirmed components (also more than
/// fit into one transaction) and its candidacy; the next contender is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_leader_deletes_its_records_and_candidacy() {
    let eps = shared_server().endpoints();
    let c = cluster("close-records");
    let mut client = Client::connect(eps.clone(), None).await.unwrap();
    let a = process(eps.clone(), &c).await;
    let b = process(eps.clone(), &c).await;
    let sa = a.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut elections = Vec::new();
    for i in 0..130 {
        elections.push(
            sa.register(ComponentId::new(format!("component-{i}")).unwrap())
                .unwrap(),
        );
    }
    let grant = granted_within(&mut elections[0], GRANT).await;
    for e in &elections {
        e.confirm(&grant, "http://a").await.unwrap();
    }
    assert_eq!(records(&mut client, &c).await.len(), 130);
    let (_sb, mut eb) = contend(&b.ha, "dispatcher").await;

    sa.close().await.unwrap();
    assert_eq!(records(&mut client, &c).await, Vec::<String>::new());
    let gb = granted_within(&mut eb, GRANT).await;
    assert_eq!(
        candidacies(&mut client, &c).await.len(),
        1,
        "only b's candidacy is left"
    );
    eb.confirm(&gb, "http://b").await.unwrap();
    assert_eq!(
        records(&mut client, &c).await,
        vec![format!("{PREFIX}/{c}/leader/dispatcher")]
    );
    a.ha.close().await.unwrap();
    b.ha.close().await.unwrap();
}
