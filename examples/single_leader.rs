//! Flink's YARN HA mode: one leader process and no standby. When the process dies, its
//! supervisor (YARN's ResourceManager restarting the ApplicationMaster; here, a shell
//! loop or a test) starts it again, and the new process resumes from the HA state on
//! ZooKeeper: the job graph, the latest completed checkpoint and the checkpoint-id
//! counter.
//!
//! ```text
//! cargo run --features zookeeper --example single-leader -- --config zk.yaml
//! ```
//!
//! With `zk.yaml` naming a ZooKeeper quorum, a fixed cluster-id and a storage
//! directory that outlives the process (created beforehand, `mkdir -p
//! /tmp/ha-single-leader`: a missing storage root is an error, never created), e.g.
//!
//! ```yaml
//! high-availability.type: zookeeper
//! high-availability.cluster-id: yarn-app-1
//! high-availability.storageDir: file:///tmp/ha-single-leader
//! high-availability.zookeeper.quorum: 127.0.0.1:2181
//! high-availability.zookeeper.client.session-timeout: 2 s
//! ```
//!
//! A restart after a crash waits for the dead process's ZooKeeper session to expire
//! (the session timeout) before it is granted leadership, because until then the old
//! process might still be writing; every write it makes after that is refused by its
//! fence.
//!
//! Prints one line per event: `granted epoch=E`, `job-graph submitted|recovered`,
//! `resumed checkpoint=K counter=C`, `checkpoint N acknowledged`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use ha_core::{CompletedCheckpoint, ComponentId, HaConfig, HaServices, JobGraph, JobId, DEFAULT_ELECTION_GROUP};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "A single leader process that resumes from HA state after a restart")]
struct Args {
    /// HA config file (.yaml/.yml/.toml); environment overrides apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The job this application runs.
    #[arg(long, default_value = "wordcount")]
    job: String,
    /// Checkpoint interval in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Address published for the leader (the ApplicationMaster's RPC endpoint).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    address: String,
}

async fn run(args: Args) -> ha_core::Result<()> {
    ha_examples::register_backends();
    let config = HaConfig::load(args.config.as_deref())?;
    let job = JobId::new(args.job)?;
    let ha = HaServices::from_config(&config).await?;
    println!(
        "waiting for leadership: mode={} cluster-id={}",
        config.mode(),
        config.cluster_id()
    );
    let election = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut dispatcher = election.register(ComponentId::new("dispatcher")?)?;
    let grant = dispatcher.granted().await?;
    let fence = &grant.fence;
    println!("granted epoch={}", grant.epoch.0);
    dispatcher.confirm(&grant, &args.address).await?;

    let graphs = ha.job_graph_store().await?;
    match graphs.recover_job_graph(&job).await? {
        Some(graph) => println!("job-graph recovered ({} bytes)", graph.data.len()),
        None => {
            let graph = JobGraph {
                job_id: job.clone(),
                data: Bytes::from_static(b"source -> tokenize -> count -> sink"),
            };
            graphs.put_job_graph(fence, &graph).await?;
            println!("job-graph submitted");
        }
    }
    let checkpoints = ha.completed_checkpoint_store(&job).await?;
    let counter = ha.checkpoint_id_counter(&job).await?;
    let recovered = checkpoints.recover(fence).await?;
    println!(
        "resumed checkpoint={} counter={}",
        recovered.latest().map_or(0, |c| c.checkpoint_id),
        counter.get().await?
    );

    let mut ticker = tokio::time::interval(Duration::from_millis(args.interval_ms));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = dispatcher.revoked(&grant) => {
                // No standby takes over: the supervisor restarts this process.
                println!("leadership lost; exiting for the supervisor to restart");
                return Ok(());
            }
        }
        let id = counter.get_and_increment(fence).await?;
        let checkpoint = CompletedCheckpoint {
            job_id: job.clone(),
            checkpoint_id: id,
            data: Bytes::from(format!("words counted up to offset {}", id * 1000)),
        };
        checkpoints.add_checkpoint(fence, checkpoint).await?;
        println!("checkpoint {id} acknowledged");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    ha_examples::exit_code("single-leader", run(Args::parse()).await)
}
