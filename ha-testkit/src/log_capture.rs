//! `LogCapture`: every `tracing` event at TRACE level, of every crate, written as text
//! into a buffer, so a test can assert that no secret is ever logged.
//!
//! The capture is the calling thread's default subscriber while its guard lives: run
//! the test on a current-thread runtime (`#[tokio::test]`) so that spawned tasks —
//! the clients' connection tasks included — log on the same thread.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// A buffer that collects formatted `tracing` output (no colours, all span fields).
#[derive(Clone, Debug, Default)]
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
}

/// Appends to a [`LogCapture`]'s buffer.
#[derive(Debug)]
pub struct LogCaptureWriter {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl Write for LogCaptureWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = LogCaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogCaptureWriter { buf: self.buf.clone() }
    }
}

impl LogCapture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes this capture the thread's subscriber, at TRACE for every target, until
    /// the guard is dropped.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_target(true)
            .with_writer(self.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Number of captured lines (to show that the capture saw something).
    pub fn lines(&self) -> usize {
        self.text().lines().count()
    }

    /// Panics, naming the first offending line, if any of `secrets` was logged.
    pub fn assert_absent(&self, secrets: &[&str]) {
        let text = self.text();
        for secret in secrets {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                panic!("secret `{secret}` appears in the logs: {line}");
            }
        }
    }
}
