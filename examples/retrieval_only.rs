//! A retrieval-only client: it never contends, it only follows who leads a component
//! and at which address (what Flink's TaskManagers and REST clients do with the
//! dispatcher and resource manager).
//!
//! ```text
//! cargo run --example retrieval-only
//! cargo run --features zookeeper --example retrieval-only -- --config zk.yaml --component dispatcher
//! ```
//!
//! On a shared backend it follows the real leaders until Ctrl-C. The embedded backend
//! lives inside one process, so there the example also starts two leaders that take
//! turns, and stops after `--changes` changes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ha_core::{ComponentId, HaConfig, HaServices, LeaderInformation, DEFAULT_ELECTION_GROUP};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Follow the leader of a component without contending")]
struct Args {
    /// HA config file (.yaml/.yml/.toml); environment overrides apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The component to follow.
    #[arg(long, default_value = "dispatcher")]
    component: String,
    /// Stop after this many changes [default: 4 on embedded, unlimited otherwise].
    #[arg(long)]
    changes: Option<usize>,
}

fn describe(leader: Option<&LeaderInformation>) -> String {
    match leader {
        Some(l) => format!("leader at {} (epoch {}, session {})", l.address, l.epoch, l.session_id),
        None => "no confirmed leader".to_string(),
    }
}

/// Two leaders on the in-process embedded backend that take turns, so that the
/// client has changes to follow.
async fn take_turns(config: HaConfig, component: ComponentId) -> ha_core::Result<()> {
    for round in 1u16.. {
        let ha = HaServices::from_config(&config).await?;
        let election = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
        let mut e = election.register(component.clone())?;
        let grant = e.granted().await?;
        e.confirm(&grant, &format!("http://10.0.0.{round}:8081")).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        election.close().await?;
        ha.close().await?;
    }
    Ok(())
}

async fn run(args: Args) -> ha_core::Result<()> {
    ha_examples::register_backends();
    let config = HaConfig::load(args.config.as_deref())?;
    let component = ComponentId::new(args.component)?;
    let embedded = config.mode() == "embedded";
    let limit = args.changes.or(embedded.then_some(4));
    if embedded {
        tokio::spawn(take_turns(config.clone(), component.clone()));
    }

    let ha = HaServices::from_config(&config).await?;
    let retrieval = ha.leader_retrieval_service(&component).await?;
    let mut changes = retrieval.subscribe();
    let mut last = changes.borrow_and_update().clone();
    println!("{component}: {}", describe(last.as_ref()));
    let mut seen = 0;
    while limit.is_none_or(|n| seen < n) {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
        let current = changes.borrow_and_update().clone();
        // A backend may re-send an unchanged record (e.g. after a reconnect).
        if current == last {
            continue;
        }
        println!("{component}: {}", describe(current.as_ref()));
        last = current;
        seen += 1;
    }
    ha.close().await
}

#[tokio::main]
async fn main() -> ExitCode {
    ha_examples::exit_code("retrieval-only", run(Args::parse()).await)
}
