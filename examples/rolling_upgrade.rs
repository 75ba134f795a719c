//! A rolling upgrade's leadership move: three contenders in one process (each its own
//! backend instance, as three JobManagers would be), the leader hands leadership to a
//! named standby before "restarting", and the target is granted without waiting for a
//! lease. Meanwhile `hactl leaders` (from another shell, same config) shows the
//! leader and its standbys.
//!
//! ```text
//! cargo run --all-features --example rolling-upgrade -- --config etcd.yaml --hold-ms 5000
//! ```
//!
//! Prints the participants, then `handed off to ID: granted after T, epoch A -> B`,
//! then the participants again (the old leader contends again as a standby).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ha_core::{ComponentId, HaConfig, HaServices, Participant, DEFAULT_ELECTION_GROUP};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Hand leadership to a named standby, as before a rolling restart")]
struct Args {
    /// HA config file (.yaml/.yml/.toml); environment overrides apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// How long to pause before and after the hand-off (time to run `hactl`).
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
}

fn show(title: &str, participants: &[Participant]) {
    println!("{title}");
    for p in participants {
        println!("  {:<40} {}", p.id, if p.leader { "leader" } else { "standby" });
    }
}

async fn run(args: Args) -> ha_core::Result<()> {
    ha_examples::register_backends();
    let config = HaConfig::load(args.config.as_deref())?;
    let mut processes = Vec::new();
    for _ in 0..3 {
        let ha = HaServices::from_config(&config).await?;
        let service = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
        let election = service.register(ComponentId::new("dispatcher")?)?;
        processes.push((ha, service, election));
    }
    let (leader, grant) = loop {
        if let Some((i, g)) = processes
            .iter()
            .enumerate()
            .find_map(|(i, (_, _, e))| e.current().map(|g| (i, g)))
        {
            break (i, g);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    processes[leader]
        .2
        .confirm(&grant, "http://jobmanager-old:8081")
        .await?;
    let before = processes[leader].1.participants().await?;
    show("participants:", &before);
    tokio::time::sleep(Duration::from_millis(args.hold_ms)).await;

    // Move leadership to the last standby in line, off the node about to restart.
    let target = before
        .iter()
        .rev()
        .find(|p| !p.leader)
        .map(|p| p.id.clone())
        .ok_or_else(|| ha_core::Error::NotFound {
            key: "a standby to hand off to".into(),
        })?;
    let started = Instant::now();
    processes[leader].1.hand_off(&target).await?;
    let to = processes
        .iter()
        .position(|(ha, _, _)| ha.backend().instance_id() == target)
        .unwrap_or(leader);
    let new_grant = processes[to].2.granted().await?;
    println!(
        "handed off to {target}: granted after {:?}, epoch {} -> {}",
        started.elapsed(),
        grant.epoch.0,
        new_grant.epoch.0
    );
    processes[to]
        .2
        .confirm(&new_grant, "http://jobmanager-new:8081")
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    show("participants:", &processes[to].1.participants().await?);
    tokio::time::sleep(Duration::from_millis(args.hold_ms)).await;
    for (ha, service, _) in processes {
        service.close().await?;
        ha.close().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rolling-upgrade: {e}");
            ExitCode::from(2)
        }
    }
}
