//! `LeaderObserver`: the current leader of an election group, followed without
//! contending (etcd's `Observe`, client-go's `OnNewLeader`).
//!
//! The observer reads the group's participants ([`HaBackend::participants`]) every
//! `high-availability.election.observe-interval` (default 100 ms), as client-go's
//! elector re-reads the lock every retry period, and publishes the leader's instance
//! id on a `watch` channel when it changes. Like every watch channel it keeps the
//! latest value: a leader that held for less than one interval may be skipped.
//! Read failures keep the last known value and are retried at the next tick.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::driver::HaBackend;
use crate::error::{Error, Result};
use crate::ids::ElectionGroup;

/// Default of `high-availability.election.observe-interval`.
pub const DEFAULT_OBSERVE_INTERVAL: Duration = Duration::from_millis(100);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follows the leader of one election group. Dropping it stops following.
pub struct LeaderObserver {
    group: ElectionGroup,
    rx: watch::Receiver<Option<String>>,
    _task: AbortOnDrop,
}

impl std::fmt::Debug for LeaderObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderObserver")
            .field("group", &self.group)
            .field("leader", &*self.rx.borrow())
            .finish()
    }
}

impl LeaderObserver {
    /// Starts observing `group` on `backend`, reading every `interval`; the leader at
    /// the call is known when this returns.
    pub async fn start(backend: Arc<dyn HaBackend>, group: &str, interval: Duration) -> Result<Self> {
        let group = ElectionGroup::new(group)?;
        if interval.is_zero() {
            return Err(Error::InvalidRequest {
                key: "high-availability.election.observe-interval".into(),
                message: "the observe interval must be above zero".into(),
            });
        }
        let leader = |ps: Vec<crate::driver::Participant>| ps.into_iter().find(|p| p.leader).map(|p| p.id);
        let first = leader(backend.participants(&group).await?);
        let (tx, rx) = watch::channel(first);
        let watched = group.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match backend.participants(&watched).await {
                    Ok(ps) => {
                        let now = leader(ps);
                        tx.send_if_modified(|cur| {
                            let changed = *cur != now;
                            *cur = now;
                            changed
                        });
                    }
                    Err(e) => {
                        tracing::debug!(group = %watched, error = %e, "could not read the participants; retrying")
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Self {
            group,
            rx,
            _task: AbortOnDrop(task),
        })
    }

    /// The group observed.
    pub fn group(&self) -> &ElectionGroup {
        &self.group
    }

    /// The instance id of the leader last seen (`None`: nobody leads).
    pub fn current(&self) -> Option<String> {
        self.rx.borrow().clone()
    }

    /// Waits for the next change of leader and returns it.
    pub async fn changed(&mut self) -> Result<Option<String>> {
        self.rx
            .changed()
            .await
            .map_err(|_| Error::closed(format!("leader observer of group {}", self.group)))?;
        Ok(self.rx.borrow_and_update().clone())
    }

    /// A receiver to await changes with (`changed()`, `wait_for()`).
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.rx.clone()
    }
}
