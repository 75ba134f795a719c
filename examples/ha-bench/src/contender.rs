//! The ha-rs contender process (`ha-bench contender`, hidden): one ha-rs "JobManager"
//! contending for the dispatcher's leadership, or a retriever of its leader, speaking
//! the line protocol of [`crate::procs`] so that ha-rs is driven exactly like its peers.

use std::convert::Infallible;

use ha_core::{ClusterId, ComponentId, HaServices, LeaderElection, DEFAULT_ELECTION_GROUP};

use crate::procs::{address, Role};
use crate::systems::{Endpoints, Kind};
use crate::BoxResult;

/// The component every system contends for.
const COMPONENT: &str = "dispatcher";

/// Prints one protocol line and flushes.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Resolves once stdin says `close` (or ends).
pub(crate) async fn close_requested() {
    let _ = tokio::task::spawn_blocking(|| {
        for line in std::io::stdin().lines() {
            match line {
                Ok(l) if l.trim() == "close" => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// Confirms `me` on every grant (having submitted `jobs` jobs in the first term), until
/// an error.
async fn lead(ha: &HaServices, election: &mut LeaderElection, me: &str, mut jobs: usize) -> BoxResult<Infallible> {
    loop {
        let grant = election.granted().await?;
        tracing::debug!(me, "granted");
        say(&format!("GRANTED {me}"));
        election.confirm(&grant, me).await?;
        tracing::debug!(me, "confirmed");
        if jobs > 0 {
            crate::failover::submit_jobs(ha, &grant.fence, jobs).await?;
            jobs = 0;
        }
        say(&format!("LEADER {me}"));
        election.revoked(&grant).await?;
        say("NOT_LEADER");
    }
}

/// Runs one process until told to close; a crash is the driver's SIGKILL. A contender
/// with `jobs` > 0 submits that many jobs once granted, before saying `LEADER`.
pub(crate) async fn run(
    endpoints: &Endpoints,
    kind: Kind,
    cluster: &str,
    id: &str,
    role: Role,
    jobs: usize,
) -> BoxResult<()> {
    let cluster = ClusterId::new(cluster)?;
    let component = ComponentId::new(COMPONENT)?;
    let process = endpoints.connect(kind, &cluster).await?;
    match role {
        Role::Retriever => {
            let retrieval = process.ha.leader_retrieval_service(&component).await?;
            let mut rx = retrieval.subscribe();
            say("READY");
            let watch = async {
                loop {
                    if let Some(info) = rx.borrow_and_update().clone() {
                        tracing::debug!(address = %info.address, "retrieved");
                        say(&format!("ADDR {}", info.address));
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            };
            tokio::select! {
                () = watch => {}
                () = close_requested() => {}
            }
            drop(retrieval);
            process.ha.close().await?;
        }
        Role::Contender => {
            let svc = process.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
            let mut election = svc.register(component)?;
            say("READY");
            let me = address(id);
            tokio::select! {
                r = lead(&process.ha, &mut election, &me, jobs) => match r? {},
                () = close_requested() => {}
            }
            tracing::debug!(me, "close requested");
            svc.close().await?;
            tracing::debug!(me, "election service closed");
            process.ha.close().await?;
        }
    }
    say("CLOSED");
    Ok(())
}
