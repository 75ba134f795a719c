//! The raw leader record of a component (`P/C/leader/<component>`) as a stream: the
//! current value is read before the stream is returned; later changes arrive by watch
//! (resumed by revision after a broken stream, re-listed after compaction).

use bytes::Bytes;
use ha_core::driver::{leader_record_stream, LeaderRecordStream};
use ha_core::{ComponentId, Result};

use crate::backend::Shared;
use crate::watch::{follow, Update};

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
