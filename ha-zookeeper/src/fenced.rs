//! Fenced writes: one `multi` whose first operation checks that the writer's latch node
//! still exists.
//!
//! The latch node is ephemeral: it exists exactly as long as the leader's session and
//! candidacy, and while it exists it stays the lowest node of its election (nobody can
//! create a lower sequence number). So "the fence's latch node exists" is "the fence's
//! term still leads", and ZooKeeper checks it atomically with the write. A stale
//! leader's write fails on the check and changes nothing.

use ha_core::{Error, Fence, Result};
use zookeeper_client as zk;

use crate::error::{is_server_answer, is_session_gone, write_error};
use crate::session::Sessions;

/// How a fenced multi failed.
#[derive(Debug)]
pub(crate) enum MultiFailure {
    /// The fence check failed: the writer no longer leads. Nothing was applied.
    NotLeader,
    /// Operation `index` (of the caller's operations, the check not counted) was
    /// refused by the server. Nothing was applied.
    Op { index: usize, error: zk::Error },
    /// The request may or may not have been applied, or could not be sent.
    Other(Error),
}

impl MultiFailure {
    /// Converts into the caller-facing error with `op`/`key` context, mapping refused
    /// operations through `on_op`.
    pub(crate) fn into_error(
        self,
        fence: &Fence,
        op: &'static str,
        key: &str,
        on_op: impl FnOnce(usize, zk::Error) -> Error,
    ) -> Error {
        match self {
            MultiFailure::NotLeader => fence.rejected(key),
            MultiFailure::Op { index, error } => on_op(index, error),
            MultiFailure::Other(Error::OutcomeUnknown { source, .. }) => Error::OutcomeUnknown {
                op,
                key: key.to_string(),
                source,
            },
            MultiFailure::Other(e) => e,
        }
    }
}

/// Maps a refused operation with the default rules (no node → not found, …).
pub(crate) fn default_op_error<'a>(op: &'static str, key: &'a str) -> impl FnOnce(usize, zk::Error) -> Error + 'a {
    move |_, e| write_error(op, key, e)
}

impl Sessions {
    /// Commits `[check(fence.token), ops…]` as one transaction. `build` adds the
    /// caller's operations (it may run more than once: once per session tried).
    pub(crate) async fn fenced_multi(
        &self,
        fence: &Fence,
        op: &'static str,
        key: &str,
        build: impl Fn(&mut zk::MultiWriter<'_>) -> std::result::Result<(), zk::Error>,
    ) -> std::result::Result<Vec<zk::MultiWriteResult>, MultiFailure> {
        // A session known to be over cannot have sent anything: one retry on a fresh
        // session is safe (and then fails the check, since the old term's node went
        // with the old session).
        if !self.owns_fence_token(&fence.token) {
            return Err(MultiFailure::NotLeader);
        }
        for attempt in 0..2 {
            let live = self.live().await.map_err(MultiFailure::Other)?;
            let client = &live.client;
            let mut writer = client.new_multi_writer();
            if writer.add_check_version(&fence.token, -1).is_err() {
                // Not even a valid path: no term of ours.
                return Err(MultiFailure::NotLeader);
            }
            build(&mut writer).map_err(|e| MultiFailure::Other(write_error(op, key, e)))?;
            let limit = self.request_timeout(client);
            tracing::trace!(op, key, "fenced multi");
            let result = match ha_core::driver::kit::within(limit, writer.commit()).await {
                Ok(r) => r,
                Err(_) => return Err(MultiFailure::Other(write_error(op, key, zk::Error::Timeout))),
            };
            return match result {
                Ok(mut results) => {
                    if !results.is_empty() {
                        results.remove(0);
                    }
                    Ok(results)
                }
                Err(zk::MultiWriteError::OperationFailed { index: 0, source }) => match source {
                    zk::Error::NoNode | zk::Error::BadVersion => Err(MultiFailure::NotLeader),
                    other => Err(MultiFailure::Other(write_error(op, key, other))),
                },
                Err(zk::MultiWriteError::OperationFailed { index, source }) => Err(MultiFailure::Op {
                    index: index - 1,
                    error: source,
                }),
                Err(zk::MultiWriteError::RequestFailed { source }) => {
                    if attempt == 0 && is_session_gone(&source) && client.state().is_terminated() {
                        continue;
                    }
                    if is_server_answer(&source) {
                        Err(MultiFailure::Op {
                            index: 0,
                            error: source,
                        })
                    } else {
                        Err(MultiFailure::Other(write_error(op, key, source)))
                    }
                }
            };
        }
        Err(MultiFailure::Other(Error::unavailable(
            format!("ZooKeeper for {op} on {key}"),
            "session lost twice in a row",
        )))
    }

    /// Creates `path`'s missing ancestors (persistent, empty). Used after a fenced create
    /// failed on a missing parent, i.e. only by a writer whose fence held a moment ago.
    pub(crate) async fn ensure_parents(&self, path: &str) -> Result<()> {
        let parent = crate::layout::parent(path);
        if parent.is_empty() {
            return Ok(());
        }
        let options = self.create_options(zk::CreateMode::Persistent);
        self.read(parent, |c| {
            let options = options.clone();
            async move { c.mkdir(parent, &options).await }
        })
        .await
    }
}
