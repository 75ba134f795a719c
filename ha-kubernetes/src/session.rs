//! Sessions: what entry locks are bound to, since Kubernetes has no ZooKeeper-style
//! session.
//!
//! A backend instance that takes its first entry lock creates a coordination.k8s.io/v1
//! `Lease` named `<cluster-id>-session-<instance-id>` (labelled like the ConfigMaps)
//! and renews it every retry period. A lock owner counts only while its session Lease
//! exists: `lock_owners` and `release_and_try_remove` ignore owners without one.
//! `close` deletes the instance's Lease (after releasing its locks). A crashed
//! instance's Lease is deleted by whichever instance currently leads an election: it
//! lists the session Leases every retry period and deletes one (resourceVersion-
//! guarded) after seeing it unchanged for twice the lease duration by its own
//! monotonic clock — the same local-observation rule as the leader lock, with a wider
//! margin because wrongly ending a live session only loses that instance's locks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ha_core::Result;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::Api;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{bounded, ApiError};
use crate::shared::Shared;

/// The session Leases of one cluster.
pub(crate) struct Sessions {
    api: Api<Lease>,
    renewal: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Sessions {
    fn drop(&mut self) {
        if let Some(t) = self.renewal.get_mut().take() {
            t.abort();
        }
    }
}

fn lease_name(core: &Shared, owner: &str) -> String {
    format!("{}-session-{owner}", core.layout.cluster_id())
}

/// Whether `lease` is a session (the cluster's lock Leases carry the same labels).
fn is_session(core: &Shared, lease: &Lease) -> bool {
    let prefix = lease_name(core, "");
    lease.metadata.name.as_deref().is_some_and(|n| n.starts_with(&prefix))
}

fn session_lease(core: &Shared, name: String) -> Lease {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(core.namespace.clone()),
            labels: Some(core.layout.labels()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(core.instance_id.clone()),
            lease_duration_seconds: Some(core.timings.lease_duration.as_secs_f64().ceil() as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..Default::default()
        }),
    }
}

impl Sessions {
    pub(crate) fn new(api: Api<Lease>) -> Self {
        Self {
            api,
            renewal: tokio::sync::Mutex::new(None),
        }
    }

    /// The Lease API of the backend's namespace (participant registrations use it too).
    pub(crate) fn leases(&self) -> &Api<Lease> {
        &self.api
    }

    /// Creates this instance's session Lease (once) and starts renewing it.
    pub(crate) async fn ensure(&self, core: &Arc<Shared>) -> Result<()> {
        let mut renewal = self.renewal.lock().await;
        if renewal.is_some() {
            return Ok(());
        }
        let name = lease_name(core, &core.instance_id);
        let timeout = core.timings.request_timeout();
        match bounded(
            timeout,
            true,
            self.api
                .create(&PostParams::default(), &session_lease(core, name.clone())),
        )
        .await
        {
            Ok(_) | Err(ApiError::Conflict) => {}
            Err(e) => return Err(e.into_error("create session", &name)),
        }
        let (api, weak) = (self.api.clone(), Arc::downgrade(core));
        *renewal = Some(tokio::spawn(async move {
            loop {
                let Some(core) = weak.upgrade() else { return };
                let period = core.timings.retry_period;
                if let Err(e) = renew(&api, &core, &name).await {
                    tracing::debug!(error = %e, session = %name, "session renewal failed");
                }
                drop(core);
                tokio::time::sleep(period).await;
            }
        }));
        Ok(())
    }

    /// Owners (instance ids) whose session Lease exists.
    pub(crate) async fn live_owners(&self, core: &Shared) -> Result<HashSet<String>> {
        let params = ListParams::default().labels(&core.layout.selector());
        let list = bounded(core.timings.request_timeout(), false, self.api.list(&params))
            .await
            .map_err(|e| e.into_error("list", "session leases"))?;
        Ok(list
            .items
            .into_iter()
            .filter(|l| is_session(core, l))
            .filter_map(|l| l.spec.and_then(|s| s.holder_identity))
            .collect())
    }

    /// Stops renewing and deletes this instance's Lease.
    pub(crate) async fn end(&self, core: &Shared) -> Result<()> {
        let Some(task) = self.renewal.lock().await.take() else {
            return Ok(());
        };
        task.abort();
        let name = lease_name(core, &core.instance_id);
        match bounded(
            core.timings.request_timeout(),
            true,
            self.api.delete(&name, &DeleteParams::default()),
        )
        .await
        {
            Ok(_) | Err(ApiError::NotFound) => Ok(()),
            Err(e) => Err(e.into_error("delete session", &name)),
        }
    }

    /// Deletes every session Lease of the cluster, and its lock Leases.
    pub(crate) async fn delete_all(&self, core: &Shared) -> Result<()> {
        let params = ListParams::default().labels(&core.layout.selector());
        bounded(
            core.timings.request_timeout(),
            true,
            self.api.delete_collection(&DeleteParams::default(), &params),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.into_error("delete-collection", "session leases"))
    }

    /// Starts the sweeper of crashed sessions (active only while this instance leads).
    pub(crate) fn start_sweeper(&self, core: &Arc<Shared>) -> JoinHandle<()> {
        let (api, weak) = (self.api.clone(), Arc::downgrade(core));
        tokio::spawn(async move {
            let mut seen: HashMap<String, (String, Instant)> = HashMap::new();
            loop {
                let Some(core) = weak.upgrade() else { return };
                let period = core.timings.retry_period;
                if core.leads() {
                    if let Err(e) = sweep(&api, &core, &mut seen).await {
                        tracing::debug!(error = %e, "session sweep failed");
                    }
                } else {
                    // A new term observes from scratch: conservative.
                    seen.clear();
                }
                drop(core);
                tokio::time::sleep(period).await;
            }
        })
    }
}

async fn renew(api: &Api<Lease>, core: &Shared, name: &str) -> Result<()> {
    let timeout = core.timings.request_timeout();
    let err = |e: ApiError| e.into_error("renew session", name);
    match bounded(timeout, false, api.get_opt(name)).await.map_err(err)? {
        None => {
            // Ended by a sweeper while we were unreachable: our old locks no longer
            // count; start a new session for future ones.
            tracing::warn!(session = %name, "session lease was gone; recreating it");
            bounded(
                timeout,
                true,
                api.create(&PostParams::default(), &session_lease(core, name.to_string())),
            )
            .await
            .map(|_| ())
            .map_err(err)
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            bounded(timeout, true, api.replace(name, &PostParams::default(), &lease))
                .await
                .map(|_| ())
                .map_err(err)
        }
    }
}

/// Deletes session Leases seen unchanged for twice the lease duration.
async fn sweep(api: &Api<Lease>, core: &Shared, seen: &mut HashMap<String, (String, Instant)>) -> Result<()> {
    let timeout = core.timings.request_timeout();
    let params = ListParams::default().labels(&core.layout.selector());
    let list = bounded(timeout, false, api.list(&params))
        .await
        .map_err(|e| e.into_error("list", "session leases"))?;
    let now = Instant::now();
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    for lease in list.items.into_iter().filter(|l| is_session(core, l)) {
        if let (Some(name), Some(rv)) = (lease.metadata.name, lease.metadata.resource_version) {
            current.insert(name, rv);
        }
    }
    seen.retain(|name, _| current.contains_key(name));
    let own = lease_name(core, &core.instance_id);
    for (name, rv) in current {
        let entry = seen.entry(name.clone()).or_insert_with(|| (rv.clone(), now));
        if entry.0 != rv {
            *entry = (rv, now);
            continue;
        }
        if name == own || now < entry.1 + core.timings.lease_duration * 2 {
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(rv),
                uid: None,
            }),
            ..Default::default()
        };
        match bounded(timeout, true, api.delete(&name, &params)).await {
            Ok(_) => tracing::info!(session = %name, "ended the session of a crashed instance"),
            Err(ApiError::NotFound | ApiError::Conflict) => {}
            Err(e) => return Err(e.into_error("delete session", &name)),
        }
        seen.remove(&name);
    }
    Ok(())
}
