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
    crate::error::within(limit, wait).await
}

/// The name prefix of every node created for `uuid`.
pub(crate) fn uuid_prefix(uuid: &str) -> String {
    format!("{LATCH_PREFIX}{uuid}-latch-")
}

/// Every node of `uuid` under `dir` owned by this client's session, lowest first.
pub(crate) async fn own_nodes(client: &zk::Client, dir: &str, uuid: &str) -> Result<Vec<LatchNode>, zk::Error> {
    let prefix = uuid_prefix(uuid);
    let children = match client.list_children(dir).await {
        Ok(c) => c,
        Err(zk::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in ordered(children).into_iter().filter(|n| n.starts_with(&prefix)) {
        let path = format!("{dir}/{name}");
        let Some(stat) = client.check_stat(&path).await? else {
            continue;
        };
        if stat.ephemeral_owner == client.session_id().0 {
            out.push(LatchNode {
                path,
                name,
                czxid: stat.czxid,
                adopted: true,
            });
        }
    }
    Ok(out)
}

/// Finds the node of `uuid` under `dir` owned by this client's session. A create
/// whose reply was lost can land late, after a retry created another node of the same
/// uuid: the lowest is kept and the others are deleted, so one candidacy never holds
/// two places in line.
pub(crate) async fn find_own(client: &zk::Client, dir: &str, uuid: &str) -> Result<Option<LatchNode>, zk::Error> {
    let mut nodes = own_nodes(client, dir, uuid).await?.into_iter();
    let first = nodes.next();
    for extra in nodes {
        tracing::info!(path = %extra.path, "deleting duplicate latch node of a retried create");
        match client.delete(&extra.path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(first)
}

/// Deletes every node of `uuid` (leaving the election with that term). The uuid is
/// unique to one term of one candidacy, so every such node is ours — also one left by
/// a previous session of ours that the server has not expired yet: deleting it lets
/// the next candidate lead at once instead of after the old session's timeout.
pub(crate) async fn retire(client: &zk::Client, dir: &str, uuid: &str) -> Result<(), zk::Error> {
    let prefix = uuid_prefix(uuid);
    let children = match client.list_children(dir).await {
        Ok(c) => c,
        Err(zk::Error::NoNode) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in children.into_iter().filter(|n| n.starts_with(&prefix)) {
        match client.delete(&format!("{dir}/{name}"), None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates the latch node of `uuid` under `dir` (creating `dir` if needed). After a
/// connection loss it adopts the node if the lost create landed, and creates it
/// otherwise; so at most one node per uuid ever exists.
pub(crate) async fn create_latch_node(
    sessions_or_client: LatchClient<'_>,
    dir: &str,
    uuid: &str,
) -> Result<LatchNode, zk::Error> {
    let (client, ephemeral, persistent, limit, data) = sessions_or_client.parts();
    let prefix = format!("{dir}/{}", uuid_prefix(uuid));
    for _ in 0..16 {
        let err = match crate::error::within(limit, client.create(&prefix, &data, &ephemeral)).await {
            Ok((stat, seq)) => {
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
            Err(e) => e,
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

/// What [`create_latch_node`] needs: a client, ACL options, a request bound and the
/// node's data (the candidacy's instance id).
pub(crate) struct LatchClient<'a> {
    pub(crate) client: &'a zk::Client,
    pub(crate) ephemeral: zk::CreateOptions<'static>,
    pub(crate) persistent: zk::CreateOptions<'static>,
    pub(crate) limit: Duration,
    pub(crate) data: Vec<u8>,
}

impl<'a> LatchClient<'a> {
    pub(crate) fn new(sessions: &Sessions, client: &'a zk::Client) -> Self {
        Self {
            client,
            ephemeral: sessions.create_options(zk::CreateMode::EphemeralSequential),
            persistent: sessions.create_options(zk::CreateMode::Persistent),
            limit: sessions.request_timeout(client),
            data: Vec::new(),
        }
    }

    /// The node carries `id` (the participant id listed for it).
    pub(crate) fn with_id(mut self, id: &str) -> Self {
        self.data = id.as_bytes().to_vec();
        self
    }

    /// Open ACLs and the given request bound.
    #[cfg(test)]
    pub(crate) fn open(client: &'a zk::Client, limit: Duration) -> Self {
        Self {
            client,
            ephemeral: zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
            persistent: zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            limit,
            data: Vec::new(),
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
        Vec<u8>,
    ) {
        (self.client, self.ephemeral, self.persistent, self.limit, self.data)
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

    /// The create request reaches the frozen server, the client gives up on the
    /// connection, the server thaws and applies the create: the reply is lost. The
    /// retry either adopts that node or, if it lands only after the retry looked,
    /// the duplicate is removed by `find_own` (which the candidacy runs on every
    /// listing): one node per candidacy, never an orphan.
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
        let mut states = client.state_watcher();
        let disconnected =
            tokio::spawn(async move { while states.changed().await != zk::SessionState::Disconnected {} });
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
        tokio::time::timeout(Duration::from_secs(1), disconnected)
            .await
            .expect("the create's connection was lost")
            .unwrap();
        // Let a late landing of the lost create happen, then look as the candidacy does.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let kept = find_own(&client, dir, &uuid).await.unwrap().expect("own node");
        let own = own_nodes(&client, dir, &uuid).await.unwrap();
        assert_eq!(own.len(), 1, "exactly one latch node of this candidacy: {own:?}");
        let all = client.list_children(dir).await.unwrap();
        assert_eq!(all, vec![kept.name.clone()], "no orphan latch node");
        assert!(kept.czxid <= node.czxid, "the lowest node is kept");
        let stat = client.check_stat(&kept.path).await.unwrap().expect("node exists");
        assert_eq!(stat.ephemeral_owner, client.session_id().0);
    }

    /// Two nodes of one uuid (a late-landing lost create next to its retry): the lowest
    /// is kept, the other deleted; `retire` removes them all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duplicates_of_one_candidacy_are_collapsed() {
        let zk = ha_testkit::ZooKeeperServer::start().expect("start ZooKeeper");
        let client = client(&zk).await;
        let dir = "/dups/leader/latch/cluster";
        let open = || LatchClient::open(&client, Duration::from_secs(5));
        let first = create_latch_node(open(), dir, "same").await.unwrap();
        let other = create_latch_node(open(), dir, "other").await.unwrap();
        let second = create_latch_node(open(), dir, "same").await.unwrap();
        assert_eq!(own_nodes(&client, dir, "same").await.unwrap().len(), 2);
        let kept = find_own(&client, dir, "same").await.unwrap().unwrap();
        assert_eq!(kept.path, first.path);
        let left = ordered(own_nodes_names(&client, dir).await);
        assert_eq!(left, vec![first.name.clone(), other.name.clone()]);
        assert!(client.check_stat(&second.path).await.unwrap().is_none());
        retire(&client, dir, "same").await.unwrap();
        assert_eq!(own_nodes_names(&client, dir).await, vec![other.name]);
    }

    async fn own_nodes_names(client: &zk::Client, dir: &str) -> Vec<String> {
        client.list_children(dir).await.unwrap()
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
