//! Fault injection for the Kubernetes API emulator: latency, injected errors, lost
//! replies, delayed requests, dropped watches and a fully unavailable server.

use std::sync::Mutex;
use std::time::Duration;

#[derive(Default, Debug)]
struct State {
    latency: Duration,
    fail_next: u32,
    fail_status: u16,
    lose_next: u32,
    /// Only requests whose path or body contain this lose their replies.
    lose_matching: Option<String>,
    unavailable: bool,
    /// The next request with this method whose path or body contains the fragment is
    /// held this long before it is served.
    delay_next: Option<(String, String, Duration)>,
    /// Requests held so far by [`KubeFaults::delay_next`].
    delayed: u32,
}

/// What the emulator does to the next request, decided by [`KubeFaults`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve normally.
    Serve,
    /// Answer with this status code without touching state.
    Fail(u16),
    /// Apply the request, then close the connection without a reply.
    LoseReply,
}

/// Switches for the faults of one emulator, shared by all its connections. Every
/// switch takes effect on the next request.
#[derive(Default, Debug)]
pub struct KubeFaults {
    state: Mutex<State>,
}

impl KubeFaults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delays every request (and the start of every watch) by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// The current added latency.
    pub fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// The next `n` non-watch requests fail with `status` (e.g. 500, 503, 429) and a
    /// Status body, changing nothing.
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut s = self.lock();
        s.fail_next = n;
        s.fail_status = status;
    }

    /// The next `n` mutating requests are applied but their replies are lost (the
    /// connection is closed), as when a network fails after sending.
    pub fn lose_next_replies(&self, n: u32) {
        let mut s = self.lock();
        s.lose_next = n;
        s.lose_matching = None;
    }

    /// Like [`lose_next_replies`](Self::lose_next_replies), for the next `n` mutating
    /// requests whose path or body contains `fragment` (e.g. an object name), so that
    /// background traffic does not consume the fault.
    pub fn lose_next_replies_to(&self, n: u32, fragment: &str) {
        let mut s = self.lock();
        s.lose_next = n;
        s.lose_matching = Some(fragment.to_string());
    }

    /// While `true`, every request gets 503 and new watches are refused; setting it
    /// also ends the open watches.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Whether the server is marked unavailable.
    pub fn is_unavailable(&self) -> bool {
        self.lock().unavailable
    }

    /// Holds the next request with HTTP `method` (e.g. `GET`, `POST`) whose path or
    /// body contains `fragment` for `delay` before serving it, as an API server that
    /// serves a request late. A held create (`POST`) is applied even if the client
    /// has closed the connection by then, as the API server applies a request the
    /// client gave up on.
    pub fn delay_next(&self, method: &str, fragment: &str, delay: Duration) {
        self.lock().delay_next = Some((method.to_ascii_uppercase(), fragment.to_string(), delay));
    }

    /// [`delay_next`](Self::delay_next) for the next create (`POST`).
    pub fn delay_next_create(&self, fragment: &str, delay: Duration) {
        self.delay_next("POST", fragment, delay);
    }

    /// How many requests [`delay_next`](Self::delay_next) has held so far.
    pub fn delayed_requests(&self) -> u32 {
        self.lock().delayed
    }

    /// Clears every fault.
    pub fn reset(&self) {
        *self.lock() = State::default();
    }

    /// The delay to hold a request for, consuming the switch if it matches.
    pub(crate) fn request_delay(&self, method: &str, matches: &dyn Fn(&str) -> bool) -> Option<Duration> {
        let mut s = self.lock();
        let delay = match &s.delay_next {
            Some((m, fragment, delay)) if m == method && matches(fragment) => *delay,
            _ => return None,
        };
        s.delay_next = None;
        s.delayed += 1;
        Some(delay)
    }

    pub(crate) fn verdict(&self, mutating: bool, watch: bool, matches: &dyn Fn(&str) -> bool) -> Verdict {
        let mut s = self.lock();
        if s.unavailable {
            return Verdict::Fail(503);
        }
        if !watch && s.fail_next > 0 {
            s.fail_next -= 1;
            return Verdict::Fail(s.fail_status);
        }
        if mutating && s.lose_next > 0 && s.lose_matching.as_deref().is_none_or(matches) {
            s.lose_next -= 1;
            return Verdict::LoseReply;
        }
        Verdict::Serve
    }
}
