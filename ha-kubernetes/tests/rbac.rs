//! RBAC: every request the backend makes during the whole conformance suite is
//! allowed by the Role in `rbac.yaml`, stays in its namespace, and every verb the Role
//! grants is actually used (the Role is minimal). The backend is loaded the real way,
//! from a kubeconfig with a bearer token, so its requests are told apart from the test
//! harness's own (which carry no token) by the emulator's access log. The same token
//! must never appear in TRACE logs or errors.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use common::{KubeHarness, TEST_NAMESPACE};
use ha_core::{ClusterId, ComponentId, HaBackend, HaServices, Result};
use ha_kubernetes::{KubernetesBackend, KubernetesConfig, LockKind};
use ha_testkit::{ApiAccess, Harness, KubeApiEmulator, LogCapture};
use serde::Deserialize;

const TOKEN: &str = "ha-rbac-sa-token-3f9e61c0";

/// A kubeconfig for `emulator` whose user authenticates with [`TOKEN`].
fn kubeconfig_with_token(emulator: &KubeApiEmulator, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let yaml = emulator.kubeconfig_yaml(TEST_NAMESPACE);
    let with_token = yaml.replace("  user: {}\n", &format!("  user:\n    token: {TOKEN}\n"));
    assert_ne!(yaml, with_token, "kubeconfig layout changed");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, with_token).unwrap();
    path
}

/// `(apiGroup, resource) → verbs` of the Role in `rbac.yaml`, and its namespace.
fn role_rules() -> (BTreeMap<(String, String), BTreeSet<String>>, String) {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rbac.yaml")).unwrap();
    let mut rules = BTreeMap::new();
    let mut namespace = None;
    for doc in serde_norway::Deserializer::from_str(&yaml) {
        let v = serde_json::Value::deserialize(doc).unwrap();
        if v["kind"] != "Role" {
            continue;
        }
        namespace = v["metadata"]["namespace"].as_str().map(String::from);
        for rule in v["rules"].as_array().unwrap() {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    let verbs: &mut BTreeSet<String> = rules.entry((group.clone(), resource)).or_default();
                    verbs.extend(list("verbs"));
                }
            }
        }
    }
    (rules, namespace.expect("a Role in rbac.yaml"))
}

/// The emulator harness, except that backends are made by `KubernetesBackend::connect`
/// from a kubeconfig file with a token.
struct TokenHarness {
    inner: KubeHarness,
    config: KubernetesConfig,
}

#[async_trait]
impl Harness for TokenHarness {
    fn name(&self) -> &str {
        "kubernetes-rbac"
    }

    async fn connect(&self, cluster_id: &ClusterId) -> Result<Arc<dyn HaBackend>> {
        Ok(Arc::new(KubernetesBackend::connect(cluster_id, &self.config).await?))
    }

    fn crash_timeout(&self) -> std::time::Duration {
        self.inner.crash_timeout()
    }

    async fn list_records(&self, cluster_id: &ClusterId) -> Result<Vec<String>> {
        self.inner.list_records(cluster_id).await
    }

    async fn write_leader_record(
        &self,
        cluster_id: &ClusterId,
        component: &ComponentId,
        record: Option<bytes::Bytes>,
    ) -> Result<()> {
        self.inner.write_leader_record(cluster_id, component, record).await
    }
}

fn token_harness(dir: &tempfile::TempDir) -> (TokenHarness, Arc<KubeApiEmulator>) {
    token_harness_with(dir, LockKind::default())
}

fn token_harness_with(dir: &tempfile::TempDir, lock: LockKind) -> (TokenHarness, Arc<KubeApiEmulator>) {
    let inner = KubeHarness::emulator().with_lock(lock);
    let emulator = match &inner.target {
        common::Target::Emulator(e) => e.clone(),
        common::Target::Real(_) => unreachable!(),
    };
    let config = KubernetesConfig {
        namespace: Some(TEST_NAMESPACE.into()),
        kubeconfig: Some(kubeconfig_with_token(&emulator, dir)),
        context: None,
        timings: inner.timings,
        lock: inner.lock,
    };
    (TokenHarness { inner, config }, emulator)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_uses_only_what_the_role_grants_and_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend: Vec<ApiAccess> = Vec::new();
    // Both lock kinds: the one Role serves either.
    for lock in [LockKind::ConfigMap, LockKind::Lease] {
        let (harness, emulator) = token_harness_with(&dir, lock);
        ha_testkit::conformance::run_all(Arc::new(harness)).await;
        backend.extend(
            emulator
                .accesses()
                .into_keys()
                .filter(|a| a.bearer_token.as_deref() == Some(TOKEN)),
        );
        assert!(
            emulator.accesses().keys().any(|a| a.bearer_token.is_none()),
            "the harness's own requests should carry no token"
        );
    }

    let (rules, _) = role_rules();
    let mut used: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for a in &backend {
        let Some(group) = &a.group else {
            panic!("the backend requested a non-resource URL, which the Role does not grant: {a:?}");
        };
        assert_eq!(
            a.namespace.as_deref(),
            Some(TEST_NAMESPACE),
            "the backend made a request outside its namespace (a Role cannot grant it): {a:?}"
        );
        let key = (group.clone(), a.resource.clone());
        let granted = rules.get(&key).is_some_and(|v| v.contains(&a.verb));
        assert!(granted, "the Role does not grant {a:?}; rules: {rules:?}");
        used.entry(key).or_default().insert(a.verb.clone());
    }
    assert_eq!(
        used, rules,
        "the Role grants more than the backend uses in the whole suite (left: used, right: granted)"
    );
}

/// The token from the kubeconfig never appears in TRACE logs (kube, hyper, tower
/// included) of a full run, nor in an error the backend returns after the API refused
/// it (401), nor in `Debug` of the config or backend. Current-thread runtime: the
/// capture is this thread's subscriber and sees every task.
#[tokio::test]
async fn token_never_logged_or_shown() {
    let dir = tempfile::tempdir().unwrap();
    let capture = LogCapture::new();
    let _guard = capture.install();
    let (harness, emulator) = token_harness(&dir);
    let cluster = ClusterId::random("rbaclog");
    let backend = KubernetesBackend::connect(&cluster, &harness.config).await.unwrap();
    assert!(!format!("{backend:?} {:?}", harness.config).contains(TOKEN));
    let storage =
        ha_core::storage::StateStorage::open(&format!("memory://{cluster}"), &cluster, &Default::default()).unwrap();
    let ha = HaServices::new(Arc::new(backend), storage, 1);
    let svc = ha
        .leader_election_service(ha_core::DEFAULT_ELECTION_GROUP)
        .await
        .unwrap();
    let mut e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let g = e.granted().await.unwrap();
    e.confirm(&g, "addr").await.unwrap();
    let job = ha_core::JobId::random();
    let counter = ha.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter.get_and_increment(&g.fence).await.unwrap(), 1);
    // Every request refused as unauthorized (renewals too) until reset.
    emulator.faults().fail_next(u32::MAX, 401);
    let err = counter.get_and_increment(&g.fence).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, ha_core::Error::PermissionDenied { .. }), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
    emulator.faults().reset();
    let _ = svc.close().await;
    let _ = ha.close_and_cleanup_all_data().await;
    assert!(
        emulator
            .accesses()
            .keys()
            .any(|a| a.bearer_token.as_deref() == Some(TOKEN)),
        "the backend did not send the token at all"
    );
    assert!(capture.lines() > 20, "{}", capture.text());
    capture.assert_absent(&[TOKEN]);
}
