//! The state-handle store: pointers under `P/C/<namespace>/<name>`, one lock key per
//! owner under `P/C/locks/<namespace>/<name>/<owner>` bound to the owner's lease.
//!
//! Versions are mod-revisions. Every write is a fenced `txn` (see [`crate::fenced`]);
//! "locked and present" and "no lock left" are compares in the same request, so a
//! concurrent `get_and_lock` can never leave a lock on a removed entry or lose an
//! entry that was just locked.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use ha_core::driver::StateHandleStore;
use ha_core::{Error, Fence, Result, Version, Versioned};

use crate::backend::Shared;
use crate::error::rpc;
use crate::fenced::{fenced_txn, first_kv, malformed};

pub(crate) struct EtcdStore {
    shared: Arc<Shared>,
    namespace: String,
}

impl EtcdStore {
    pub(crate) fn new(shared: Arc<Shared>, namespace: String) -> Self {
        Self { shared, namespace }
    }

    fn key(&self, name: &str) -> Result<String> {
        ha_core::driver::kit::check_entry_name(name)?;
        Ok(format!("{}{name}", self.shared.layout.namespace_dir(&self.namespace)))
    }

    fn lock_dir(&self, name: &str) -> String {
        self.shared.layout.lock_dir(&self.namespace, name)
    }

    fn my_lock(&self, name: &str) -> String {
        format!("{}{}", self.lock_dir(name), self.shared.instance_id)
    }

    fn lock_put(&self, name: &str, lease: i64) -> TxnOp {
        TxnOp::put(
            self.my_lock(name),
            self.shared.instance_id.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )
    }
}

#[async_trait]
impl StateHandleStore for EtcdStore {
    async fn add_and_lock(&self, fence: &Fence, name: &str, value: Bytes) -> Result<Version> {
        let key = self.key(name)?;
        let lease = self.shared.lease()?;
        let outcome = fenced_txn(
            &self.shared,
            fence,
            "add",
            &key,
            vec![Compare::version(key.clone(), CompareOp::Equal, 0)],
            vec![
                TxnOp::put(key.clone(), value.to_vec(), None),
                self.lock_put(name, lease),
            ],
            vec![],
        )
        .await?;
        match outcome {
            Ok(applied) => Ok(Version(applied.revision as u64)),
            Err(_) => Err(Error::AlreadyExists { key }),
        }
    }

    async fn replace(&self, fence: &Fence, name: &str, expected: Version, value: Bytes) -> Result<Version> {
        let key = self.key(name)?;
        let outcome = fenced_txn(
            &self.shared,
            fence,
            "replace",
            &key,
            vec![Compare::mod_revision(key.clone(), CompareOp::Equal, expected.0 as i64)],
            vec![TxnOp::put(key.clone(), value.to_vec(), None)],
            vec![TxnOp::get(key.clone(), None)],
        )
        .await?;
        match outcome {
            Ok(applied) => Ok(Version(applied.revision as u64)),
            Err(refused) => match refused.responses.first().and_then(first_kv) {
                None => Err(Error::NotFound { key }),
                Some(_) => Err(Error::VersionConflict { key }),
            },
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Versioned<Bytes>>> {
        let key = self.key(name)?;
        let resp = crate::error::get(&self.shared.client, self.shared.timeout, &key, None)
            .await
            .map_err(|e| e.read(key))?;
        Ok(resp.kvs().first().map(|kv| Versioned {
            value: Bytes::copy_from_slice(kv.value()),
            version: Version(kv.mod_revision() as u64),
        }))
    }

    async fn get_and_lock(&self, name: &str) -> Result<Versioned<Bytes>> {
        let key = self.key(name)?;
        let lease = self.shared.lease()?;
        let txn = Txn::new()
            .when(vec![Compare::version(key.clone(), CompareOp::Greater, 0)])
            .and_then(vec![self.lock_put(name, lease), TxnOp::get(key.clone(), None)]);
        let mut kv = self.shared.client.kv_client();
        let resp = rpc(self.shared.timeout, kv.txn(txn))
            .await
            .map_err(|e| e.write("lock", self.my_lock(name)))?;
        if !resp.succeeded() {
            return Err(Error::NotFound { key });
        }
        let responses = resp.op_responses();
        let kv = responses.get(1).and_then(first_kv).ok_or_else(|| malformed(&key))?;
        Ok(Versioned {
            value: Bytes::copy_from_slice(kv.value()),
            version: Version(kv.mod_revision() as u64),
        })
    }

    async fn list(&self) -> Result<Vec<String>> {
        let dir = self.shared.layout.namespace_dir(&self.namespace);
        let keys_only = GetOptions::new().with_prefix().with_keys_only();
        let resp = crate::error::get(&self.shared.client, self.shared.timeout, &dir, Some(keys_only))
            .await
            .map_err(|e| e.read(dir.clone()))?;
        let mut names: Vec<String> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let rest = kv.key().strip_prefix(dir.as_bytes())?;
                let name = std::str::from_utf8(rest).ok()?;
                (!name.contains('/')).then(|| name.to_string())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    async fn release(&self, name: &str) -> Result<()> {
        self.key(name)?;
        let lock = self.my_lock(name);
        let mut kv = self.shared.client.kv_client();
        rpc(self.shared.timeout, kv.delete(lock.clone(), None))
            .await
            .map_err(|e| e.write("release", lock))?;
        Ok(())
    }

    async fn release_and_try_remove(&self, fence: &Fence, name: &str) -> Result<bool> {
        let key = self.key(name)?;
        let lock_dir = self.lock_dir(name);
        // Drop our own lock first (fenced, so a stale leader changes nothing) …
        let dropped = fenced_txn(
            &self.shared,
            fence,
            "release",
            &key,
            vec![],
            vec![TxnOp::delete(self.my_lock(name), None)],
            vec![],
        )
        .await?;
        if dropped.is_err() {
            return Err(malformed(&key));
        }
        // … then delete the entry iff no owner's lock remains, in one request.
        let removed = fenced_txn(
            &self.shared,
            fence,
            "remove",
            &key,
            vec![Compare::version(lock_dir.clone(), CompareOp::Equal, 0).with_prefix()],
            vec![TxnOp::delete(key.clone(), None)],
            vec![],
        )
        .await?;
        Ok(removed.is_ok())
    }

    async fn lock_owners(&self, name: &str) -> Result<Vec<String>> {
        self.key(name)?;
        let dir = self.lock_dir(name);
        let keys_only = GetOptions::new().with_prefix().with_keys_only();
        let resp = crate::error::get(&self.shared.client, self.shared.timeout, &dir, Some(keys_only))
            .await
            .map_err(|e| e.read(dir.clone()))?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let rest = kv.key().strip_prefix(dir.as_bytes())?;
                std::str::from_utf8(rest).ok().map(str::to_string)
            })
            .collect())
    }
}
