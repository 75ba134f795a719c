//! The raw leader record of a component (`P/C/leader/<component>`) as a stream: the
//! current value is read before the stream is returned; later changes arrive by watch
//! (resumed by revision after a broken stream, re-listed after compaction).

use bytes::Bytes;
use ha_core::driver::{leader_record_stream, LeaderRecordStream};
use ha_core::{ComponentId, Result};

use crate::backend::Shared;
use crate::watch::{follow, Update};

/// Every component with a record (`P/C/leader/<component>`), ascending.
pub(crate) async fn components(shared: &Shared) -> Result<Vec<ComponentId>> {
    let dir = shared.layout.leader_dir();
    let keys_only = etcd_client::GetOptions::new().with_prefix().with_keys_only();
    let resp = crate::error::get(&shared.client, shared.timeout, &dir, Some(keys_only))
        .await
        .map_err(|e| e.read(dir.clone()))?;
    let mut out: Vec<ComponentId> = resp
        .kvs()
        .iter()
        .filter_map(|kv| {
            let name = std::str::from_utf8(kv.key().strip_prefix(dir.as_bytes())?).ok()?;
            (!name.contains('/')).then(|| ComponentId::new(name).ok())?
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The raw record of `component`: current value first, then every change.
pub(crate) async fn watch(shared: &Shared, component: &ComponentId) -> Result<LeaderRecordStream> {
    let key = shared.layout.leader_info(component);
    let resp = crate::error::get(&shared.client, shared.timeout, &key, None)
        .await
        .map_err(|e| e.read(key.clone()))?;
    let current = resp.kvs().first().map(|kv| Bytes::copy_from_slice(kv.value()));
    let from = resp.header().map(|h| h.revision()).unwrap_or_default() + 1;
    let (client, timeout) = (shared.client.clone(), shared.timeout);
    Ok(leader_record_stream(current, move |tx| async move {
        follow(client, timeout, key, false, Some(from), move |update| {
            let record = match update {
                Update::Snapshot(kvs) => kvs.first().map(|kv| Bytes::copy_from_slice(kv.value())),
                Update::Put(kv) => Some(Bytes::copy_from_slice(kv.value())),
                Update::Delete => None,
            };
            tx.send(record);
        })
        .await;
    }))
}
