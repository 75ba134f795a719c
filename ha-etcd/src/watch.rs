//! Resilient watches: a key (or prefix) followed across broken streams, server
//! restarts and compaction.
//!
//! [`follow`] first lists the current state (one `get`, revision `R`), then watches
//! from `R + 1`. When the stream breaks it resumes from the revision after the last
//! event it delivered, so no change is missed or repeated. When the resume revision has
//! been compacted away (the server cancels the watch with a `compact_revision`), the
//! changes in between are gone: it lists again and hands the caller a fresh snapshot.

use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};

use crate::error::rpc;

/// What a follower reports.
pub(crate) enum Update<'a> {
    /// The full current state (first, and after every compaction gap).
    Snapshot(&'a [KeyValue]),
    /// A key was written.
    Put(&'a KeyValue),
    /// A key was deleted.
    Delete,
}

/// Back-off between attempts while etcd is unreachable.
const RETRY: Duration = Duration::from_millis(100);

/// Follows `key` (a prefix if `prefix`) for ever, calling `on` for every update.
/// Ends only when the task running it is aborted. `resume` starts from that
/// revision instead of listing first (the listing happens if it was compacted).
pub(crate) async fn follow(
    client: Client,
    timeout: Duration,
    key: String,
    prefix: bool,
    resume: Option<i64>,
    mut on: impl FnMut(Update<'_>) + Send,
) {
    let mut next = resume;
    loop {
        let from = match next {
            Some(rev) => rev,
            None => {
                let mut kv = client.kv_client();
                let opts = prefix.then(|| GetOptions::new().with_prefix());
                match rpc(timeout, kv.get(key.clone(), opts)).await {
                    Ok(resp) => {
                        on(Update::Snapshot(resp.kvs()));
                        resp.header().map(|h| h.revision()).unwrap_or_default() + 1
                    }
                    Err(e) => {
                        tracing::debug!(%key, error = %e, "listing for watch failed; retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
            }
        };
        match watch_from(&client, timeout, &key, prefix, from, &mut on).await {
            WatchEnd::Compacted => {
                tracing::debug!(%key, from, "watch revision compacted; listing again");
                next = None;
            }
            WatchEnd::Broken(last) => {
                next = Some(last);
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

enum WatchEnd {
    /// The start revision is compacted: list again.
    Compacted,
    /// The stream broke; resume from this revision.
    Broken(i64),
}

async fn watch_from(
    client: &Client,
    timeout: Duration,
    key: &str,
    prefix: bool,
    from: i64,
    on: &mut (impl FnMut(Update<'_>) + Send),
) -> WatchEnd {
    let mut opts = WatchOptions::new().with_start_revision(from);
    if prefix {
        opts = opts.with_prefix();
    }
    let mut wc = client.watch_client();
    let mut stream = match rpc(timeout, wc.watch(key, Some(opts))).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%key, error = %e, "watch could not be opened; retrying");
            return WatchEnd::Broken(from);
        }
    };
    let mut next = from;
    loop {
        match stream.message().await {
            Ok(Some(resp)) => {
                if resp.canceled() {
                    if resp.compact_revision() > 0 {
                        return WatchEnd::Compacted;
                    }
                    return WatchEnd::Broken(next);
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    match ev.event_type() {
                        EventType::Put => on(Update::Put(kv)),
                        EventType::Delete => on(Update::Delete),
                    }
                    next = next.max(kv.mod_revision() + 1);
                }
            }
            Ok(None) | Err(_) => return WatchEnd::Broken(next),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use etcd_client::CompactionOptions;
    use ha_testkit::EtcdServer;

    use super::*;

    /// Resuming from a compacted revision lists again and goes on following.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compacted_resume_lists_again() {
        let server = EtcdServer::start().expect("start etcd");
        let mut client = Client::connect(server.endpoints(), None).await.unwrap();
        let first = client.put("/w/k", "v1", None).await.unwrap();
        let first_rev = first.header().unwrap().revision();
        client.put("/w/k", "v2", None).await.unwrap();
        let last = client.put("/w/k", "v3", None).await.unwrap();
        let last_rev = last.header().unwrap().revision();
        client
            .compact(last_rev, Some(CompactionOptions::new().with_physical()))
            .await
            .unwrap();

        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(follow(
            client.clone(),
            Duration::from_secs(2),
            "/w/k".into(),
            false,
            Some(first_rev + 1),
            move |u| {
                let entry = match u {
                    Update::Snapshot(kvs) => format!(
                        "snapshot:{}",
                        kvs.first()
                            .map(|kv| kv.value_str().unwrap_or("?").to_string())
                            .unwrap_or_default()
                    ),
                    Update::Put(kv) => format!("put:{}", kv.value_str().unwrap_or("?")),
                    Update::Delete => "delete".to_string(),
                };
                log.lock().unwrap().push(entry);
            },
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "no update after compaction");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        client.put("/w/k", "v4", None).await.unwrap();
        client.delete("/w/k", None).await.unwrap();
        while seen.lock().unwrap().len() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no updates after re-list: {:?}",
                seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        assert_eq!(*seen.lock().unwrap(), vec!["snapshot:v3", "put:v4", "delete"]);
    }
}
