//! Peer: etcd's own election API (`v3election` Campaign/Observe/Resign) through
//! `etcd-client`, one process per contender and a retriever process, driven like ha-rs
//! and the JVM peers ([`crate::procs`]). The campaign value is the address, so a won
//! campaign is a confirmed leader; the retriever observes the election. Graceful =
//! resign and revoke the lease; crash = SIGKILL (the lease expires after its TTL).
//!
//! With `proclaim`, a contender campaigns with a value that is not its address and, once
//! it won, proclaims its address with a fresh term id (a write fenced by its leader key)
//! before it says `LEADER`: the work ha-rs's `confirm` does after a grant, which the
//! plain peer does not need since its campaign value (its address) was written before
//! it led.

use std::time::Duration;

use etcd_client::{Client, ProclaimOptions, ResignOptions};
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::procs::{self, address, Role, Samples};
use crate::systems::Endpoints;
use crate::{contender, BoxResult, Budget};

/// A lease kept alive every TTL/3 until the task is aborted.
async fn kept_lease(client: &Client, ttl: Duration) -> BoxResult<(i64, JoinHandle<()>)> {
    let mut c = client.clone();
    let lease = c.lease_grant(ttl.as_secs().max(1) as i64, None).await?;
    let id = lease.id();
    let period = Duration::from_secs(lease.ttl().max(1) as u64) / 3;
    let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
    let task = tokio::spawn(async move {
        loop {
            if keeper.keep_alive().await.is_err() || !matches!(stream.message().await, Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(period).await;
        }
    });
    Ok((id, task))
}

/// One process (`ha-bench etcd-election`): campaigns for `name` as `id`, or observes it.
pub(crate) async fn run(endpoints: &Endpoints, name: &str, id: &str, role: Role, proclaim: bool) -> BoxResult<()> {
    let mut client = Client::connect(endpoints.etcd_endpoints()?, None).await?;
    match role {
        Role::Retriever => {
            // The observe call returns with the first leader, so it runs inside the watch.
            contender::say("READY");
            let watch = async {
                let Ok(mut stream) = client.observe(name).await else {
                    return;
                };
                while let Ok(Some(resp)) = stream.message().await {
                    if let Some(kv) = resp.kv() {
                        contender::say(&format!("ADDR {}", String::from_utf8_lossy(kv.value())));
                    }
                }
            };
            tokio::select! {
                () = watch => {}
                () = contender::close_requested() => {}
            }
        }
        Role::Contender => {
            let (lease, keep) = kept_lease(&client, endpoints.ttl()).await?;
            let me = address(id);
            contender::say("READY");
            // One stdin reader for the whole process: it is polled in both waits.
            let close = contender::close_requested();
            tokio::pin!(close);
            // The proclaiming variant publishes its address only once it won, as ha-rs
            // does: its campaign value is not the address, so an observer cannot see it
            // earlier.
            let value = if proclaim {
                format!("candidate {me}")
            } else {
                me.clone()
            };
            let mut c = client.clone();
            let won = tokio::select! {
                r = c.campaign(name, value.as_str(), lease) => Some(r?),
                () = &mut close => None,
            };
            if let Some(key) = won.and_then(|w| w.leader().cloned()) {
                tracing::debug!(me, "campaign won");
                if proclaim {
                    contender::say(&format!("GRANTED {me}"));
                    let term = ha_core::LeaderSessionId::random();
                    let options = ProclaimOptions::new().with_leader(key.clone());
                    client.proclaim(format!("{me} {term}"), Some(options)).await?;
                }
                contender::say(&format!("LEADER {me}"));
                (&mut close).await;
                tracing::debug!(me, "close requested");
                client.resign(Some(ResignOptions::new().with_leader(key))).await?;
            }
            keep.abort();
            let _ = client.lease_revoke(lease).await;
        }
    }
    contender::say("CLOSED");
    Ok(())
}

/// Up to `runs` hand-overs between election-API contender processes, watched by an
/// observing retriever process.
pub(crate) async fn measure(
    endpoints: &Endpoints,
    crash: bool,
    runs: usize,
    budget: Budget,
    proclaim: bool,
) -> BoxResult<Samples> {
    let name = format!("/ha-bench-election/{}", ha_core::ClusterId::random("e"));
    let spawn = |id: &str, role: Role| -> BoxResult<Command> {
        let mut cmd = endpoints.self_command(&["etcd-election", "--name", &name, "--id", id])?;
        cmd.args(["--role", role.name()]);
        if proclaim {
            cmd.arg("--proclaim");
        }
        Ok(cmd)
    };
    procs::measure(&spawn, endpoints.ttl(), crash, runs, budget).await
}
