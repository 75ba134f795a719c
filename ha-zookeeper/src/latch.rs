//! Latch nodes: creating one safely, finding our own, and ordering candidates.
//!
//! A candidacy is an ephemeral-sequential node `_c_<uuid>-latch-<seq>` (Curator's
//! "protected" naming). The uuid is fresh per node, so when a create's reply is lost
//! to a connection loss we can tell whether it landed: after reconnecting we look for
//! a child with our uuid owned by our session, and adopt it instead of creating a
//! second node that would sit in the election forever (an orphan that blocks nobody
//! while our session lives, but elects a dead candidacy once it leads).

use std::time::Duration;

use zookeeper_client as zk;

use crate::error::{is_session_gone, is_transient};
use crate::session::Sessions;

/// Name prefix of latch nodes (before the uuid).
pub(crate) const LATCH_PREFIX: &str = "_c_";

/// A latch node this session owns.
#[derive(Clone, Debug)]
pub(crate) struct LatchNode {
    /// Absolute path.
    pub(crate) path: String,
    /// Node name (last path segment).
    pub(crate) name: String,
    /// Creation zxid: the term's epoch if this node leads.
    pub(crate) czxid: i64,
    /// Whether the node was found after a lost create reply rather than created.
    pub(crate) adopted: bool,
}

/// The sequence number of latch node `name`, `None` if it is no latch node.
pub(crate) fn sequence(name: &str) -> Option<i64> {
    if !name.starts_with(LATCH_PREFIX) {
        return None;
    }
    let (_, seq) = name.rsplit_once("-latch-")?;
    seq.parse().ok()
}

/// Latch node names sorted by sequence (lowest, i.e. the leader, first).
pub(crate) fn ordered(children: Vec<String>) -> Vec<String> {
    let mut latch: Vec<(i64, String)> = children
        .into_iter()
        .filter_map(|n| sequence(&n).map(|s| (s, n)))
        .collect();
    latch.sort();
    latch.into_iter().map(|(_, n)| n).collect()
}

/// Waits until `client` is connected again; `Err` if its session ended.
pub(crate) async fn wait_connected(client: &zk::Client, limit: Duration) -> Result<(), zk::Error> {
    let mut watcher = client.state_watcher();
    let wait = async {
        loop {
            let state = client.state();
            if state.is_terminated() {
                return Err(zk::Error::SessionExpired);
            }
            if matches!(
                state,
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly
            ) {
                return Ok(());
            }
            watcher.changed().await;
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .unwrap_or(Err(zk::Error::Timeout))
}

/// Finds the node of `uuid` under `dir` owned by this client's session.
pub(crate) async fn find_own(client: &zk::Client, dir: &str, uuid: &str) -> Result<Option<LatchNode>, zk::Error> {
    let prefix = format!("{LATCH_PREFIX}{uuid}-latch-");
    let children = match client.list_children(dir).await {
        Ok(c) => c,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut found: Option<LatchNode> = None;
    for name in ordered(children).into_iter().filter(|n| n.starts_with(&prefix)) {
        let path = format!("{dir}/{name}");
        let Some(stat) = client.check_stat(&path).await? else {
            continue;
        };
        if stat.ephemeral_owner != client.session_id().0 {
            continue;
        }
        if found.is_some() {
            // Never expected (one create per uuid succeeds at most once per try), but
            // an extra node of ours must not linger in the election.
            let _ = client.delete(&path, None).await;
            continue;
        }
        found = Some(LatchNode {
            path,
            name,
            czxid: stat.czxid,
            adopted: true,
        });
    }
    Ok(found)
}

/// Creates the latch node of `uuid` under `dir` (creating `dir` if needed). After a
/// connection loss it adopts the node if the lost create landed, and creates it
/// otherwise; so at most one node per uuid ever exists.
pub(crate) async fn create_latch_node(
    sessions_or_client: LatchClient<'_>,
    dir: &str,
    uuid: &str,
) -> Result<LatchNode, zk::Error> {
    let (client, ephemeral, persistent, limit) = sessions_or_client.parts();
    let prefix = format!("{dir}/{LATCH_PREFIX}{uuid}-latch-");
    for _ in 0..16 {
        let err = match tokio::time::timeout(limit, client.create(&prefix, &[], &ephemeral)).await {
            Ok(Ok((stat, seq))) => {
                let path = format!("{prefix}{seq}");
                let name = path.rsplit('/').next().unwrap_or_default().to_string();
                let czxid = if stat.czxid > 0 {
                    stat.czxid
                } else {
                    client.check_stat(&path).await?.map_or(0, |s| s.czxid)
                };
                return Ok(LatchNode {
                    path,
                    name,
                    czxid,
                    adopted: false,
                });
            }
            Ok(Err(e)) => e,
            Err(_) => zk::Error::Timeout,
        };
        match err {
            zk::Error::NoNode => match client.mkdir(dir, &persistent).await {
                Ok(()) | Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(e),
            },
            e if is_session_gone(&e) => return Err(e),
            e if is_transient(&e) => {
                tracing::info!(%dir, error = %e, "latch node create lost its reply; checking whether it landed");
                wait_connected(client, limit).await?;
                if let Some(node) = find_own(client, dir, uuid).await? {
                    tracing::info!(path = %node.path, "adopted latch node whose create reply was lost");
                    return Ok(node);
                }
            }
            e => return Err(e),
        }
    }
    Err(zk::Error::Timeout)
}

/// What [`create_latch_node`] needs: a client, ACL options and a request bound.
pub(crate) struct LatchClient<'a> {
    pub(crate) client: &'a zk::Client,
    pub(crate) ephemeral: zk::CreateOptions<'static>,
    pub(crate) persistent: zk::CreateOptions<'static>,
    pub(crate) limit: Duration,
}

impl<'a> LatchClient<'a> {
    pub(crate) fn new(sessions: &Sessions, client: &'a zk::Client) -> Self {
        Self {
            client,
            ephemeral: sessions.create_options(zk::CreateMode::EphemeralSequential),
            persistent: sessions.create_options(zk::CreateMode::Persistent),
            limit: sessions.request_timeout(client),
        }
    }

    /// Open ACLs and the given request bound.
    #[cfg(test)]
    pub(crate) fn open(client: &'a zk::Client, limit: Duration) -> Self {
        Self {
            client,
            ephemeral: zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
            persistent: zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            limit,
        }
    }

    #[allow(clippy::type_complexity)]
    fn parts(
        self,
    ) -> (
        &'a zk::Client,
        zk::CreateOptions<'static>,
        zk::CreateOptions<'static>,
        Duration,
    ) {
        (self.client, self.ephemeral, self.persistent, self.limit)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn client(zk: &ha_testkit::ZooKeeperServer) -> zk::Client {
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .with_connection_timeout(Duration::from_secs(1))
            .connect(&zk.connect_string())
            .await
            .expect("connect")
    }

    async fn own_nodes(client: &zk::Client, dir: &str, uuid: &str) -> Vec<String> {
        let children = client.list_children(dir).await.expect("list latch dir");
        children
            .into_iter()
            .filter(|c| c.starts_with(&format!("{LATCH_PREFIX}{uuid}-")))
            .collect()
    }

    /// The create request reaches the frozen server, the client gives up on the
    /// connection, the server thaws and applies the create: the reply is lost. The
    /// retry must adopt that node, not leave it as an orphan next to a second one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_retried_after_connection_loss_leaves_no_orphan() {
        let zk = ha_testkit::ZooKeeperServer::start().expect("start ZooKeeper");
        let client = client(&zk).await;
        let dir = "/orphan-test/leader/latch/cluster";
        client
            .mkdir(dir, &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
            .await
            .unwrap();
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        zk.pause(0).unwrap();
        let create = {
            let (client, uuid) = (client.clone(), uuid.clone());
            tokio::spawn(async move {
                create_latch_node(LatchClient::open(&client, Duration::from_secs(20)), dir, &uuid).await
            })
        };
        // Longer than the connection timeout: the client drops the connection with
        // the create unanswered.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        zk.resume(0).unwrap();
        let node = create.await.unwrap().expect("create succeeds after reconnecting");
        assert!(node.adopted, "the lost create landed and must be adopted: {node:?}");
        let own = own_nodes(&client, dir, &uuid).await;
        assert_eq!(own, vec![node.name.clone()], "exactly one latch node of this candidacy");
        let all = client.list_children(dir).await.unwrap();
        assert_eq!(all.len(), 1, "no orphan latch node: {all:?}");
        let stat = client.check_stat(&node.path).await.unwrap().expect("node exists");
        assert_eq!(stat.ephemeral_owner, client.session_id().0);
        assert_eq!(stat.czxid, node.czxid);
    }

    /// Without a fault the node is simply created, and a second candidacy queues
    /// behind it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_without_fault_is_not_adopted_and_orders_by_sequence() {
        let zk = ha_testkit::ZooKeeperServer::start().expect("start ZooKeeper");
        let client = client(&zk).await;
        let dir = "/plain/leader/latch/cluster";
        let a = create_latch_node(LatchClient::open(&client, Duration::from_secs(5)), dir, "a")
            .await
            .unwrap();
        let b = create_latch_node(LatchClient::open(&client, Duration::from_secs(5)), dir, "b")
            .await
            .unwrap();
        assert!(!a.adopted && !b.adopted);
        assert!(b.czxid > a.czxid);
        let order = ordered(client.list_children(dir).await.unwrap());
        assert_eq!(order, vec![a.name, b.name]);
    }

    #[test]
    fn orders_by_sequence_and_ignores_foreign_children() {
        let names = vec![
            "_c_b-latch-0000000010".to_string(),
            "connection_info".to_string(),
            "_c_a-latch-0000000002".to_string(),
            "_c_c-latch-0000000009".to_string(),
        ];
        assert_eq!(
            ordered(names),
            vec![
                "_c_a-latch-0000000002",
                "_c_c-latch-0000000009",
                "_c_b-latch-0000000010"
            ]
        );
        assert_eq!(sequence("_c_x-latch-0000000042"), Some(42));
        assert_eq!(sequence("latch-1"), None);
    }
}
