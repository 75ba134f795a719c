//! The `KubeApiEmulator`'s own tests, driven by the real `kube` client: the REST
//! semantics the backend relies on, and the fault switches.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use ha_testkit::KubeApiEmulator;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions, WatchParams};
use kube::core::WatchEvent;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde_json::json;

use common::emulator_client;

fn cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    }
}

fn api(e: &KubeApiEmulator) -> Api<ConfigMap> {
    Api::namespaced(emulator_client(e), "ns1")
}

fn status_of<T: std::fmt::Debug>(r: kube::Result<T>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_and_already_exists() {
    let e = KubeApiEmulator::start().unwrap();
    let api = api(&e);
    let created = api
        .create(&PostParams::default(), &cm("a", &[], &[("k", "v")]))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().expect("resourceVersion set");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("ns1"));
    let got = api.get("a").await.unwrap();
    assert_eq!(got.metadata.resource_version, Some(rv));
    assert_eq!(got.data.unwrap()["k"], "v");
    assert_eq!(
        status_of(api.create(&PostParams::default(), &cm("a", &[], &[])).await),
        (409, "AlreadyExists".into())
    );
    assert_eq!(status_of(api.get("missing").await), (404, "NotFound".into()));
    assert!(api.get_opt("missing").await.unwrap().is_none());
    // Namespaces are separate.
    let other: Api<ConfigMap> = Api::namespaced(emulator_client(&e), "ns2");
    assert!(other.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn update_is_guarded_by_resource_version() {
    let e = KubeApiEmulator::start().unwrap();
    let api = api(&e);
    let v1 = api
        .create(&PostParams::default(), &cm("a", &[], &[("k", "1")]))
        .await
        .unwrap();
    let mut next = v1.clone();
    next.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    let v2 = api.replace("a", &PostParams::default(), &next).await.unwrap();
    assert_ne!(v1.metadata.resource_version, v2.metadata.resource_version);
    assert_eq!(v1.metadata.uid, v2.metadata.uid);
    // The same stale version again: conflict, nothing changed.
    next.data = Some(BTreeMap::from([("k".to_string(), "3".to_string())]));
    assert_eq!(
        status_of(api.replace("a", &PostParams::default(), &next).await),
        (409, "Conflict".into())
    );
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "2");
    // No version: unconditional.
    next.metadata.resource_version = None;
    api.replace("a", &PostParams::default(), &next).await.unwrap();
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "3");
    // Replacing an absent object is NotFound.
    let mut absent = cm("zz", &[], &[]);
    absent.metadata.resource_version = Some("1".into());
    assert_eq!(
        status_of(api.replace("zz", &PostParams::default(), &absent).await).0,
        404
    );
}

#[tokio::test]
async fn merge_patch_adds_removes_and_checks_version() {
    let e = KubeApiEmulator::start().unwrap();
    let api = api(&e);
    let v1 = api
        .create(&PostParams::default(), &cm("a", &[], &[("x", "1"), ("y", "2")]))
        .await
        .unwrap();
    let patch = json!({"data": {"x": null, "z": "3"}, "metadata": {"annotations": {"note": "n"}}});
    let patched = api
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let data = patched.data.unwrap();
    assert_eq!(
        (data.get("x"), data["y"].as_str(), data["z"].as_str()),
        (None, "2", "3")
    );
    assert_eq!(patched.metadata.annotations.unwrap()["note"], "n");
    let stale = json!({"metadata": {"resourceVersion": v1.metadata.resource_version}, "data": {"y": "9"}});
    assert_eq!(
        status_of(api.patch("a", &PatchParams::default(), &Patch::Merge(&stale)).await).0,
        409
    );
    assert_eq!(
        status_of(api.patch("nope", &PatchParams::default(), &Patch::Merge(&patch)).await).0,
        404
    );
}

#[tokio::test]
async fn list_and_delete_by_selectors() {
    let e = KubeApiEmulator::start().unwrap();
    let api = api(&e);
    for (name, app) in [("a1", "c1"), ("a2", "c1"), ("b1", "c2")] {
        api.create(&PostParams::default(), &cm(name, &[("app", app), ("type", "ha")], &[]))
            .await
            .unwrap();
    }
    api.create(&PostParams::default(), &cm("plain", &[], &[]))
        .await
        .unwrap();
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items.into_iter().filter_map(|c| c.metadata.name).collect()
    };
    let lp = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(api.list(&lp("app=c1,type=ha")).await.unwrap()), ["a1", "a2"]);
    assert_eq!(names(api.list(&lp("app in (c2)")).await.unwrap()), ["b1"]);
    assert_eq!(names(api.list(&lp("!app")).await.unwrap()), ["plain"]);
    assert_eq!(names(api.list(&lp("app notin (c1)")).await.unwrap()), ["b1", "plain"]);
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=a2"))
                .await
                .unwrap()
        ),
        ["a2"]
    );
    // Delete with a stale precondition conflicts; with the current one it succeeds.
    let dp = |rv: &str| DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(rv.into()),
            uid: None,
        }),
        ..Default::default()
    };
    assert_eq!(status_of(api.delete("plain", &dp("1")).await).0, 409);
    let rv = api.get("plain").await.unwrap().metadata.resource_version.unwrap();
    api.delete("plain", &dp(&rv)).await.unwrap();
    assert_eq!(status_of(api.delete("plain", &DeleteParams::default()).await).0, 404);
    // Delete-collection by label leaves the others.
    api.delete_collection(&DeleteParams::default(), &lp("app=c1"))
        .await
        .unwrap();
    assert_eq!(names(api.list(&ListParams::default()).await.unwrap()), ["b1"]);
}

#[tokio::test]
async fn invalid_names_keys_and_sizes_are_refused() {
    let e = KubeApiEmulator::start().unwrap();
    let api = api(&e);
    for bad in ["Upper", "-lead", "under_score", &"a".repeat(254)] {
        let (code, reason) = status_of(api.create(&PostParams::default(), &cm(bad, &[], &[])).await);
        assert_eq!((code, reason.as_str()), (422, "Invalid"), "name {bad}");
    }
    let (code, _) = status_of(
        api.create(&PostParams::default(), &cm("a", &[], &[("bad/key", "v")]))
            .await,
    );
    assert_eq!(code, 422);
    let big = "x".repeat(1024 * 1024 + 1);
    let (code, reason) = status_of(
        api.create(&PostParams::default(), &cm("big", &[], &[("k", &big)]))
            .await,
    );
    assert_eq!((code, reason.as_str()), (413, "RequestEntityTooLarge"));
    assert!(api.get_opt("big").await.unwrap().is_none());
}

#[tokio::test]
async fn leases_support_the_same_semantics() {
    let e = KubeApiEmulator::start().unwrap();
    let leases: Api<Lease> = Api::namespaced(emulator_client(&e), "ns1");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("lock".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let v1 = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(status_of(leases.create(&PostParams::default(), &lease).await).0, 409);
    let mut next = v1.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases.replace("lock", &PostParams::default(), &next).await.unwrap();
    assert_eq!(
        status_of(leases.replace("lock", &PostParams::default(), &next).await).0,
        409
    );
    let got = leases.get("lock").await.unwrap();
    let got_rv = got.metadata.resource_version.clone().unwrap();
    assert_eq!(got.spec.unwrap().holder_identity.as_deref(), Some("b"));
    assert_eq!(leases.list(&ListParams::default()).await.unwrap().items.len(), 1);

    // Watch from a version, by name: the changes after it, in order.
    let watch = WatchParams::default().fields("metadata.name=lock");
    let mut events = leases.watch(&watch, &got_rv).await.unwrap().boxed();
    // Merge patch; a resourceVersion in it is a precondition.
    let stale = serde_json::json!({"metadata": {"resourceVersion": v1.metadata.resource_version}, "spec": {"holderIdentity": "c"}});
    assert_eq!(
        status_of(
            leases
                .patch("lock", &PatchParams::default(), &Patch::Merge(&stale))
                .await
        )
        .0,
        409
    );
    let renew = serde_json::json!({"metadata": {"resourceVersion": got_rv}, "spec": {"leaseTransitions": 3}});
    let patched = leases
        .patch("lock", &PatchParams::default(), &Patch::Merge(&renew))
        .await
        .unwrap();
    let spec = patched.spec.clone().unwrap();
    assert_eq!(
        (spec.holder_identity.as_deref(), spec.lease_transitions),
        (Some("b"), Some(3))
    );
    let modified = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&modified, WatchEvent::Modified(l) if l.spec.as_ref().and_then(|s| s.lease_transitions) == Some(3)),
        "{modified:?}"
    );
    // Delete with a stale precondition is refused; with the current one it goes.
    let precondition = |rv: Option<String>| DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: rv,
            uid: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        status_of(leases.delete("lock", &precondition(Some(got_rv))).await).0,
        409
    );
    leases
        .delete("lock", &precondition(patched.metadata.resource_version))
        .await
        .unwrap();
    let deleted = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(deleted, WatchEvent::Deleted(_)), "{deleted:?}");
    assert!(leases.get_opt("lock").await.unwrap().is_none());
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> WatchEvent<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("watch event in time")
        .expect("stream open")
        .expect("event ok")
}

fn describe(e: &WatchEvent<ConfigMap>) -> String {
    match e {
        WatchEvent::Added(c) => format!("ADDED {}", c.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Modified(c) => format!("MODIFIED {}", c.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Deleted(c) => format!("DELETED {}", c.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Bookmark(_) => "BOOKMARK".into(),
        WatchEvent::Error(s) => format!("ERROR {}", s.code),
    }
}

#[tokio::test]
async fn watch_replays_from_a_version_and_filters() {
    let e = KubeApiEmulator::start().unwrap();
    let api = api(&e);
    let a = api
        .create(&PostParams::default(), &cm("a", &[("app", "x")], &[]))
        .await
        .unwrap();
    let from = a.metadata.resource_version.unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "v"}})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("other", &[("app", "y")], &[]))
        .await
        .unwrap();
    let wp = WatchParams::default().labels("app=x");
    let mut stream = api.watch(&wp, &from).await.unwrap().boxed();
    assert_eq!(describe(&next_event(&mut stream).await), "MODIFIED a");
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(describe(&next_event(&mut stream).await), "DELETED a");
    api.create(&PostParams::default(), &cm("b", &[("app", "x")], &[]))
        .await
        .unwrap();
    assert_eq!(describe(&next_event(&mut stream).await), "ADDED b");
    // From "0": the current objects first.
    let mut all = api.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    let mut first = vec![
        describe(&next_event(&mut all).await),
        describe(&next_event(&mut all).await),
    ];
    first.sort();
    assert_eq!(first, ["ADDED b", "ADDED other"]);
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_gone() {
    let e = KubeApiEmulator::with_history(3).unwrap();
    let api = api(&e);
    let first = api.create(&PostParams::default(), &cm("a", &[], &[])).await.unwrap();
    for i in 0..5 {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"i": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let mut stream = api
        .watch(
            &WatchParams::default(),
            first.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(s) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {}", describe(&other)),
    }
}

/// Waits until a watch stream is open (the watcher lists before it watches).
async fn wait_for_watch(e: &KubeApiEmulator) {
    for _ in 0..500 {
        if e.watch_count() > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no watch was opened within 5 s");
}

#[tokio::test]
async fn runtime_watcher_recovers_from_dropped_watches_and_gone() {
    let e = KubeApiEmulator::with_history(2).unwrap();
    let api = api(&e);
    api.create(&PostParams::default(), &cm("a", &[], &[("n", "0")]))
        .await
        .unwrap();
    // The watcher runs in its own task (it only watches while polled).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(api.clone(), watcher::Config::default()).default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) = ev {
                let _ = tx.send(c.data.and_then(|d| d.get("n").cloned()).unwrap_or_default());
            }
        }
    });
    let mut wait_for_n = async |n: &str| {
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(seen) = rx.recv().await {
                if seen == n {
                    return;
                }
            }
            panic!("watcher ended");
        })
        .await
        .expect("watcher saw the change in time");
    };
    wait_for_n("0").await;
    // Dropped stream: the watcher re-watches from its last version.
    wait_for_watch(&e).await;
    assert!(e.drop_watches() >= 1);
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"n": "1"}})))
        .await
        .unwrap();
    wait_for_n("1").await;
    // Dropped while the history moves past its version: 410, re-list.
    wait_for_watch(&e).await;
    assert!(e.drop_watches() >= 1);
    for i in 2..=6 {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    wait_for_n("6").await;
    task.abort();
}

#[tokio::test]
async fn faults_errors_lost_replies_unavailable_and_latency() {
    let e = KubeApiEmulator::start().unwrap();
    let api = api(&e);
    api.create(&PostParams::default(), &cm("a", &[], &[])).await.unwrap();
    // Injected errors change nothing and then stop.
    e.faults().fail_next(2, 500);
    let patch = Patch::Merge(json!({"data": {"k": "1"}}));
    assert_eq!(status_of(api.patch("a", &PatchParams::default(), &patch).await).0, 500);
    assert_eq!(status_of(api.get("a").await).0, 500);
    assert!(api.get("a").await.unwrap().data.unwrap_or_default().is_empty());
    // A lost reply: the client sees a transport error, yet the write landed.
    e.faults().lose_next_replies(1);
    match api.patch("a", &PatchParams::default(), &patch).await {
        Err(kube::Error::Api(s)) => panic!("expected a transport error, got status {s:?}"),
        Err(_) => {}
        Ok(_) => panic!("expected the reply to be lost"),
    }
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "1");
    // Unavailable: 503 for everything until switched back.
    e.set_unavailable(true);
    assert_eq!(status_of(api.get("a").await), (503, "ServiceUnavailable".into()));
    e.set_unavailable(false);
    api.get("a").await.unwrap();
    // Latency: a client that waits less than the added latency gets no answer.
    e.faults().set_latency(Duration::from_millis(400));
    let quick = tokio::time::timeout(Duration::from_millis(50), api.get("a")).await;
    assert!(quick.is_err(), "a reply arrived before the injected latency passed");
    api.get("a").await.unwrap();
    e.faults().reset();
}
