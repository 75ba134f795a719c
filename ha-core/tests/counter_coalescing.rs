//! Concurrent `get_and_increment` calls of one process on one counter share fenced
//! compare-and-sets: one CAS of +n serves n waiting callers, ids stay distinct and
//! gap-free, and a CAS with an unknown outcome fails every caller it served.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ha_core::driver::CheckpointIdCounterDriver;
use ha_core::{CheckpointIdCounter, Epoch, Error, Fence, Result, Version, Versioned};

/// An in-memory counter whose operations take a moment, recording each CAS.
#[derive(Default)]
struct SlowCounter {
    /// (value, version)
    stored: Mutex<Option<(u64, u64)>>,
    /// Per CAS: (expected value, new value, whether it reported an unknown outcome).
    cas: Mutex<Vec<(u64, u64, bool)>>,
    /// Whether the first CAS that advances by more than one applies the write but
    /// reports an unknown outcome.
    unknown_when_shared: bool,
}

#[async_trait]
impl CheckpointIdCounterDriver for SlowCounter {
    async fn read(&self) -> Result<Option<Versioned<u64>>> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(self.stored.lock().unwrap().map(|(value, v)| Versioned {
            value,
            version: Version(v),
        }))
    }

    async fn compare_and_set(&self, _fence: &Fence, expected: Option<Version>, value: u64) -> Result<Version> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut stored = self.stored.lock().unwrap();
        if stored.map(|(_, v)| Version(v)) != expected {
            return Err(Error::VersionConflict { key: "counter".into() });
        }
        let before = stored.map_or(1, |(v, _)| v);
        let version = stored.map_or(1, |(_, v)| v + 1);
        *stored = Some((value, version));
        let mut cas = self.cas.lock().unwrap();
        let unknown = self.unknown_when_shared && value - before > 1 && !cas.iter().any(|c| c.2);
        cas.push((before, value, unknown));
        if unknown {
            return Err(Error::OutcomeUnknown {
                op: "compare-and-set",
                key: "counter".into(),
                source: "reply lost".into(),
            });
        }
        Ok(Version(version))
    }

    async fn remove(&self, _fence: &Fence) -> Result<()> {
        *self.stored.lock().unwrap() = None;
        Ok(())
    }
}

async fn increment_concurrently(counter: &CheckpointIdCounter, fence: &Fence, tasks: usize) -> Vec<Result<u64>> {
    let calls = (0..tasks).map(|_| {
        let (counter, fence) = (counter.clone(), fence.clone());
        tokio::spawn(async move { counter.get_and_increment(&fence).await })
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_share_one_cas() {
    let driver = Arc::new(SlowCounter::default());
    let counter = CheckpointIdCounter::new(driver.clone());
    let fence = Fence::new(Epoch(1), "term-1");
    let mut ids: Vec<u64> = increment_concurrently(&counter, &fence, 16)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=16).collect::<Vec<_>>(), "16 distinct, gap-free ids");
    let cas = driver.cas.lock().unwrap().len();
    assert!(
        cas <= 4,
        "16 concurrent increments took {cas} CAS calls; expected them shared"
    );
    assert_eq!(counter.get().await.unwrap(), 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_callers_ids_increase_in_call_order() {
    let driver = Arc::new(SlowCounter::default());
    let counter = CheckpointIdCounter::new(driver.clone());
    let fence = Fence::new(Epoch(1), "term-1");
    let background = {
        let (counter, fence) = (counter.clone(), fence.clone());
        tokio::spawn(async move { increment_concurrently(&counter, &fence, 32).await })
    };
    let mut last = 0;
    for _ in 0..8 {
        let id = counter.get_and_increment(&fence).await.unwrap();
        assert!(id > last, "id {id} after {last}");
        last = id;
    }
    let mut all: Vec<u64> = background.await.unwrap().into_iter().map(|r| r.unwrap()).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 32, "no id handed out twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_fails_every_waiter_it_served() {
    let driver = Arc::new(SlowCounter {
        unknown_when_shared: true,
        ..Default::default()
    });
    let counter = CheckpointIdCounter::new(driver.clone());
    let fence = Fence::new(Epoch(1), "term-1");
    let results = increment_concurrently(&counter, &fence, 16).await;
    let cas = driver.cas.lock().unwrap().clone();
    let Some(&(from, to, _)) = cas.iter().find(|c| c.2) else {
        panic!("no CAS served several callers: {cas:?}");
    };
    let served = (to - from) as usize;
    let failed = results
        .iter()
        .filter(|r| matches!(r, Err(Error::OutcomeUnknown { .. })))
        .count();
    assert_eq!(failed, served, "every caller of the unknown CAS fails: {results:?}");
    for id in results.iter().filter_map(|r| r.as_ref().ok()) {
        assert!(
            !(from..to).contains(id),
            "id {id} from the range {from}..{to} that may not have been committed"
        );
    }
    let next = counter.get_and_increment(&fence).await.unwrap();
    assert!(next >= to, "id {next} repeats the unknown range {from}..{to}");
}
