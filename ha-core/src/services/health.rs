//! Leader health for liveness probes, in the spirit of client-go's `HealthzAdaptor`
//! (kubernetes#70819): a process whose leadership term ran out without being revoked
//! is wedged (its renewals stopped, or its event handling is stuck) and should be
//! restarted; a standby is healthy while it still contends and reaches the backend.
//!
//! | state | healthy | meaning |
//! |---|---|---|
//! | [`LeaderHealth::Leading`] | yes | granted, within the term's validity or past it by at most the tolerance |
//! | [`LeaderHealth::Standby`] | yes | contending, not leading (and, for [`LeaderHealthCheck::check`], the backend answered) |
//! | [`LeaderHealth::Wedged`] | no | still holding a term that ran out more than the tolerance ago |
//! | [`LeaderHealth::NotContending`] | no | the service was closed or dropped, or its election driver stopped or failed |
//! | [`LeaderHealth::Disconnected`] | no | a standby whose backend did not answer within the bound |
//!
//! The tolerance (config key `high-availability.health.tolerance`, default 5 s) covers
//! the time between the end of a term and the backend's revocation reaching the
//! service; client-go's controller manager uses 20 s.

use std::fmt;
use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use super::election::Inner;
use crate::driver::StoreNamespace;
use crate::ids::Epoch;

/// This process's leadership health in one election group.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum LeaderHealth {
    /// Leading; `valid_for` is the time left of the term (`None`: the backend sets no
    /// local bound; zero: ran out, but within the tolerance).
    Leading {
        /// The term's epoch.
        epoch: Epoch,
        /// Time left of the term's validity.
        valid_for: Option<Duration>,
    },
    /// Contending, not leading.
    Standby,
    /// Still holding a term that ran out `overdue` ago, more than the tolerance: its
    /// renewals stopped without a revocation reaching the service.
    Wedged {
        /// The term's epoch.
        epoch: Epoch,
        /// How long ago the term ran out.
        overdue: Duration,
    },
    /// Not contending any more.
    NotContending {
        /// Why.
        reason: String,
    },
    /// A standby whose backend did not answer.
    Disconnected {
        /// The error or timeout.
        error: String,
    },
}

impl LeaderHealth {
    /// Whether a liveness probe should pass.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Leading { .. } | Self::Standby)
    }
}

impl fmt::Display for LeaderHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Leading { epoch, valid_for: None } => write!(f, "leading (epoch {epoch})"),
            Self::Leading {
                epoch,
                valid_for: Some(left),
            } => write!(f, "leading (epoch {epoch}, term valid for {} ms)", left.as_millis()),
            Self::Standby => f.write_str("standby (contending)"),
            Self::Wedged { epoch, overdue } => write!(
                f,
                "wedged: the term of epoch {epoch} ran out {} ms ago and was not renewed or revoked",
                overdue.as_millis()
            ),
            Self::NotContending { reason } => write!(f, "not contending: {reason}"),
            Self::Disconnected { error } => write!(f, "disconnected: {error}"),
        }
    }
}

/// The health of one [`LeaderElectionService`](super::LeaderElectionService), for a
/// liveness endpoint; holds the service weakly (a dropped service reads
/// [`LeaderHealth::NotContending`]). Cheap to clone.
#[derive(Clone)]
pub struct LeaderHealthCheck {
    inner: Weak<Inner>,
    tolerance: Duration,
}

impl fmt::Debug for LeaderHealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderHealthCheck")
            .field("tolerance", &self.tolerance)
            .field("status", &self.status())
            .finish()
    }
}

impl LeaderHealthCheck {
    pub(super) fn new(inner: Weak<Inner>, tolerance: Duration) -> Self {
        Self { inner, tolerance }
    }

    /// How long past its validity an unrevoked term still reads healthy.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// The health now, from the service's state and the clock only (no I/O).
    pub fn status(&self) -> LeaderHealth {
        let Some(inner) = self.inner.upgrade() else {
            return LeaderHealth::NotContending {
                reason: "the leader election service is gone".into(),
            };
        };
        let s = inner.health_snapshot();
        if s.closed {
            return LeaderHealth::NotContending {
                reason: "the leader election service was closed".into(),
            };
        }
        if s.events_ended {
            return LeaderHealth::NotContending {
                reason: "the backend's election driver stopped".into(),
            };
        }
        if let Some(error) = s.driver_error {
            return LeaderHealth::NotContending {
                reason: format!("the election driver failed: {error}"),
            };
        }
        let Some(grant) = s.current else {
            return LeaderHealth::Standby;
        };
        let Some(until) = grant.valid_until() else {
            return LeaderHealth::Leading {
                epoch: grant.epoch,
                valid_for: None,
            };
        };
        let now = Instant::now();
        match now.checked_duration_since(until) {
            None => LeaderHealth::Leading {
                epoch: grant.epoch,
                valid_for: Some(until - now),
            },
            Some(overdue) if overdue <= self.tolerance => LeaderHealth::Leading {
                epoch: grant.epoch,
                valid_for: Some(Duration::ZERO),
            },
            Some(overdue) => LeaderHealth::Wedged {
                epoch: grant.epoch,
                overdue,
            },
        }
    }

    /// [`status`](Self::status), and for a standby one bounded read from the backend
    /// (a listing of the job graphs) to tell contending from cut off: no answer within
    /// `max(tolerance, 1 s)` is [`LeaderHealth::Disconnected`]. A leader is judged by its
    /// term alone, which its renewals keep valid.
    pub async fn check(&self) -> LeaderHealth {
        let status = self.status();
        if status != LeaderHealth::Standby {
            return status;
        }
        let Some(backend) = self.inner.upgrade().map(|i| i.backend()) else {
            return self.status();
        };
        let bound = self.tolerance.max(Duration::from_secs(1));
        let probe = async {
            backend
                .state_handle_store(&StoreNamespace::JobGraphs)
                .await?
                .list()
                .await
        };
        match tokio::time::timeout(bound, probe).await {
            Ok(Ok(_)) => self.status(),
            Ok(Err(e)) => LeaderHealth::Disconnected { error: e.to_string() },
            Err(_) => LeaderHealth::Disconnected {
                error: format!("the backend did not answer within {} ms", bound.as_millis()),
            },
        }
    }
}
