//! The checkpoint-id counter of one job: a decimal `u64` at `P/C/jobs/<job>/counter`,
//! compare-and-set on its mod-revision, fenced. ha-core runs the CAS loop.

use std::sync::Arc;

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, TxnOp};
use ha_core::driver::kit::{decode_counter, encode_counter};
use ha_core::driver::CheckpointIdCounterDriver;
use ha_core::{Error, Fence, JobId, Result, Version, Versioned};

use crate::backend::Shared;
use crate::fenced::fenced_txn;

pub(crate) struct EtcdCounter {
    shared: Arc<Shared>,
    key: String,
}

impl EtcdCounter {
    pub(crate) fn new(shared: Arc<Shared>, job: &JobId) -> Self {
        let key = shared.layout.counter(job);
        Self { shared, key }
    }
}

#[async_trait]
impl CheckpointIdCounterDriver for EtcdCounter {
    async fn read(&self) -> Result<Option<Versioned<u64>>> {
        let resp = crate::error::get(&self.shared.client, self.shared.timeout, &self.key, None)
            .await
            .map_err(|e| e.read(self.key.clone()))?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(None);
        };
        let value = decode_counter(&self.key, kv.value())?;
        Ok(Some(Versioned {
            value,
            version: Version(kv.mod_revision() as u64),
        }))
    }

    async fn compare_and_set(&self, fence: &Fence, expected: Option<Version>, value: u64) -> Result<Version> {
        let condition = match expected {
            None => Compare::version(self.key.clone(), CompareOp::Equal, 0),
            Some(v) => Compare::mod_revision(self.key.clone(), CompareOp::Equal, v.0 as i64),
        };
        let outcome = fenced_txn(
            &self.shared,
            fence,
            "counter compare-and-set",
            &self.key,
            vec![condition],
            vec![TxnOp::put(self.key.clone(), encode_counter(value), None)],
            vec![],
        )
        .await?;
        match outcome {
            Ok(applied) => Ok(Version(applied.revision as u64)),
            Err(_) => Err(Error::VersionConflict { key: self.key.clone() }),
        }
    }

    async fn remove(&self, fence: &Fence) -> Result<()> {
        fenced_txn(
            &self.shared,
            fence,
            "counter removal",
            &self.key,
            vec![],
            vec![TxnOp::delete(self.key.clone(), None)],
            vec![],
        )
        .await?
        .map(|_| ())
        .map_err(|_| Error::VersionConflict { key: self.key.clone() })
    }
}
