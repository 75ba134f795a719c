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
    /// fenced either way.
    pub(crate) async fn publish_leader_information(
        &self,
        fence: &Fence,
        component: &ComponentId,
        info: &LeaderInformation,
    ) -> Result<()> {
        let inner = self;
        let path = inner.layout.leader_info(component);
        let data = info.to_json();
        let persistent = inner.sessions.create_options(zk::CreateMode::Persistent);
        let op = "publish leader information";
        for _ in 0..6 {
            let r = inner
                .sessions
                .fenced_multi(fence, op, &path, |w| w.add_set_data(&path, &data, None))
                .await;
            match r {
                Ok(_) => return Ok(()),
                Err(MultiFailure::Op {
                    error: zk::Error::NoNode,
                    ..
                }) => {}
                Err(f) => return Err(f.into_error(fence, op, &path, |_, e| write_error(op, &path, e))),
            }
            let r = inner
                .sessions
                .fenced_multi(fence, op, &path, |w| w.add_create(&path, &data, &persistent))
                .await;
            match r {
                Ok(_) => return Ok(()),
                Err(MultiFailure::Op {
                    error: zk::Error::NoNode,
                    ..
                }) => inner.sessions.ensure_parents(&path).await?,
                Err(MultiFailure::Op {
                    error: zk::Error::NodeExists,
                    ..
                }) => {}
                Err(f) => return Err(f.into_error(fence, op, &path, |_, e| write_error(op, &path, e))),
            }
        }
        Err(Error::unavailable(
            format!("ZooKeeper for {op} on {path}"),
            "node kept changing",
        ))
    }

    /// Deletes `component`'s record (and its then empty node), fenced.
    pub(crate) async fn delete_leader_information(&self, fence: &Fence, component: &ComponentId) -> Result<()> {
        let inner = self;
        let path = inner.layout.leader_info(component);
        let dir = crate::layout::parent(&path).to_string();
        let op = "delete leader information";
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
