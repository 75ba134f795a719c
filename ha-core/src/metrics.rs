//! Metric names and the helpers that record them, through the `metrics` facade.
//!
//! ha-core and the backends record; the application picks an exporter (the demo
//! serves Prometheus text with `metrics-exporter-prometheus`). Without an installed
//! recorder every call is a no-op.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `ha_leader` | gauge | `group` | 1 while this process holds the group's leadership |
//! | `ha_leadership_transitions_total` | counter | `group`, `event` (`granted`/`revoked`) | grants and revocations |
//! | `ha_store_write_seconds` | histogram | `op` | latency of fenced HA writes |
//! | `ha_fenced_writes_rejected_total` | counter | `op` | writes refused with `NotLeader` |
//! | `ha_backend_keepalive_seconds` | histogram | `backend` | session/lease renewal latency (backends) |
//! | `ha_backend_suspended_seconds_total` | counter | `backend` | whole seconds spent disconnected but not yet expired (backends) |
//! | `ha_backend_suspension_seconds` | histogram | `backend` | length of each suspension (backends) |

use std::future::Future;
use std::time::Instant;

use crate::error::{Error, Result};

/// Gauge: 1 while leading.
pub const LEADER: &str = "ha_leader";
/// Counter: leadership grants and revocations.
pub const TRANSITIONS: &str = "ha_leadership_transitions_total";
/// Histogram: fenced write latency.
pub const WRITE_SECONDS: &str = "ha_store_write_seconds";
/// Counter: writes rejected as not leader.
pub const FENCED_REJECTIONS: &str = "ha_fenced_writes_rejected_total";
/// Histogram: keep-alive / renew latency, recorded by backends.
pub const KEEPALIVE_SECONDS: &str = "ha_backend_keepalive_seconds";
/// Counter: seconds spent suspended, recorded by backends.
pub const SUSPENDED_SECONDS: &str = "ha_backend_suspended_seconds_total";

/// Runs a fenced write, recording its latency and a rejection if it was fenced off.
pub(crate) async fn fenced_write<T>(op: &'static str, write: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let result = write.await;
    metrics::histogram!(WRITE_SECONDS, "op" => op).record(started.elapsed().as_secs_f64());
    if let Err(Error::NotLeader { .. }) = &result {
        metrics::counter!(FENCED_REJECTIONS, "op" => op).increment(1);
    }
    result
}

/// Records a leadership change of `group`.
pub(crate) fn leadership(group: &str, leading: bool) {
    metrics::gauge!(LEADER, "group" => group.to_string()).set(if leading { 1.0 } else { 0.0 });
    let event = if leading { "granted" } else { "revoked" };
    metrics::counter!(TRANSITIONS, "group" => group.to_string(), "event" => event).increment(1);
}

/// Records one session keep-alive or lease renewal round trip of `backend`.
pub fn record_keepalive(backend: &'static str, latency: std::time::Duration) {
    metrics::histogram!(KEEPALIVE_SECONDS, "backend" => backend).record(latency.as_secs_f64());
}

/// Records time `backend` spent disconnected while its session could still be valid.
pub fn record_suspended(backend: &'static str, duration: std::time::Duration) {
    metrics::counter!(SUSPENDED_SECONDS, "backend" => backend).increment(duration.as_millis() as u64 / 1000);
    metrics::histogram!("ha_backend_suspension_seconds", "backend" => backend).record(duration.as_secs_f64());
}
