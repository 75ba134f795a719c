//! `KubernetesConfig`: the `high-availability.kubernetes.*` section.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `namespace` | the kubeconfig context's namespace, else `default` | namespace of the HA ConfigMaps |
//! | `kubeconfig` | kube's own loading (`$KUBECONFIG`, `~/.kube/config`, in-cluster service account) | explicit kubeconfig file |
//! | `context` | current context | kubeconfig context to use |
//! | `lease-duration` | 15 s | how long a leader's record stays valid without renewal, judged by each contender's local monotonic clock |
//! | `renew-deadline` | 10 s | a leader that has not renewed for this long stops acting as leader |
//! | `retry-period` | 2 s | interval of renewals and acquisition attempts |
//! | `lock` | `configmap` | where the leader lock lives: `configmap` (an annotation on the cluster ConfigMap, as Flink) or `lease` (a coordination.k8s.io/v1 Lease per election group; renewals leave the HA ConfigMaps alone) |
//!
//! `lease-duration ≥ renew-deadline > retry-period` is enforced (equal lease and deadline,
//! Flink's defaults, are accepted with a warning: no margin for clock-rate drift). Every API request is
//! bounded by `max(retry-period, renew-deadline / 2)`, which is below the deadline.

use std::path::PathBuf;
use std::time::Duration;

use ha_core::config::BackendOptions;
use ha_core::{Error, HaConfig, Result};

pub use crate::lock::LockKind;

/// Mode string of this backend.
pub const MODE: &str = "kubernetes";

/// Section-relative keys read by this backend.
pub(crate) const KEYS: &[&str] = &[
    "namespace",
    "kubeconfig",
    "context",
    "lease-duration",
    "renew-deadline",
    "retry-period",
    "lock",
];

/// Default lease duration (as client-go's examples and Flink).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default renew deadline.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Default retry period.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The three timings of the leader lock, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    /// Validity of a record that is not renewed, measured locally by each contender.
    pub lease_duration: Duration,
    /// A leader that has not renewed within this stops acting as leader.
    pub renew_deadline: Duration,
    /// Pause between renewals and between acquisition attempts.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self {
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }
}

impl LeaseTimings {
    /// Timings from the three durations; checks `lease ≥ deadline > retry > 0`.
    pub fn new(lease_duration: Duration, renew_deadline: Duration, retry_period: Duration) -> Result<Self> {
        let t = Self {
            lease_duration,
            renew_deadline,
            retry_period,
        };
        t.validate(&|k: &str| format!("high-availability.{MODE}.{k}"))?;
        Ok(t)
    }

    fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<()> {
        if self.retry_period.is_zero() {
            return Err(Error::config(key("retry-period"), "must be positive"));
        }
        if self.renew_deadline <= self.retry_period {
            return Err(Error::config(
                key("renew-deadline"),
                format!(
                    "must be greater than retry-period ({:?}), got {:?}",
                    self.retry_period, self.renew_deadline
                ),
            ));
        }
        if self.lease_duration < self.renew_deadline {
            return Err(Error::config(
                key("lease-duration"),
                format!(
                    "must be at least renew-deadline ({:?}), got {:?}",
                    self.renew_deadline, self.lease_duration
                ),
            ));
        }
        if self.lease_duration == self.renew_deadline {
            // Flink's defaults (15 s and 15 s). Still safe: a leader's validity ends
            // renew-deadline after it *sent* its last renewal, and no contender can
            // take over before lease-duration after it *saw* that renewal; but no
            // margin is left for clocks running at different rates.
            tracing::warn!(
                lease_duration = ?self.lease_duration,
                "{} equals {}: accepted as Flink does, but a renew deadline below the lease leaves a margin for clock-rate drift",
                key("renew-deadline"),
                key("lease-duration"),
            );
        }
        Ok(())
    }

    /// The bound on every API request: below the renew deadline, so a hung request
    /// cannot keep a leader acting past it.
    pub fn request_timeout(&self) -> Duration {
        self.retry_period.max(self.renew_deadline / 2)
    }
}

/// Typed `high-availability.kubernetes.*` configuration.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// Namespace of the HA ConfigMaps; `None`: the kubeconfig's (or `default`).
    pub namespace: Option<String>,
    /// Explicit kubeconfig file; `None`: kube's own loading (env, home, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; `None`: the current one.
    pub context: Option<String>,
    /// Leader lock timings.
    pub timings: LeaseTimings,
    /// Where the leader lock lives (`lock`).
    pub lock: LockKind,
}

// Hand-written so that a kubeconfig's contents never end up here; paths and names only.
impl std::fmt::Debug for KubernetesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesConfig")
            .field("namespace", &self.namespace)
            .field("kubeconfig", &self.kubeconfig)
            .field("context", &self.context)
            .field("timings", &self.timings)
            .field("lock", &self.lock)
            .finish()
    }
}

impl KubernetesConfig {
    /// Reads and validates the `high-availability.kubernetes.*` section of `config`.
    pub fn from_ha_config(config: &HaConfig) -> Result<Self> {
        Self::from_options(&config.backend_options())
    }

    /// Reads and validates a backend section; errors name the full key.
    pub fn from_options(opts: &BackendOptions<'_>) -> Result<Self> {
        let timings = LeaseTimings {
            lease_duration: opts.duration("lease-duration", DEFAULT_LEASE_DURATION)?,
            renew_deadline: opts.duration("renew-deadline", DEFAULT_RENEW_DEADLINE)?,
            retry_period: opts.duration("retry-period", DEFAULT_RETRY_PERIOD)?,
        };
        timings.validate(&|k: &str| opts.key(k))?;
        let namespace = opts.get("namespace").filter(|s| !s.is_empty()).map(str::to_string);
        if let Some(ns) = &namespace {
            let ok = ns.len() <= 63
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && ns.as_bytes()[0].is_ascii_alphanumeric()
                && ns.as_bytes()[ns.len() - 1].is_ascii_alphanumeric();
            if !ok {
                return Err(Error::config(
                    opts.key("namespace"),
                    format!("`{ns}` is not a valid namespace name (RFC 1123 label)"),
                ));
            }
        }
        Ok(Self {
            namespace,
            kubeconfig: opts.get("kubeconfig").filter(|s| !s.is_empty()).map(PathBuf::from),
            context: opts.get("context").filter(|s| !s.is_empty()).map(str::to_string),
            timings,
            lock: LockKind::from_options(opts)?,
        })
    }

    /// Builds the kube client configuration: the explicit kubeconfig if set, else
    /// kube's inference (`$KUBECONFIG` / `~/.kube/config`, then in-cluster).
    pub async fn client_config(&self) -> Result<kube::Config> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    Error::config(
                        format!("high-availability.{MODE}.kubeconfig"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| Error::config(format!("high-availability.{MODE}.kubeconfig"), e.to_string()))?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| Error::config(format!("high-availability.{MODE}.context"), e.to_string()))?,
            None => kube::Config::infer().await.map_err(|e| Error::Unavailable {
                what: "Kubernetes client configuration (no kubeconfig and not in a cluster)".into(),
                source: Some(Box::new(e)),
            })?,
        };
        Ok(config)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_ordered() {
        assert!(LeaseTimings::new(
            Duration::from_secs(2),
            Duration::from_secs(1),
            Duration::from_millis(200)
        )
        .is_ok());
        // Equal lease and deadline (Flink's defaults) are accepted; a shorter lease not.
        assert!(LeaseTimings::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_millis(200)
        )
        .is_ok());
        let e = LeaseTimings::new(
            Duration::from_millis(900),
            Duration::from_secs(1),
            Duration::from_millis(200),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("high-availability.kubernetes.lease-duration"), "{e}");
        let e = LeaseTimings::new(Duration::from_secs(3), Duration::from_secs(1), Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("renew-deadline"), "{e}");
        let t = LeaseTimings::default();
        assert!(t.request_timeout() < t.renew_deadline);
    }
}
