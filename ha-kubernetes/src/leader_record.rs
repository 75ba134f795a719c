//! The raw leader record of a component (`leader.<component>` in the cluster
//! ConfigMap) as a stream, mapped from the shared cluster-ConfigMap watch.

use std::sync::Arc;

use bytes::Bytes;
use ha_core::driver::{leader_record_stream, LeaderRecordStream};
use ha_core::ComponentId;

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

/// Waits (bounded by the request timeout) for the shared watch's first listing so
/// the current record is sent first, then follows the watch.
pub(crate) async fn watch(core: &Arc<Shared>, component: &ComponentId) -> LeaderRecordStream {
    let key = leader_key(component);
    let mut rx = core.snapshots.clone();
    let synced = tokio::time::timeout(core.timings.request_timeout(), rx.wait_for(|s| s.synced))
        .await
        .is_ok_and(|r| r.is_ok());
    if !synced {
        tracing::debug!(%component, "cluster ConfigMap watch not listed yet; retrieval starts empty");
    }
    let first = rx.borrow_and_update().clone();
    let current = if first.synced { record_of(&first, &key) } else { None };
    leader_record_stream(current, move |tx| async move {
        while rx.changed().await.is_ok() {
            let snapshot = rx.borrow_and_update().clone();
            if snapshot.synced && !tx.send(record_of(&snapshot, &key)) {
                return;
            }
        }
    })
}
