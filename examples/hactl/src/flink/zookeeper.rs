//! Flink's HA layout on ZooKeeper, under `<path.root>/<cluster-id>` (default
//! `/flink/default`): `leader/latch/_c_<uuid>-latch-<seq>` (the leader latch),
//! `leader/<component>/connection_info` (address + session id), `execution-plans/<job>`
//! (Flink 1.x: `jobgraphs/<job>`), `jobs/<job>/checkpoints/<%019d id>` and
//! `jobs/<job>/checkpoint_id_counter` (Flink 1.x: `checkpoints/<job>/<id>`,
//! `checkpoint-counter/<job>`). Ephemeral `locks` children mark entries a live
//! JobManager holds.

use std::collections::BTreeMap;
use std::time::Duration;

use ha_core::config::KEY_CLUSTER_ID;
use ha_core::{Error, HaConfig, Result};
use zookeeper_client as zk;

use super::handles::{self, StateHandle};
use super::results::{finished_orphan, ResultStore};
use super::{external_pointer, is_job_id, Checkpoint, FlinkStatus, Holder, Job, Leader, Orphan};

/// Flink's default `high-availability.zookeeper.path.root`.
const FLINK_ROOT: &str = "/flink";
const ROOT_KEY: &str = "high-availability.zookeeper.path.root";

/// A connection to the ZooKeeper ensemble of a Flink cluster.
pub(crate) struct FlinkZooKeeper {
    client: zk::Client,
    quorum: String,
    /// `<root>/<cluster-id>`.
    base: String,
    cluster_id: String,
    results: ResultStore,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::unavailable(what.to_string(), e.to_string())
}

impl FlinkZooKeeper {
    /// Connects with the config's quorum and digest credentials; `cluster_id` (as
    /// given on the command line) or the config's names the cluster.
    pub(crate) async fn connect(config: &HaConfig, cluster_id: Option<&str>) -> Result<Self> {
        let o = config.backend_options();
        if o.get("client.tls.ca-cert").is_some() {
            return Err(Error::config(
                o.key("client.tls.ca-cert"),
                "TLS is not supported by hactl --flink",
            ));
        }
        let quorum = o.required("quorum")?.to_string();
        let session_timeout = o.duration("client.session-timeout", Duration::from_secs(60))?;
        let connection_timeout = o.duration("client.connection-timeout", Duration::from_secs(15))?;
        let digest_auth = o.get("client.digest-auth").filter(|s| !s.is_empty());
        let root = config.get(ROOT_KEY).unwrap_or(FLINK_ROOT).trim().trim_end_matches('/');
        let root = if root.is_empty() || root.starts_with('/') {
            root.to_string()
        } else {
            format!("/{root}")
        };
        let mut connector = zk::Client::connector().with_session_timeout(session_timeout);
        if let Some(auth) = digest_auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        let what = format!("ZooKeeper at {quorum}");
        let client = tokio::time::timeout(connection_timeout, connector.connect(&quorum))
            .await
            .map_err(|_| unavailable(&what, "no session"))?
            .map_err(|e| unavailable(&what, e))?;
        let cluster_id = match cluster_id {
            Some(id) => id.trim().trim_matches('/').to_string(),
            None => {
                let wanted = config.cluster_id().to_string();
                let children = match client.list_children(if root.is_empty() { "/" } else { &root }).await {
                    Ok(c) => c,
                    Err(zk::Error::NoNode) => Vec::new(),
                    Err(e) => return Err(unavailable(&what, e)),
                };
                // ha-rs maps Flink's `/cluster_one` to `cluster-one`: find the znode.
                children
                    .iter()
                    .find(|c| **c == wanted)
                    .or_else(|| children.iter().find(|c| c.replace('_', "-") == wanted))
                    .cloned()
                    .unwrap_or(wanted)
            }
        };
        if cluster_id.is_empty() {
            return Err(Error::config(KEY_CLUSTER_ID, "is empty"));
        }
        Ok(Self {
            client,
            quorum,
            base: format!("{root}/{cluster_id}"),
            results: ResultStore::new(config, &cluster_id),
            cluster_id,
        })
    }

    fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.base)
    }

    async fn children(&self, path: &str) -> Result<Vec<String>> {
        match self.client.list_children(path).await {
            Ok(mut c) => {
                c.sort();
                Ok(c)
            }
            Err(zk::Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(unavailable(&format!("ZooKeeper read of {path}"), e)),
        }
    }

    async fn data(&self, path: &str) -> Result<Option<(Vec<u8>, zk::Stat)>> {
        match self.client.get_data(path).await {
            Ok(d) => Ok(Some(d)),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(unavailable(&format!("ZooKeeper read of {path}"), e)),
        }
    }

    /// Whether any node under `path` is ephemeral (a live session's lock).
    async fn has_live_lock(&self, path: &str) -> Result<bool> {
        let mut stack = vec![path.to_string()];
        while let Some(p) = stack.pop() {
            if self.data(&p).await?.is_some_and(|(_, stat)| stat.ephemeral_owner != 0) {
                return Ok(true);
            }
            for c in self.children(&p).await? {
                stack.push(format!("{p}/{c}"));
            }
        }
        Ok(false)
    }

    async fn handle(&self, path: &str, errors: &mut Vec<String>) -> Result<Option<StateHandle>> {
        let Some((bytes, _)) = self.data(path).await? else {
            return Ok(None);
        };
        match handles::state_handle(path, &bytes) {
            Ok(h) => Ok(Some(h)),
            Err(e) => {
                errors.push(e.to_string());
                Ok(None)
            }
        }
    }

    /// Reads the whole cluster.
    pub(crate) async fn status(&self) -> Result<FlinkStatus> {
        let mut errors = Vec::new();
        let latch = self.path("leader/latch");
        let mut participants = Vec::new();
        for name in self.children(&latch).await? {
            let seq = name.rsplit('-').next().unwrap_or("").to_string();
            participants.push((seq, name));
        }
        participants.sort();
        let holder = match participants.first() {
            Some((_, name)) => {
                let stat = self.data(&format!("{latch}/{name}")).await?.map(|(_, s)| s);
                Some(Holder {
                    identity: match &stat {
                        Some(s) => format!("{name} (session {:#x})", s.ephemeral_owner),
                        None => name.clone(),
                    },
                    renew_time: stat
                        .and_then(|s| jiff::Timestamp::from_millisecond(s.ctime).ok().map(|t| t.to_string())),
                    lease_duration: None,
                })
            }
            None => None,
        };
        let leader_running = holder.is_some();

        let mut leaders = Vec::new();
        let mut orphans = Vec::new();
        for component in self.children(&self.path("leader")).await? {
            if component == "latch" {
                continue;
            }
            let key = self.path(&format!("leader/{component}/connection_info"));
            let info = match self.data(&key).await? {
                Some((bytes, _)) if !bytes.is_empty() => match handles::zookeeper_leader(&key, &bytes) {
                    Ok(i) => Some(i),
                    Err(e) => {
                        errors.push(e.to_string());
                        None
                    }
                },
                _ => None,
            };
            if !leader_running {
                orphans.push(Orphan {
                    key: self.path(&format!("leader/{component}")),
                    reason: "no running leader (the leader latch is empty)".into(),
                    kept: None,
                });
            }
            leaders.push(Leader { component, key, info });
        }

        let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
        for dir in ["execution-plans", "jobgraphs"] {
            for id in self.children(&self.path(dir)).await? {
                if !is_job_id(&id) {
                    continue;
                }
                let plan = self.handle(&self.path(&format!("{dir}/{id}")), &mut errors).await?;
                let job = jobs.entry(id.clone()).or_insert_with(|| Job::new(&id));
                job.execution_plan = job.execution_plan.take().or(plan);
            }
        }
        let with_plan: Vec<String> = jobs.keys().cloned().collect();
        // (job dir, checkpoints dir, counter znode) in Flink 2.x and 1.x layouts.
        let mut job_dirs = Vec::new();
        for id in self.children(&self.path("jobs")).await? {
            job_dirs.push((
                id.clone(),
                self.path(&format!("jobs/{id}")),
                self.path(&format!("jobs/{id}/checkpoints")),
                self.path(&format!("jobs/{id}/checkpoint_id_counter")),
            ));
        }
        for id in self.children(&self.path("checkpoints")).await? {
            job_dirs.push((
                id.clone(),
                self.path(&format!("checkpoints/{id}")),
                self.path(&format!("checkpoints/{id}")),
                self.path(&format!("checkpoint-counter/{id}")),
            ));
        }
        let mut job_records = Vec::new();
        for (id, dir, checkpoints_dir, counter_path) in job_dirs {
            let mut checkpoints = Vec::new();
            for name in self.children(&checkpoints_dir).await? {
                let Ok(cid) = name.parse::<u64>() else { continue };
                let key = format!("{checkpoints_dir}/{name}");
                let handle = self.handle(&key, &mut errors).await?;
                let external_pointer = handle.as_ref().and_then(external_pointer);
                checkpoints.push(Checkpoint {
                    id: cid,
                    key,
                    handle,
                    external_pointer,
                });
            }
            let counter = match self.data(&counter_path).await? {
                Some((bytes, _)) => match handles::zookeeper_counter(&counter_path, &bytes) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors.push(e.to_string());
                        None
                    }
                },
                None => None,
            };
            let job = jobs.entry(id.clone()).or_insert_with(|| Job::new(&id));
            job.checkpoints.extend(checkpoints);
            job.checkpoints.sort_by_key(|c| c.id);
            job.counter = job.counter.or(counter);
            job_records.push((id, dir, counter_path));
        }
        let ids: Vec<String> = jobs.keys().cloned().collect();
        let results = self.results.read(&ids, &mut errors);
        for (id, result) in &results {
            if let Some(job) = jobs.get_mut(id) {
                job.result = Some(result.clone());
            }
            let mut keys = Vec::new();
            for dir in ["execution-plans", "jobgraphs"] {
                keys.push(self.path(&format!("{dir}/{id}")));
            }
            for (_, dir, counter_path) in job_records.iter().filter(|r| &r.0 == id) {
                keys.push(dir.clone());
                if !counter_path.starts_with(&format!("{dir}/")) {
                    keys.push(counter_path.clone());
                }
            }
            for key in keys {
                if self.data(&key).await?.is_none() || orphans.iter().any(|o: &Orphan| o.key == key) {
                    continue;
                }
                let mut orphan = finished_orphan(key.clone(), id, result, leader_running);
                if orphan.kept.is_none() && self.has_live_lock(&key).await? {
                    orphan.kept = Some("locked by a live ZooKeeper session (a running JobManager)".to_string());
                }
                orphans.push(orphan);
            }
        }
        for (id, dir, counter_path) in job_records {
            if with_plan.contains(&id) || results.contains_key(&id) {
                continue;
            }
            let job_leader = leaders
                .iter()
                .any(|l| l.component == format!("job-{id}") && l.info.is_some());
            let kept = if job_leader && leader_running {
                Some("its JobManager leader is running".to_string())
            } else if self.has_live_lock(&dir).await? {
                Some("locked by a live ZooKeeper session (a running JobManager)".to_string())
            } else {
                None
            };
            orphans.push(Orphan {
                key: dir.clone(),
                reason: format!("job {id} has no execution plan (finished, or its HA data leaked)"),
                kept,
            });
            if counter_path != format!("{dir}/checkpoint_id_counter") && self.data(&counter_path).await?.is_some() {
                orphans.push(Orphan {
                    key: counter_path.clone(),
                    reason: format!("job {id} has no execution plan"),
                    kept: None,
                });
            }
        }
        Ok(FlinkStatus {
            store: "zookeeper".into(),
            location: format!("{} {}", self.quorum, self.base),
            cluster_id: self.cluster_id.clone(),
            leader_running,
            holder,
            leaders,
            jobs: jobs.into_values().collect(),
            orphans,
            errors,
        })
    }

    /// Deletes every orphan of `seen` that is still an orphan cleanup may delete
    /// (checked again right before); returns how many were deleted.
    pub(crate) async fn cleanup(&self, seen: &FlinkStatus) -> Result<usize> {
        let mut deleted = 0;
        for orphan in seen.orphans.iter().filter(|o| o.kept.is_none()) {
            let now = self.status().await?;
            if !now.orphans.iter().any(|o| o.key == orphan.key && o.kept.is_none()) {
                println!("skipped {}: no longer an orphan", orphan.key);
                continue;
            }
            match self.delete_tree(&orphan.key).await {
                Ok(()) => {
                    println!("deleted {}", orphan.key);
                    deleted += 1;
                }
                Err(e) => println!("skipped {}: {e}", orphan.key),
            }
        }
        Ok(deleted)
    }

    /// Deletes `path` and everything under it, each node at the version read (a node
    /// that changed or gained a child in between stops the deletion).
    async fn delete_tree(&self, path: &str) -> Result<()> {
        let mut stack = vec![(path.to_string(), false)];
        while let Some((p, expanded)) = stack.pop() {
            if !expanded {
                stack.push((p.clone(), true));
                for c in self.children(&p).await? {
                    stack.push((format!("{p}/{c}"), false));
                }
                continue;
            }
            let Some((_, stat)) = self.data(&p).await? else {
                continue;
            };
            if stat.ephemeral_owner != 0 {
                return Err(Error::Other {
                    message: format!("{p} is held by a live session"),
                    source: None,
                });
            }
            match self.client.delete(&p, Some(stat.version)).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(unavailable(&format!("ZooKeeper delete of {p}"), e)),
            }
        }
        Ok(())
    }
}
