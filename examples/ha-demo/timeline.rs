//! A shared, printed timeline of what happened, with millisecond offsets.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Events with their offset from the start, printed as they happen.
#[derive(Clone)]
pub(crate) struct Timeline {
    start: Instant,
    quiet: bool,
    events: Arc<Mutex<Vec<(u128, String)>>>,
}

impl Timeline {
    pub(crate) fn new(quiet: bool) -> Self {
        Self {
            start: Instant::now(),
            quiet,
            events: Arc::default(),
        }
    }

    pub(crate) fn elapsed_ms(&self) -> u128 {
        self.start.elapsed().as_millis()
    }

    pub(crate) fn log(&self, what: impl Into<String>) {
        let what = what.into();
        let at = self.elapsed_ms();
        if !self.quiet {
            println!("[{at:>6} ms] {what}");
        }
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push((at, what));
    }
}
