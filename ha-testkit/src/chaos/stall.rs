//! The `stall-write` fault: a leader passes every local check and sends a fenced
//! write, but its link stalls (the proxy holds the bytes: no drop, no reset) until a
//! newer term has read or written that job; then the held bytes are delivered, and the
//! backend's own fence must refuse them.
//!
//! The leader's process keeps running; its client gives up on the write within its
//! request timeout (below the lease), so the backend's answer is read at the proxy.

use std::time::{Duration, Instant};

use super::contender::Slot;
use super::history::{Event, History, Incarnation, OpKind};
use super::ChaosTarget;

/// One `stall-write` fault that caught a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StalledWrite {
    /// The writer.
    pub who: Incarnation,
    /// The epoch its write carried and the job it wrote (`None` if its operation was
    /// never recorded, e.g. because it was killed).
    pub write: Option<(u64, u32)>,
    /// Whether a newer term was granted before the held bytes were delivered.
    pub after_newer_grant: bool,
    /// Whether the backend accepted the delivered write (`None`: no answer read).
    pub accepted: Option<bool>,
    /// The first line of the backend's answer, as read at the proxy.
    pub reply: Option<String>,
}

impl StalledWrite {
    /// The fault's description.
    pub(super) fn describe(&self, slot: usize, held: Duration) -> String {
        let what = match self.write {
            Some((epoch, job)) => format!("epoch {epoch}, job {job}"),
            None => "unrecorded write".into(),
        };
        let verdict = match self.accepted {
            Some(true) => "ACCEPTED",
            Some(false) => "refused",
            None => "no verdict",
        };
        let reply = self.reply.as_deref().unwrap_or("no answer read");
        let when = if self.after_newer_grant {
            "after a newer grant"
        } else {
            "before any newer grant"
        };
        format!(
            "stall-write contender {slot} ({what}) held {} ms, delivered {when}: {verdict} ({reply})",
            held.as_millis()
        )
    }
}

/// Stalls the acting leader's link at its next write (see the module docs). A fault
/// may come while no contender leads, or while the leader is busy recovering its jobs
/// and reaches no write soon: the stall is tried again, for a few leases, until a
/// leader's write is held. `None` if none was (nothing was held).
pub(super) async fn stall_write<T: ChaosTarget>(
    slots: &[Slot<T>],
    history: &History,
    lease: Duration,
) -> Option<(usize, StalledWrite, Duration)> {
    let deadline = Instant::now() + lease * 4;
    loop {
        if let Some(stalled) = try_stall_write(slots, history, lease).await {
            return Some(stalled);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One try of [`stall_write`]: `None` if no contender leads now, or its next write
/// did not come within half a lease of the request or a lease of the arming.
async fn try_stall_write<T: ChaosTarget>(
    slots: &[Slot<T>],
    history: &History,
    lease: Duration,
) -> Option<(usize, StalledWrite, Duration)> {
    let slot = slots.iter().position(|s| s.is_leading())?;
    let link = slots[slot].request_stall(lease / 2).await?;
    let who = slots[slot].incarnation();
    let bound = lease * 5;
    let armed = Instant::now();
    let held_at = loop {
        if let Some(t) = link.stalled_at() {
            break t;
        }
        if armed.elapsed() > lease {
            // The leader sent no write (it lost its term or was stopped first).
            link.disarm_stall();
            link.heal();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The write in flight when the link stalled: recorded once its client gives up.
    let write = poll(held_at + bound, || {
        history.find_map(|e| match e {
            Event::Op {
                who: w,
                epoch,
                job,
                start,
                end,
                kind: OpKind::Counter(_) | OpKind::Checkpoint(_) | OpKind::JobGraph,
                ..
            } if *w == who && *start <= held_at && *end >= held_at => Some((*epoch, *job)),
            _ => None,
        })
    })
    .await;
    // Deliver once a newer term has read or written that job: then only the backend's
    // fence stands between the held write and the job's records.
    if let Some((epoch, job)) = write {
        poll(held_at + bound, || {
            history.find_map(|e| match e {
                Event::Recovered { epoch: n, job: j, .. } if *j == job && *n > epoch => Some(()),
                Event::Op {
                    epoch: n,
                    job: j,
                    outcome: super::Outcome::Ok,
                    ..
                } if *j == job && *n > epoch => Some(()),
                _ => None,
            })
        })
        .await;
    }
    let released = Instant::now();
    link.heal();
    let accepted = poll(released + Duration::from_secs(5), || link.stalled_write_accepted()).await;
    let after_newer_grant = write.is_some_and(|(epoch, _)| {
        history
            .find_map(|e| match e {
                Event::Granted { epoch: n, at, .. } if *n > epoch && *at <= released => Some(()),
                _ => None,
            })
            .is_some()
    });
    if let (Some((epoch, job)), Some(accepted)) = (write, accepted) {
        history.record(Event::LateDelivery {
            who,
            epoch,
            job,
            at: released,
            accepted,
        });
    }
    let stalled = StalledWrite {
        who,
        write,
        after_newer_grant,
        accepted,
        reply: link.stalled_reply(),
    };
    Some((slot, stalled, released.saturating_duration_since(held_at)))
}

/// Polls `f` every 10 ms until it gives `Some` or `deadline` passes.
async fn poll<R>(deadline: Instant, mut f: impl FnMut() -> Option<R>) -> Option<R> {
    loop {
        if let Some(r) = f() {
            return Some(r);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
