//! The leadership term as the core sees it: how a backend reports terms
//! ([`TermSink`]), how long a term is known to hold ([`Validity`]), and the registry a
//! backend's `close` uses to resign every candidacy ([`Candidacies`]).
//!
//! A backend never sends election events itself: it calls [`TermSink::grant`] and
//! [`TermSink::revoke`], and the sink enforces the event-order contract of
//! [`ElectionEvent`](super::ElectionEvent) for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ElectionEvent;
use crate::error::Error;
use crate::ids::Fence;

/// All validity deadlines are stored as nanoseconds since this process-wide instant.
fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(Instant::now)
}

fn to_nanos(t: Instant) -> u64 {
    t.saturating_duration_since(anchor())
        .as_nanos()
        .min(u64::MAX as u128 - 1) as u64
}

const UNBOUNDED: u64 = u64::MAX;

/// How long a term is known to hold: the local monotonic time until which no other
/// contender can have been granted (start of the last confirmed renewal + lease −
/// safety margin). Shared by every grant made from the same lease or session, and
/// extended by the backend after each successful renewal.
///
/// The core checks it whenever the application asks or writes, so a process resumed
/// after a pause longer than its lease stops acting at once, before any background
/// task had a chance to notice. Cheap to clone.
#[derive(Clone)]
pub struct Validity(Arc<AtomicU64>);

impl std::fmt::Debug for Validity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.valid_until() {
            None => f.write_str("Validity(unbounded)"),
            Some(t) => match t.checked_duration_since(Instant::now()) {
                Some(left) => write!(f, "Validity({left:?} left)"),
                None => f.write_str("Validity(expired)"),
            },
        }
    }
}

impl Validity {
    /// Valid until `until`.
    pub fn until(until: Instant) -> Self {
        Self(Arc::new(AtomicU64::new(to_nanos(until))))
    }

    /// Never expires locally: for backends whose every write is refused server-side
    /// once the term is gone and that have no lease to measure against.
    pub fn unbounded() -> Self {
        Self(Arc::new(AtomicU64::new(UNBOUNDED)))
    }

    /// Moves the deadline to `until` if that is later (after a renewal).
    pub fn extend(&self, until: Instant) {
        self.0.fetch_max(to_nanos(until), Ordering::SeqCst);
    }

    /// Ends validity now (the lease or session is known lost).
    pub fn expire(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    /// The deadline; `None` if unbounded.
    pub fn valid_until(&self) -> Option<Instant> {
        match self.0.load(Ordering::SeqCst) {
            UNBOUNDED => None,
            n => Some(anchor() + Duration::from_nanos(n)),
        }
    }

    /// Whether the term still holds now.
    pub fn is_valid(&self) -> bool {
        match self.0.load(Ordering::SeqCst) {
            UNBOUNDED => true,
            n => to_nanos(Instant::now()) < n,
        }
    }
}

impl Default for Validity {
    fn default() -> Self {
        Self::unbounded()
    }
}

// A fence compares by term identity; its validity is a view of the clock.
impl PartialEq for Validity {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Validity {}

impl std::hash::Hash for Validity {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

#[derive(Default)]
struct SinkState {
    granted: bool,
    resigned: bool,
}

struct SinkInner {
    tx: mpsc::UnboundedSender<ElectionEvent>,
    state: Mutex<SinkState>,
}

/// Where one candidacy reports its terms. Enforces the contract every backend would
/// otherwise re-implement: at most one `Granted` per term, `Revoked` only after a
/// grant, nothing after [`resign`](Self::resign). Cheap to clone; every clone is the
/// same candidacy.
#[derive(Clone)]
pub struct TermSink {
    inner: Arc<SinkInner>,
}

impl std::fmt::Debug for TermSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("TermSink")
            .field("granted", &s.granted)
            .field("resigned", &s.resigned)
            .finish()
    }
}

impl TermSink {
    /// A sink and the receiver its events go to (the election service's end).
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<ElectionEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Self {
            inner: Arc::new(SinkInner {
                tx,
                state: Mutex::default(),
            }),
        };
        (sink, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reports a new term with `fence`, valid as `validity` says. Ignored (returns
    /// `false`) while a term is granted or after resign.
    pub fn grant(&self, fence: Fence, validity: Validity) -> bool {
        self.grant_if(fence, validity, || true)
    }

    /// Like [`grant`](Self::grant), granting only if `still_valid` holds, checked
    /// atomically with the grant against a concurrent [`revoke`](Self::revoke) (e.g.
    /// "the session this term came from is still active").
    pub fn grant_if(&self, fence: Fence, validity: Validity, still_valid: impl FnOnce() -> bool) -> bool {
        let mut s = self.lock();
        if s.granted || s.resigned || !still_valid() {
            return false;
        }
        s.granted = true;
        let _ = self
            .inner
            .tx
            .send(ElectionEvent::Granted(fence.with_validity(validity)));
        true
    }

    /// Applies an event another sink reported, keeping the contract: lets a wrapping
    /// backend sit between an inner driver and the service (give the inner driver a
    /// sink of its own, forward what it reports here). A grant keeps the validity its
    /// fence carries. Returns whether the event was passed on.
    pub fn report(&self, event: ElectionEvent) -> bool {
        match event {
            ElectionEvent::Granted(fence) => {
                let mut s = self.lock();
                if s.granted || s.resigned {
                    return false;
                }
                s.granted = true;
                self.inner.tx.send(ElectionEvent::Granted(fence)).is_ok()
            }
            ElectionEvent::Revoked => self.revoke(),
            ElectionEvent::Error(e) => {
                let resigned = self.lock().resigned;
                self.fail(e);
                !resigned
            }
        }
    }

    /// Ends the current term, if one is granted. Returns whether it did.
    pub fn revoke(&self) -> bool {
        let mut s = self.lock();
        if !s.granted || s.resigned {
            return false;
        }
        s.granted = false;
        let _ = self.inner.tx.send(ElectionEvent::Revoked);
        true
    }

    /// Reports an error the backend cannot recover from; the service treats it as the
    /// end of the term (and reports it). Nothing after resign.
    pub fn fail(&self, error: Error) {
        let mut s = self.lock();
        if s.resigned {
            return;
        }
        s.granted = false;
        let _ = self.inner.tx.send(ElectionEvent::Error(error));
    }

    /// Silences the sink for good: the candidacy left the election.
    pub fn resign(&self) {
        let mut s = self.lock();
        s.resigned = true;
        s.granted = false;
    }

    /// Whether a term is granted now.
    pub fn is_granted(&self) -> bool {
        self.lock().granted
    }

    /// Whether the candidacy resigned or its service is gone (nobody listens).
    pub fn is_closed(&self) -> bool {
        self.lock().resigned || self.inner.tx.is_closed()
    }
}

/// The live candidacies of one backend instance, so that `close` can resign them all.
/// Holds them weakly: a dropped candidacy leaves by itself.
#[derive(Debug)]
pub struct Candidacies<T>(Mutex<Vec<Weak<T>>>);

impl<T> Default for Candidacies<T> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<T> Candidacies<T> {
    /// Remembers `candidacy`.
    pub fn add(&self, candidacy: &Arc<T>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(candidacy));
    }

    /// Every candidacy still alive.
    pub fn live(&self) -> Vec<Arc<T>> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    }

    /// Takes every candidacy still alive, leaving none (for `close`).
    pub fn take_all(&self) -> Vec<Arc<T>> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *all).iter().filter_map(Weak::upgrade).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Epoch;

    fn fence(n: u64) -> Fence {
        Fence::new(Epoch(n), format!("t{n}"))
    }

    #[tokio::test]
    async fn one_grant_per_term_and_silence_after_resign() {
        let (sink, mut rx) = TermSink::channel();
        assert!(!sink.revoke(), "no revoke before a grant");
        assert!(sink.grant(fence(1), Validity::unbounded()));
        assert!(!sink.grant(fence(2), Validity::unbounded()), "second grant in one term");
        assert!(sink.revoke());
        assert!(!sink.revoke(), "one revoke per term");
        assert!(sink.grant(fence(3), Validity::unbounded()));
        sink.resign();
        assert!(!sink.revoke() && !sink.grant(fence(4), Validity::unbounded()));
        sink.fail(Error::closed("x"));
        drop(sink);
        let mut got = Vec::new();
        while let Some(e) = rx.recv().await {
            got.push(match e {
                ElectionEvent::Granted(f) => format!("granted {}", f.epoch.0),
                ElectionEvent::Revoked => "revoked".into(),
                ElectionEvent::Error(_) => "error".into(),
            });
        }
        assert_eq!(got, vec!["granted 1", "revoked", "granted 3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn validity_ends_at_its_deadline_and_extends() {
        let v = Validity::until(Instant::now() + Duration::from_secs(2));
        assert!(v.is_valid());
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(v.is_valid());
        v.extend(Instant::now() + Duration::from_secs(1));
        v.extend(Instant::now());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(v.is_valid(), "an earlier extend never shortens it");
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!v.is_valid());
        assert!(Validity::unbounded().is_valid() && Validity::unbounded().valid_until().is_none());
        let e = Validity::until(Instant::now() + Duration::from_secs(5));
        e.expire();
        assert!(!e.is_valid());
    }
}
