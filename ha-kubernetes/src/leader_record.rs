//! The raw leader record of a component (`leader.<component>` in the cluster
//! ConfigMap) as a stream, mapped from the shared cluster-ConfigMap watch.

use std::sync::Arc;

use bytes::Bytes;
use ha_core::driver::{leader_record_stream, LeaderRecordStream};
use ha_core::ComponentId;
use k8s_openapi::api::core::v1::ConfigMap;

use crate::layout::{leader_key, LEADER_PREFIX};
use crate::shared::{Shared, Snapshot};

fn record_of(snapshot: &Snapshot, key: &str) -> Option<Bytes> {
    let raw = snapshot.cm.as_ref()?.data.as_ref()?.get(key)?;
    Some(Bytes::from(raw.clone()))
}

/// Every component with a record (`leader.<component>` in the cluster ConfigMap),
/// ascending, read from the API server.
pub(crate) async fn components(core: &Shared) -> ha_core::Result<Vec<ComponentId>> {
    let name = core.layout.cluster_config_map();
    let cm = core.cms.get(&name).await.map_err(|e| e.into_error("get", &name))?;
    let mut out: Vec<ComponentId> = cm
        .and_then(|c| c.data)
        .unwrap_or_default()
        .keys()
        .filter_map(|k| ComponentId::new(k.strip_prefix(LEADER_PREFIX)?).ok())
        .collect();
    out.sort();
    Ok(out)
}

/// The resourceVersion of the ConfigMap in `snapshot` as a number (the API server's
/// are; used only to order copies of one object).
fn version(cm: Option<&ConfigMap>) -> Option<u64> {
    cm?.metadata.resource_version.as_deref()?.parse().ok()
}

/// The current record first — read from the API server, so a write that completed
/// before the call is seen even if the shared watch has not delivered it yet — then
/// every change the shared cluster-ConfigMap watch sees, skipping watch states older
/// than that read.
pub(crate) async fn watch(core: &Arc<Shared>, component: &ComponentId) -> LeaderRecordStream {
    let key = leader_key(component);
    let mut rx = core.snapshots.clone();
    let name = core.layout.cluster_config_map();
    let (current, floor) = match core.cms.get(&name).await {
        Ok(cm) => {
            let _ = rx.borrow_and_update();
            let record = cm
                .as_ref()
                .and_then(|c| c.data.as_ref())
                .and_then(|d| d.get(&key))
                .map(|raw| Bytes::from(raw.clone()));
            (record, version(cm.as_ref()))
        }
        Err(e) => {
            // Unreadable now: start from the watch (bounded wait for its first listing).
            tracing::debug!(%component, error = ?e, "reading the cluster ConfigMap failed; retrieval starts from the watch");
            let synced = tokio::time::timeout(core.timings.request_timeout(), rx.wait_for(|s| s.synced))
                .await
                .is_ok_and(|r| r.is_ok());
            let first = rx.borrow_and_update().clone();
            let current = if synced && first.synced {
                record_of(&first, &key)
            } else {
                None
            };
            (current, None)
        }
    };
    leader_record_stream(current, move |tx| async move {
        while rx.changed().await.is_ok() {
            let snapshot = rx.borrow_and_update().clone();
            if !snapshot.synced {
                continue;
            }
            let older = match (floor, version(snapshot.cm.as_deref())) {
                (Some(floor), Some(v)) => v < floor,
                _ => false,
            };
            if !older && !tx.send(record_of(&snapshot, &key)) {
                return;
            }
        }
    })
}
