//! The raw leader-record stream a backend hands to the retrieval service, and the
//! helper that turns a backend's watch task into one.

use std::future::Future;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::mpsc;

/// The raw leader record of one component: the current value first (`None` when
/// absent), then every change. Dropping it stops the watch behind it.
pub type LeaderRecordStream = BoxStream<'static, Option<Bytes>>;

/// Where a backend's watch task sends raw records.
#[derive(Clone, Debug)]
pub struct RecordSender(mpsc::UnboundedSender<Option<Bytes>>);

impl RecordSender {
    /// Sends the record now stored (`None`: absent). Returns `false` once the stream
    /// was dropped: the watch task should end.
    pub fn send(&self, record: Option<Bytes>) -> bool {
        self.0.send(record).is_ok()
    }

    /// Completes when the stream was dropped.
    pub async fn closed(&self) {
        self.0.closed().await;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Builds a [`LeaderRecordStream`]: `current` is the value read at the call (sent
/// first), and `follow` runs as a task sending every later change until the stream
/// is dropped, which aborts it.
pub fn leader_record_stream<F, Fut>(current: Option<Bytes>, follow: F) -> LeaderRecordStream
where
    F: FnOnce(RecordSender) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(current);
    let task = AbortOnDrop(tokio::spawn(follow(RecordSender(tx))));
    stream::unfold((rx, task), |(mut rx, task)| async move {
        let next = rx.recv().await?;
        Some((next, (rx, task)))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn current_first_then_changes_and_the_task_ends_with_the_stream() {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let mut s = leader_record_stream(None, |tx| async move {
            tx.send(Some(Bytes::from_static(b"a")));
            tx.closed().await;
            let _ = done_tx.send(());
        });
        assert_eq!(s.next().await, Some(None));
        assert_eq!(s.next().await, Some(Some(Bytes::from_static(b"a"))));
        drop(s);
        // Aborted or finished: either way the sender side is gone.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), done_rx).await;
    }
}
