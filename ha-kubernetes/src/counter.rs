//! The checkpoint-id counter: the `counter` key of the job's ConfigMap, as a decimal
//! (Flink's layout), fenced by the job's `epoch`. A leader's read claims the
//! ConfigMap for its term first (see `fenced`).
//!
//! The value itself serves as the compare-and-set version: a counter only moves
//! forward except through `set_count`, and a CAS that matches an equal value hands out
//! the same next id that any other writer would, so no id is handed out twice.

use std::sync::Arc;

use async_trait::async_trait;
use ha_core::driver::kit::{decode_counter, encode_counter};
use ha_core::driver::CheckpointIdCounterDriver;
use ha_core::{Error, Fence, JobId, Result, Version, Versioned};

use crate::layout::COUNTER_KEY;
use crate::shared::{Apply, Fencing, Shared};
use crate::store::only_epoch_left;

pub(crate) struct KubeCounter {
    core: Arc<Shared>,
    config_map: String,
    key: String,
}

impl KubeCounter {
    pub(crate) fn new(core: Arc<Shared>, job: &JobId) -> Self {
        let config_map = core.layout.job_config_map(job);
        let key = format!("{config_map}/{COUNTER_KEY}");
        Self { core, config_map, key }
    }
}

fn parse(key: &str, raw: &str) -> Result<u64> {
    decode_counter(key, raw.as_bytes())
}

#[async_trait]
impl CheckpointIdCounterDriver for KubeCounter {
    async fn read(&self) -> Result<Option<Versioned<u64>>> {
        self.core.check_open()?;
        self.core.claim(&self.config_map).await?;
        let cm = self.core.get_config_map(&self.config_map, "get", &self.key).await?;
        cm.and_then(|c| c.data)
            .and_then(|d| d.get(COUNTER_KEY).cloned())
            .map(|raw| {
                let value = parse(&self.key, &raw)?;
                Ok(Versioned {
                    value,
                    version: Version(value),
                })
            })
            .transpose()
    }

    async fn compare_and_set(&self, fence: &Fence, expected: Option<Version>, value: u64) -> Result<Version> {
        let key = self.key.clone();
        self.core
            .update(
                &self.config_map,
                &key,
                "compare-and-set",
                Fencing::Epoch(fence),
                true,
                |data| {
                    let current = data.get(COUNTER_KEY).map(|raw| parse(&key, raw)).transpose()?;
                    if current.map(Version) != expected {
                        return Err(Error::VersionConflict { key: key.clone() });
                    }
                    data.insert(COUNTER_KEY.to_string(), encode_counter(value));
                    Ok(Apply::Write(Version(value)))
                },
            )
            .await
    }

    async fn remove(&self, fence: &Fence) -> Result<()> {
        self.core
            .update(
                &self.config_map,
                &self.key,
                "remove",
                Fencing::Epoch(fence),
                false,
                |data| {
                    // An empty ConfigMap goes too, also when the counter was gone.
                    if data.remove(COUNTER_KEY).is_none() && !only_epoch_left(data) {
                        return Ok(Apply::Keep(()));
                    }
                    Ok(if only_epoch_left(data) {
                        Apply::Delete(())
                    } else {
                        Apply::Write(())
                    })
                },
            )
            .await
            .or_else(|e| match e {
                Error::NotFound { .. } => Ok(()),
                e => Err(e),
            })
    }
}
