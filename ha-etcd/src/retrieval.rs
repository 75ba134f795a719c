//! Leader retrieval: a resilient watch of `P/C/leader/<component>` feeding a
//! `tokio::sync::watch` channel. The current value is read before the retrieval driver
//! is returned; later changes arrive by watch (resumed by revision after a broken
//! stream, re-listed after compaction). A record that cannot be decoded reads as "no
//! leader" and is logged.

use ha_core::driver::LeaderRetrievalDriver;
use ha_core::{ComponentId, LeaderInformation, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::Shared;
use crate::error::rpc;
use crate::watch::{follow, Update};

pub(crate) struct EtcdRetrieval {
    task: JoinHandle<()>,
}

fn decode(key: &str, value: &[u8]) -> Option<LeaderInformation> {
    match LeaderInformation::from_json(key, value) {
        Ok(info) => Some(info),
        Err(e) => {
            tracing::warn!(%key, error = %e, "undecodable leader information; treating as no leader");
            None
        }
    }
}

fn publish(tx: &watch::Sender<Option<LeaderInformation>>, info: Option<LeaderInformation>) {
    tx.send_if_modified(|cur| {
        let changed = *cur != info;
        *cur = info;
        changed
    });
}

impl EtcdRetrieval {
    pub(crate) async fn start(
        shared: &Shared,
        component: &ComponentId,
        tx: watch::Sender<Option<LeaderInformation>>,
    ) -> Result<Self> {
        let key = shared.keys.leader_info(component);
        let mut kv = shared.client.kv_client();
        let resp = rpc(shared.timeout, kv.get(key.clone(), None))
            .await
            .map_err(|e| e.read(key.clone()))?;
        publish(&tx, resp.kvs().first().and_then(|kv| decode(&key, kv.value())));
        let from = resp.header().map(|h| h.revision()).unwrap_or_default() + 1;
        let task = tokio::spawn(follow(
            shared.client.clone(),
            shared.timeout,
            key.clone(),
            false,
            Some(from),
            move |update| {
                let info = match update {
                    Update::Snapshot(kvs) => kvs.first().and_then(|kv| decode(&key, kv.value())),
                    Update::Put(kv) => decode(&key, kv.value()),
                    Update::Delete(_) => None,
                };
                publish(&tx, info);
            },
        ));
        Ok(Self { task })
    }
}

impl LeaderRetrievalDriver for EtcdRetrieval {}

impl Drop for EtcdRetrieval {
    fn drop(&mut self) {
        self.task.abort();
    }
}
