//! A contender running as its own process (`ha-demo --child NAME`), reporting what
//! it does as lines on stdout for the parent (`--processes`) to read:
//! `HA-DEMO <name> <event> <fields…>` with events `granted`, `resumed`, `ack`,
//! `fenced` and `lost`.

use std::time::Duration;

use bytes::Bytes;
use ha_core::{CompletedCheckpoint, ComponentId, Error, HaConfig, HaServices, JobGraph, JobId, DEFAULT_ELECTION_GROUP};

fn say(name: &str, line: std::fmt::Arguments<'_>) {
    println!("HA-DEMO {name} {line}");
}

/// Runs as contender `name` of `job` until killed.
pub(crate) async fn run(name: &str, config: &HaConfig, job: &JobId, interval: Duration) -> ha_core::Result<()> {
    let ha = HaServices::from_config(config).await?;
    let election = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut e = election.register(ComponentId::new("dispatcher")?)?;
    crate::health::register(name, &election);
    let graphs = ha.job_graph_store().await?;
    let store = ha.completed_checkpoint_store(job).await?;
    let counter = ha.checkpoint_id_counter(job).await?;
    loop {
        let grant = e.granted().await?;
        let epoch = grant.epoch.0;
        say(name, format_args!("granted epoch={epoch}"));
        let fence = &grant.fence;
        let term: ha_core::Result<()> = async {
            e.confirm(&grant, &format!("{name}.local:8081")).await?;
            if graphs.recover_job_graph(job).await?.is_none() {
                graphs
                    .put_job_graph(
                        fence,
                        &JobGraph {
                            job_id: job.clone(),
                            data: Bytes::from_static(b"demo"),
                        },
                    )
                    .await?;
            }
            let recovered = store.recover(fence).await?;
            say(
                name,
                format_args!(
                    "resumed id={} epoch={epoch}",
                    recovered.latest().map_or(0, |c| c.checkpoint_id)
                ),
            );
            loop {
                // Like a real job, the loop does not ask whether it still leads before
                // writing: a process resumed after SIGSTOP writes with its old fence.
                tokio::time::sleep(interval).await;
                let id = counter.get_and_increment(fence).await?;
                let cp = CompletedCheckpoint {
                    job_id: job.clone(),
                    checkpoint_id: id,
                    data: Bytes::from(format!("state {id}")),
                };
                store.add_checkpoint(fence, cp).await?;
                say(name, format_args!("ack id={id} epoch={epoch}"));
            }
        }
        .await;
        match term {
            Err(Error::NotLeader { key, .. }) => say(name, format_args!("fenced epoch={epoch} key={key}")),
            Err(err) => say(name, format_args!("error epoch={epoch} {err}")),
            Ok(()) => {}
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), e.revoked(&grant)).await;
        say(name, format_args!("lost epoch={epoch}"));
    }
}
