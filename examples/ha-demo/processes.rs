//! `ha-demo --processes`: real contender processes on a shared backend. Scenario 1
//! kills the leader with SIGKILL; scenario 2 freezes the next leader with SIGSTOP past
//! its lease, resumes it, and checks that its writes are rejected.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ha_core::{HaConfig, HaServices, JobId};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// One line a child reported.
#[derive(Debug, Clone)]
struct Line {
    who: String,
    event: String,
    fields: HashMap<String, String>,
    at: Instant,
}

impl Line {
    fn num(&self, key: &str) -> u64 {
        self.fields.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

fn parse(text: &str) -> Option<(String, String, HashMap<String, String>)> {
    let mut words = text.strip_prefix("HA-DEMO ")?.split_whitespace();
    let who = words.next()?.to_string();
    let event = words.next()?.to_string();
    let fields = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some((who, event, fields))
}

struct Children {
    start: Instant,
    procs: HashMap<String, Child>,
    lines: mpsc::UnboundedReceiver<Line>,
    seen: Vec<Line>,
}

impl Children {
    async fn next(&mut self, deadline: Instant, mut want: impl FnMut(&Line) -> bool) -> Option<Line> {
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = tokio::time::timeout(left, self.lines.recv()).await.ok()??;
            let mut fields: Vec<_> = line.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            fields.sort();
            let at = line.at.duration_since(self.start).as_millis();
            println!("[{at:>6} ms] {} {} {}", line.who, line.event, fields.join(" "));
            self.seen.push(line.clone());
            if want(&line) {
                return Some(line);
            }
        }
    }

    fn pid(&self, who: &str) -> Option<u32> {
        self.procs.get(who).and_then(Child::id)
    }

    async fn signal(&self, who: &str, signal: &str) -> bool {
        let Some(pid) = self.pid(who) else { return false };
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await
            .is_ok_and(|s| s.success())
    }
}

/// Runs both scenarios; `Ok(true)` if every check passed.
pub(crate) async fn run(
    config: &HaConfig,
    config_path: Option<&std::path::Path>,
    contenders: usize,
    before_crash: u64,
    interval_ms: u64,
) -> ha_core::Result<bool> {
    if config.mode() == "embedded" {
        return Err(ha_core::Error::config(
            ha_core::config::KEY_TYPE,
            "--processes needs a backend shared between processes (zookeeper, etcd or kubernetes), not `embedded`",
        ));
    }
    let exe = std::env::current_exe().map_err(|e| ha_core::Error::Other {
        message: e.to_string(),
        source: None,
    })?;
    let job = JobId::random();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut procs = HashMap::new();
    for i in 1..=contenders.max(2) {
        let name = format!("process-{i}");
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--child",
            &name,
            "--job",
            job.as_str(),
            "--interval-ms",
            &interval_ms.to_string(),
        ])
        .env("HA_HIGH_AVAILABILITY_CLUSTER_ID", config.cluster_id().as_str())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
        if let Some(p) = config_path {
            cmd.arg("--config").arg(p);
        }
        let mut child = cmd.spawn().map_err(|e| ha_core::Error::Other {
            message: e.to_string(),
            source: None,
        })?;
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(out).lines();
                while let Ok(Some(text)) = reader.next_line().await {
                    if let Some((who, event, fields)) = parse(&text) {
                        let _ = tx.send(Line {
                            who,
                            event,
                            fields,
                            at: Instant::now(),
                        });
                    }
                }
            });
        }
        procs.insert(name, child);
    }
    let mut kids = Children {
        start: Instant::now(),
        procs,
        lines: rx,
        seen: Vec::new(),
    };
    let limit = Duration::from_secs(90);
    let ok = scenarios(&mut kids, before_crash, limit).await;
    for child in kids.procs.values_mut() {
        let _ = child.kill().await;
    }
    HaServices::from_config(config)
        .await?
        .close_and_cleanup_all_data()
        .await?;
    Ok(ok)
}

async fn scenarios(kids: &mut Children, before_crash: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    // Scenario 1: SIGKILL the leader.
    let Some(first) = kids.next(deadline, |l| l.event == "granted").await else {
        println!("no process was granted leadership");
        return false;
    };
    let leader = first.who.clone();
    let mut last_ack = 0;
    while last_ack < before_crash {
        match kids.next(deadline, |l| l.event == "ack" && l.who == leader).await {
            Some(l) => last_ack = l.num("id"),
            None => return false,
        }
    }
    let killed_at = Instant::now();
    kids.signal(&leader, "-KILL").await;
    println!(">>> SIGKILL {leader} after checkpoint {last_ack}");
    let Some(resumed) = kids.next(deadline, |l| l.event == "resumed" && l.who != leader).await else {
        println!("no process took over after the kill");
        return false;
    };
    let kill_failover = resumed.at.duration_since(killed_at);
    let kill_ok = resumed.num("id") == last_ack || resumed.num("id") == last_ack + 1;
    println!(
        ">>> {} resumed from checkpoint {} ({} ms after SIGKILL); last acknowledged {last_ack}: {}",
        resumed.who,
        resumed.num("id"),
        kill_failover.as_millis(),
        if kill_ok { "OK" } else { "LOST CHECKPOINTS" }
    );

    // Scenario 2: SIGSTOP the new leader past its lease, then resume it.
    let second = resumed.who.clone();
    let stale_epoch = resumed.num("epoch");
    let mut acked = 0;
    while acked < 3 {
        if kids
            .next(deadline, |l| l.event == "ack" && l.who == second)
            .await
            .is_none()
        {
            return false;
        }
        acked += 1;
    }
    let stopped_at = Instant::now();
    kids.signal(&second, "-STOP").await;
    println!(">>> SIGSTOP {second} (epoch {stale_epoch})");
    let Some(third) = kids.next(deadline, |l| l.event == "resumed" && l.who != second).await else {
        println!("no process took over from the stopped leader");
        let _ = kids.signal(&second, "-CONT").await;
        return false;
    };
    let stop_failover = third.at.duration_since(stopped_at);
    println!(
        ">>> {} took over {} ms after SIGSTOP; SIGCONT {second}",
        third.who,
        stop_failover.as_millis()
    );
    let cont_at = Instant::now();
    kids.signal(&second, "-CONT").await;
    let verdict = kids
        .next(deadline, |l| {
            l.who == second && l.at >= cont_at && matches!(l.event.as_str(), "fenced" | "lost" | "ack" | "error")
        })
        .await;
    let stale_rejected = match &verdict {
        Some(l) if l.event == "ack" && l.num("epoch") == stale_epoch => {
            println!(
                ">>> SPLIT BRAIN: {second} wrote checkpoint {} with stale epoch {stale_epoch}",
                l.num("id")
            );
            false
        }
        Some(l) => {
            println!(
                ">>> resumed ex-leader {second}: {} {:?} (stale write rejected)",
                l.event, l.fields
            );
            true
        }
        None => false,
    };
    let stale_acks = kids
        .seen
        .iter()
        .filter(|l| l.who == second && l.event == "ack" && l.at >= cont_at && l.num("epoch") == stale_epoch)
        .count();
    println!();
    println!("summary:");
    println!(
        "  SIGKILL failover       {} ms, resumed from checkpoint {} (last acknowledged {last_ack})",
        kill_failover.as_millis(),
        resumed.num("id")
    );
    println!("  SIGSTOP failover       {} ms", stop_failover.as_millis());
    println!("  stale writes accepted  {stale_acks}");
    let ok = kill_ok && stale_rejected && stale_acks == 0;
    println!("  result                 {}", if ok { "OK" } else { "FAILED" });
    ok
}
