//! Published leader information: `leader/<component>/connection_info` (JSON), written
//! with fenced multis and read raw (decoding is the services').

use bytes::Bytes;
use ha_core::{ComponentId, Error, Fence, LeaderInformation, Result};
use zookeeper_client as zk;

use crate::backend::Shared;
use crate::error::write_error;
use crate::fenced::MultiFailure;

impl Shared {
    /// Reads a `connection_info` node raw; `None` if absent.
    pub(crate) async fn read_leader_record(&self, path: &str) -> Result<Option<Bytes>> {
        self.sessions
            .read(path, |c| async move {
                match c.get_data(path).await {
                    Ok((data, _)) => Ok(Some(Bytes::from(data))),
                    Err(zk::Error::NoNode) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// Publishes `info` for `component`: set, or create (with parents) if absent;
    /// fenced either way. The first write tried is the one likely to succeed: a set
    /// if this instance wrote the node last, else a create of the component's node
    /// and the record (the state a graceful hand-over leaves); a refused guess costs
    /// one more round trip.
    pub(crate) async fn publish_leader_information(
        &self,
        fence: &Fence,
        component: &ComponentId,
        info: &LeaderInformation,
    ) -> Result<()> {
        #[derive(Clone, Copy)]
        enum Try {
            Set,
            Create,
            CreateWithParent,
        }
        let path = self.layout.leader_info(component);
        let dir = crate::layout::parent(&path).to_string();
        let data = info.to_json();
        let persistent = self.sessions.create_options(zk::CreateMode::Persistent);
        let op = "publish leader information";
        let mut next = if self.published_hint(&path) {
            Try::Set
        } else {
            Try::CreateWithParent
        };
        for _ in 0..8 {
            let r = self
                .sessions
                .fenced_multi(fence, op, &path, |w| match next {
                    Try::Set => w.add_set_data(&path, &data, None),
                    Try::Create => w.add_create(&path, &data, &persistent),
                    Try::CreateWithParent => {
                        w.add_create(&dir, &[], &persistent)?;
                        w.add_create(&path, &data, &persistent)
                    }
                })
                .await;
            next = match (next, r) {
                (_, Ok(_)) => {
                    self.set_published_hint(&path, true);
                    return Ok(());
                }
                (
                    Try::Set,
                    Err(MultiFailure::Op {
                        error: zk::Error::NoNode,
                        ..
                    }),
                ) => Try::Create,
                (
                    Try::Create,
                    Err(MultiFailure::Op {
                        error: zk::Error::NodeExists,
                        ..
                    }),
                ) => Try::Set,
                (
                    Try::Create,
                    Err(MultiFailure::Op {
                        error: zk::Error::NoNode,
                        ..
                    }),
                ) => Try::CreateWithParent,
                // The component's node exists: most likely with the record in it.
                (
                    Try::CreateWithParent,
                    Err(MultiFailure::Op {
                        error: zk::Error::NodeExists,
                        ..
                    }),
                ) => Try::Set,
                (
                    Try::CreateWithParent,
                    Err(MultiFailure::Op {
                        error: zk::Error::NoNode,
                        ..
                    }),
                ) => {
                    self.sessions.ensure_parents(&dir).await?;
                    Try::CreateWithParent
                }
                (_, Err(f)) => {
                    self.set_published_hint(&path, false);
                    return Err(f.into_error(fence, op, &path, |_, e| write_error(op, &path, e)));
                }
            };
        }
        self.set_published_hint(&path, false);
        Err(Error::unavailable(
            format!("ZooKeeper for {op} on {path}"),
            "node kept changing",
        ))
    }

    /// Whether this instance wrote the leader-information node `path` last.
    fn published_hint(&self, path: &str) -> bool {
        self.published.lock().unwrap_or_else(|e| e.into_inner()).contains(path)
    }

    pub(crate) fn set_published_hint(&self, path: &str, written: bool) {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if written {
            published.insert(path.to_string());
        } else {
            published.remove(path);
        }
    }

    /// Deletes `component`'s record (and its then empty node), fenced.
    pub(crate) async fn delete_leader_information(&self, fence: &Fence, component: &ComponentId) -> Result<()> {
        let inner = self;
        let path = inner.layout.leader_info(component);
        let dir = crate::layout::parent(&path).to_string();
        let op = "delete leader information";
        self.set_published_hint(&path, false);
        // Delete the component's node with it when nothing else is in there.
        let r = inner
            .sessions
            .fenced_multi(fence, op, &path, |w| {
                w.add_delete(&path, None)?;
                w.add_delete(&dir, None)
            })
            .await;
        let r = match r {
            Err(MultiFailure::Op { .. }) => {
                inner
                    .sessions
                    .fenced_multi(fence, op, &path, |w| w.add_delete(&path, None))
                    .await
            }
            other => other,
        };
        match r {
            Ok(_)
            | Err(MultiFailure::Op {
                error: zk::Error::NoNode,
                ..
            }) => Ok(()),
            Err(f) => Err(f.into_error(fence, op, &path, |_, e| write_error(op, &path, e))),
        }
    }
}
