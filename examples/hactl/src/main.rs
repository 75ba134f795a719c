//! `hactl`: inspect and clean up the HA state of an ha-rs cluster on any backend.
//!
//! ```text
//! hactl --config ha.yaml status            leaders, jobs, checkpoints, counters, dirty results
//! hactl --config ha.yaml results [--dirty] job results (dirty: cleanup unfinished)
//! hactl --config ha.yaml leaders [--group G]… [--watch]
//!                                          leaders, each group's leader and standbys; live changes
//! hactl --config ha.yaml checkpoints JOB   ids, pointers, payload state
//! hactl --config ha.yaml inspect KEY       decode one entry (e.g. leader/dispatcher)
//! hactl --config ha.yaml cleanup --cluster-id C [--yes]
//! ```
//! `--json` prints machine-readable output; `hactl completions bash|zsh|fish|elvish|powershell`
//! prints a shell completion script.
//!
//! A Flink `flink-conf.yaml` / `config.yaml` works as `--config` unchanged (Flink keys
//! without a meaning here are reported as warnings on stderr).
//!
//! `hactl --flink --config flink-conf.yaml status|cleanup` reads (and cleans up) a
//! real Apache Flink cluster's own HA records on ZooKeeper or Kubernetes.
//!
//! Each backend client is a cargo feature (`zookeeper`, `etcd`, `kubernetes`, all on
//! by default); a mode that was left out is refused with the feature to turn on.

mod backends;
// Without a backend feature only the refusal of `--flink` is left of it.
#[cfg_attr(
    not(any(feature = "zookeeper", feature = "kubernetes")),
    allow(dead_code, unused_variables, unreachable_code)
)]
mod flink;
mod render;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ha_core::config::{KEY_CLUSTER_ID, KEY_STORAGE_DIR};
use ha_core::storage::StateStorage;
use ha_core::{inspect, BackendRegistry, ComponentId, HaConfig, HaServices, JobId};

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "hactl", version, about = "Inspect and clean up ha-rs HA state")]
struct Args {
    /// HA config file (.yaml/.yml/.toml); HA_* environment overrides apply.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Cluster-id to act on (overrides the config).
    #[arg(long, global = true)]
    cluster_id: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Act on a real Apache Flink cluster's own HA records (ZooKeeper or Kubernetes),
    /// read from its Flink configuration file: `status` and `cleanup` of orphans.
    #[arg(long, global = true)]
    flink: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Leader per component, jobs, latest checkpoints, counters.
    Status,
    /// Confirmed leaders and the contenders (leader and standbys) of election groups;
    /// with --watch, every change as it happens.
    Leaders {
        /// Keep running and print changes.
        #[arg(long)]
        watch: bool,
        /// Election group whose contenders to show (repeatable).
        #[arg(long = "group", default_value = ha_core::DEFAULT_ELECTION_GROUP)]
        groups: Vec<String>,
    },
    /// Job results: dirty (cleanup unfinished) and clean ones still kept.
    Results {
        /// Only the dirty ones.
        #[arg(long)]
        dirty: bool,
    },
    /// Checkpoints of a job with their pointers and payload state.
    Checkpoints {
        /// The job id.
        job: String,
    },
    /// Decode one entry: `leader/<component>`, `jobgraphs/<name>`, `job-results/<name>`,
    /// `jobs/<job>/checkpoints/<name>`.
    Inspect {
        /// The key.
        key: String,
    },
    /// Delete every HA record and payload of a cluster.
    Cleanup {
        /// Skip the confirmation prompt.
        #[arg(long)]
        yes: bool,
    },
    /// Print a completion script for SHELL, e.g. `hactl completions bash > ~/.local/share/bash-completion/completions/hactl`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn fail(message: impl std::fmt::Display) -> ha_core::Error {
    ha_core::Error::Other {
        message: message.to_string(),
        source: None,
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> ha_core::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(fail)?;
    println!("{text}");
    Ok(())
}

async fn run(args: Args) -> ha_core::Result<()> {
    if let Command::Completions { shell } = args.command {
        // Into a buffer first: clap_complete panics on a write error, and a closed
        // pipe (`hactl completions bash | head`) is not one worth reporting.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Args::command(), "hactl", &mut script);
        return match std::io::stdout().write_all(&script) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(fail(e)),
            _ => Ok(()),
        };
    }
    if args.flink {
        return run_flink(&args, &flink::load_config(args.config.as_deref())?).await;
    }
    backends::register();
    let mut config = HaConfig::load(args.config.as_deref())?;
    for warning in config.warnings() {
        eprintln!("hactl: warning: {warning}");
    }
    if let Some(id) = &args.cluster_id {
        config = config.with(KEY_CLUSTER_ID, id.clone())?;
    }
    let ha = connect(&args.command, &config).await?;
    let result = command(&args, &config, &ha).await;
    let _ = ha.close().await;
    result
}

/// Connects the services of `config`. `status` and `leaders` read HA records only, so
/// payload storage this build cannot open (Flink's `hdfs://`, a `file://` root that is
/// not mounted here) is reported and left out for them instead of failing them; every
/// other command still refuses it.
async fn connect(command: &Command, config: &HaConfig) -> ha_core::Result<HaServices> {
    match HaServices::from_config(config).await {
        Err(ha_core::Error::InvalidConfig { key, message })
            if key == KEY_STORAGE_DIR && matches!(command, Command::Status | Command::Leaders { .. }) =>
        {
            eprintln!("hactl: warning: `{key}`: {message}; payloads are not read (HA records only)");
            let storage = StateStorage::open("memory://hactl-records-only", config.cluster_id(), &Default::default())?;
            let backend = BackendRegistry::global().connect(config).await?;
            Ok(HaServices::new(backend, storage, config.num_retained())
                .with_observe_interval(config.observe_interval()))
        }
        other => other,
    }
}

async fn command(args: &Args, config: &HaConfig, ha: &HaServices) -> ha_core::Result<()> {
    match &args.command {
        Command::Status => {
            let status = inspect::status(ha).await?;
            if args.json {
                print_json(&status)
            } else {
                print!("{}", render::status(&status, config.mode()));
                Ok(())
            }
        }
        Command::Results { dirty } => {
            let mut entries = ha.job_result_store().await?.entries().await?;
            if *dirty {
                entries.retain(|r| r.state == ha_core::ResultState::Dirty);
            }
            if args.json {
                print_json(&entries)
            } else {
                print!("{}", render::results(&entries));
                Ok(())
            }
        }
        Command::Leaders { watch, groups } => {
            let status = inspect::status(ha).await?;
            let participants = inspect::participants(ha, groups).await?;
            if args.json && !watch {
                return print_json(&serde_json::json!({
                    "leaders": status.leaders,
                    "participants": participants,
                }));
            }
            print!("{}", render::leaders(&status.leaders));
            print!("{}", render::participants(&participants));
            if *watch {
                watch_leaders(ha, &status.leaders, groups, args.json).await?;
            }
            Ok(())
        }
        Command::Checkpoints { job } => {
            let views = inspect::checkpoints(ha, &JobId::new(job.clone())?).await?;
            if args.json {
                print_json(&views)
            } else {
                print!("{}", render::checkpoints(&views));
                Ok(())
            }
        }
        Command::Inspect { key } => {
            let view = inspect::entry(ha, key).await?;
            if args.json {
                print_json(&view)
            } else {
                print!("{}", render::entry(&view));
                Ok(())
            }
        }
        Command::Cleanup { yes } => {
            let cluster = config.cluster_id().to_string();
            if args.cluster_id.is_none() {
                return Err(ha_core::Error::config(
                    "--cluster-id",
                    "cleanup needs the cluster-id given explicitly",
                ));
            }
            if !yes && !confirm(&cluster)? {
                println!("aborted: nothing deleted");
                return Ok(());
            }
            let records = ha.storage().list_all().await?.len();
            ha.close_and_cleanup_all_data().await?;
            println!("deleted all HA data of cluster {cluster} ({records} payloads)");
            Ok(())
        }
        Command::Completions { .. } => Ok(()),
    }
}

async fn run_flink(args: &Args, config: &HaConfig) -> ha_core::Result<()> {
    let action = match &args.command {
        Command::Status => flink::Action::Status,
        Command::Cleanup { .. } if args.cluster_id.is_none() => {
            return Err(ha_core::Error::config(
                "--cluster-id",
                "cleanup needs the cluster-id given explicitly",
            ))
        }
        Command::Cleanup { .. } => flink::Action::Cleanup,
        other => {
            return Err(fail(format!(
                "--flink supports `status` and `cleanup`, not `{}`",
                format!("{other:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_lowercase()
            )))
        }
    };
    let yes = matches!(args.command, Command::Cleanup { yes: true });
    flink::run(config, args.cluster_id.as_deref(), action, args.json, |cluster, orphans| {
        let deletable = orphans.iter().filter(|o| o.kept.is_none()).count();
        if deletable == 0 {
            println!("nothing to clean up: no orphaned record that may be deleted");
            return Ok(false);
        }
        if yes {
            return Ok(true);
        }
        print!("This deletes {deletable} orphaned HA record(s) of Flink cluster `{cluster}`. Type the cluster-id to confirm: ");
        // Flink's ZooKeeper cluster-ids are written `/cluster_one` in its config.
        let confirmed = read_line()?.trim_matches('/') == cluster;
        if !confirmed {
            println!("aborted: nothing deleted");
        }
        Ok(confirmed)
    })
    .await
}

/// One line typed on stdin, trimmed (after flushing the prompt).
fn read_line() -> ha_core::Result<String> {
    std::io::stdout().flush().map_err(fail)?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(fail)?;
    Ok(line.trim().to_string())
}

fn confirm(cluster: &str) -> ha_core::Result<bool> {
    print!("This deletes every HA record and payload of cluster `{cluster}`. Type the cluster-id to confirm: ");
    Ok(read_line()? == cluster)
}

/// A change `watch_leaders` prints.
enum Change {
    /// A component's confirmed leader.
    Component(String, Option<ha_core::LeaderInformation>),
    /// An election group's leader (instance id).
    Group(String, Option<String>),
}

async fn watch_leaders(
    ha: &HaServices,
    leaders: &[inspect::ComponentLeader],
    groups: &[String],
    json: bool,
) -> ha_core::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut observers = Vec::new();
    for group in groups {
        let observer = ha.leader_observer(group).await?;
        let mut changes = observer.subscribe();
        let (tx, group) = (tx.clone(), group.clone());
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let leader = changes.borrow_and_update().clone();
                if tx.send(Change::Group(group.clone(), leader)).is_err() {
                    return;
                }
            }
        });
        observers.push(observer);
    }
    let mut services = Vec::new();
    for l in leaders {
        let component = ComponentId::new(l.component.clone())?;
        let retrieval = ha.leader_retrieval_service(&component).await?;
        let mut changes = retrieval.subscribe();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut last = changes.borrow_and_update().clone();
            while changes.changed().await.is_ok() {
                let current = changes.borrow_and_update().clone();
                // Backends may re-send an unchanged record (e.g. after a reconnect).
                if current == last {
                    continue;
                }
                last = current.clone();
                if tx.send(Change::Component(component.to_string(), current)).is_err() {
                    return;
                }
            }
        });
        services.push(retrieval);
    }
    loop {
        tokio::select! {
            Some(change) = rx.recv() => match change {
                Change::Component(component, leader) if json => {
                    print_json(&inspect::ComponentLeader { component, leader })?;
                }
                Change::Component(component, leader) => {
                    println!("{}", render::leader_change(&component, leader.as_ref()));
                }
                Change::Group(group, leader) if json => {
                    print_json(&serde_json::json!({ "group": group, "leader": leader }))?;
                }
                Change::Group(group, leader) => println!("{}", render::group_change(&group, leader.as_deref())),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hactl: {e}");
            ExitCode::from(2)
        }
    }
}
