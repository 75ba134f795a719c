//! Hand-over between contender processes, the way a user runs them: every contender
//! (and the retriever) is its own OS process driven over stdin/stdout. Graceful = the
//! leader is told `close` and closes its services; crash = SIGKILL at a random moment
//! after a settle period. Measured: leader gone → another contender granted (`LEADER`
//! line), and → a separate retriever process sees the new leader's address (`ADDR`).
//!
//! Line protocol of every contender program (ha-rs, Curator, Flink): `READY` once
//! started, `GRANTED <address>` once granted where confirming is a step of its own,
//! `LEADER <address>` once granted and confirmed, `ADDR <address>` (retriever) for each
//! published leader, `CLOSED` after `close` on stdin. A program without `GRANTED`
//! (its grant is its confirmation) is granted at `LEADER`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::{BoxResult, Budget};

/// How long the follower is given to be queued before the leader goes away.
pub(crate) const SETTLE: Duration = Duration::from_millis(300);

/// What a spawned process does.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(crate) enum Role {
    Contender,
    Retriever,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Contender => "contender",
            Role::Retriever => "retriever",
        }
    }
}

/// The address a contender with `id` confirms.
pub(crate) fn address(id: &str) -> String {
    format!("bench://{id}")
}

/// One driven process.
pub(crate) struct Proc {
    pub(crate) child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Lines read while waiting for another one (`LEADER` may precede `READY`), with
    /// when they were read.
    pending: Vec<(Instant, String)>,
    what: String,
}

impl Proc {
    /// Spawns `cmd` with piped stdin/stdout (stderr inherited), killed on drop.
    pub(crate) fn spawn(mut cmd: Command, what: &str) -> BoxResult<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{what}: spawn failed: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
            pending: Vec::new(),
            what: what.to_string(),
        })
    }

    /// Returns the first unconsumed line equal to `line` or starting with `line` and a
    /// space, reading on if needed.
    pub(crate) async fn expect(&mut self, line: &str, limit: Duration) -> BoxResult<String> {
        Ok(self.expect_at(line, limit).await?.1)
    }

    /// [`expect`](Self::expect), with when the line was read.
    pub(crate) async fn expect_at(&mut self, line: &str, limit: Duration) -> BoxResult<(Instant, String)> {
        let matches = |l: &str| l == line || l.strip_prefix(line).is_some_and(|r| r.starts_with(' '));
        if let Some(i) = self.pending.iter().position(|(_, l)| matches(l)) {
            return Ok(self.pending.remove(i));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let l = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .map_err(|_| format!("{}: no {line:?} in {limit:?}", self.what))??
                .ok_or_else(|| format!("{} exited before {line:?}", self.what))?;
            if l.starts_with("FATAL") || l.starts_with("ERROR") {
                return Err(format!("{}: {l}", self.what).into());
            }
            let at = Instant::now();
            if matches(&l) {
                return Ok((at, l));
            }
            self.pending.push((at, l));
        }
    }

    /// When an unconsumed line equal to `line` was read, consuming it (no reading on).
    pub(crate) fn take_read(&mut self, line: &str) -> Option<Instant> {
        let i = self.pending.iter().position(|(_, l)| l == line)?;
        Some(self.pending.remove(i).0)
    }

    /// Asks the process to close its services (graceful).
    pub(crate) async fn close(&mut self) -> BoxResult<()> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        stdin.write_all(b"close\n").await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Closes gracefully and waits a little for the exit, then kills.
    pub(crate) async fn shutdown(mut self) {
        let _ = self.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// Hand-over samples of one scenario.
#[derive(Default)]
pub(crate) struct Samples {
    /// Leader gone → another contender granted (`GRANTED`, or `LEADER` without it).
    pub(crate) granted: Vec<Duration>,
    /// Leader gone → another contender granted and confirmed (`LEADER`).
    pub(crate) confirmed: Vec<Duration>,
    /// Leader gone → the retriever process sees the new leader's address.
    pub(crate) retrieved: Vec<Duration>,
}

/// A uniformly random duration in `[0, max)` (from the standard library's random hasher
/// keys; a benchmark's jitter needs no better).
fn jitter(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    let nanos = max.as_nanos().max(1) as u64;
    Duration::from_nanos(h.finish() % nanos)
}

/// How long to wait before the leader goes: the settle period, plus for a crash a
/// random part of `ttl` (so that the crash falls anywhere between two renewals).
pub(crate) fn pause(crash: bool, ttl: Duration) -> Duration {
    if crash {
        SETTLE + jitter(ttl)
    } else {
        SETTLE
    }
}

/// Up to `runs` hand-overs within `budget`. `spawn(id, role)` makes the command of one
/// process; `ttl` bounds the random crash moment (settle + up to one TTL) and waits.
pub(crate) async fn measure(
    spawn: &dyn Fn(&str, Role) -> BoxResult<Command>,
    ttl: Duration,
    crash: bool,
    runs: usize,
    budget: Budget,
) -> BoxResult<Samples> {
    let limit = ttl * 10 + Duration::from_secs(30);
    let start_proc = |id: &str, role: Role| Proc::spawn(spawn(id, role)?, &format!("{} {id}", role.name()));
    let mut retriever = start_proc("r", Role::Retriever)?;
    retriever.expect("READY", limit).await?;
    let mut leader = start_proc("c0", Role::Contender)?;
    leader.expect("LEADER", limit).await?;
    retriever.expect(&format!("ADDR {}", address("c0")), limit).await?;
    let mut follower = start_proc("c1", Role::Contender)?;
    follower.expect("READY", limit).await?;
    let mut out = Samples::default();
    for i in 1..=runs {
        if budget.exhausted() && !out.granted.is_empty() {
            break;
        }
        tokio::time::sleep(pause(crash, ttl)).await;
        let start = Instant::now();
        tracing::debug!(run = i, crash, "leader goes");
        if crash {
            leader.child.start_kill()?;
        } else {
            leader.close().await?;
        }
        let next = address(&format!("c{i}"));
        // Both processes are read at once, so each line is timed when it arrives (a
        // retriever that sees the address before the contender says LEADER is not
        // timed at the LEADER line).
        let (leader_lines, retrieved) = tokio::join!(
            async {
                let (confirmed, _) = follower.expect_at(&format!("LEADER {next}"), limit).await?;
                let granted = follower.take_read(&format!("GRANTED {next}")).unwrap_or(confirmed);
                tracing::debug!(run = i, elapsed = ?(confirmed - start), "new leader seen");
                BoxResult::Ok((granted - start, confirmed - start))
            },
            async {
                let (seen, _) = retriever.expect_at(&format!("ADDR {next}"), limit).await?;
                tracing::debug!(run = i, elapsed = ?(seen - start), "new address seen");
                BoxResult::Ok(seen - start)
            },
        );
        let (granted, confirmed) = leader_lines?;
        out.granted.push(granted);
        out.confirmed.push(confirmed);
        out.retrieved.push(retrieved?);
        if !crash {
            let _ = leader.expect("CLOSED", Duration::from_secs(10)).await;
        }
        let _ = leader.child.kill().await;
        leader = follower;
        follower = start_proc(&format!("c{}", i + 1), Role::Contender)?;
        follower.expect("READY", limit).await?;
    }
    leader.shutdown().await;
    follower.shutdown().await;
    retriever.shutdown().await;
    Ok(out)
}
