//! Peer: Apache Curator's `LeaderLatch` on the same ZooKeeper server, one JVM per
//! contender (`java/LatchContender.java`, compiled at run time with the machine's
//! `javac` against the Debian jars in `/usr/share/java`). Graceful = `latch.close()`
//! and client close; crash = SIGKILL of the leader's JVM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::handover::QUEUE_SETTLE;
use crate::{BoxResult, Budget};

const SOURCE: &str = include_str!("../java/LatchContender.java");

/// Jars of the Debian packages `libcurator-recipes-java` and its dependencies.
const JARS: &[&str] = &[
    "curator-recipes.jar",
    "curator-framework.jar",
    "curator-client.jar",
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "guava.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",
];
const JAR_DIR: &str = "/usr/share/java";

/// The compiled contender: a class directory plus the classpath to run it.
pub(crate) struct Compiled {
    _dir: tempfile::TempDir,
    classpath: String,
}

/// Compiles the contender; fails with a hint when Curator or `javac` is missing.
pub(crate) async fn compile() -> BoxResult<Compiled> {
    let missing: Vec<&str> = JARS
        .iter()
        .copied()
        .filter(|j| !Path::new(JAR_DIR).join(j).exists())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing {missing:?} in {JAR_DIR}: apt-get install libcurator-recipes-java (scripts/install-test-deps.sh)"
        )
        .into());
    }
    let dir = tempfile::tempdir()?;
    let src: PathBuf = dir.path().join("LatchContender.java");
    tokio::fs::write(&src, SOURCE).await?;
    let jars: Vec<String> = JARS.iter().map(|j| format!("{JAR_DIR}/{j}")).collect();
    let out = Command::new("javac")
        .arg("-d")
        .arg(dir.path())
        .arg("-cp")
        .arg(jars.join(":"))
        .arg(&src)
        .output()
        .await
        .map_err(|e| format!("javac: {e} (install a JDK)"))?;
    if !out.status.success() {
        return Err(format!("javac failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let classpath = format!("{}:{}", dir.path().display(), jars.join(":"));
    Ok(Compiled { _dir: dir, classpath })
}

/// One contender JVM.
struct Contender {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Lines read while waiting for another one (`LEADER` may precede `READY`).
    pending: Vec<String>,
    session_ms: u64,
}

impl Contender {
    async fn spawn(
        cp: &Compiled,
        connect: &str,
        path: &str,
        session: Duration,
        id: &str,
        publish: bool,
    ) -> BoxResult<Self> {
        let mut child = Command::new("java")
            .args([
                "-Xmx64m",
                "-XX:TieredStopAtLevel=1",
                "-cp",
                &cp.classpath,
                "LatchContender",
            ])
            .args([connect, path, &session.as_millis().to_string(), id])
            .args(publish.then_some("publish"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut c = Self {
            child,
            lines: BufReader::new(stdout).lines(),
            pending: Vec::new(),
            session_ms: 0,
        };
        let session_line = c.expect("SESSION", Duration::from_secs(60)).await?;
        c.session_ms = session_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad SESSION line")?;
        c.expect("READY", Duration::from_secs(30)).await?;
        Ok(c)
    }

    /// Returns the first unconsumed line starting with `word`, reading on if needed.
    async fn expect(&mut self, word: &str, limit: Duration) -> BoxResult<String> {
        if let Some(i) = self.pending.iter().position(|l| l.starts_with(word)) {
            return Ok(self.pending.remove(i));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .map_err(|_| format!("curator contender: no {word} in {limit:?}"))??
                .ok_or_else(|| format!("curator contender exited before {word}"))?;
            if line.starts_with(word) {
                return Ok(line);
            }
            self.pending.push(line);
        }
    }

    async fn close(&mut self) -> BoxResult<()> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        stdin.write_all(b"close\n").await?;
        stdin.flush().await?;
        Ok(())
    }
}

/// Results of one scenario: hand-over durations and the negotiated session timeout.
pub(crate) struct Samples {
    pub(crate) durations: Vec<Duration>,
    pub(crate) session: Duration,
}

/// Up to `runs` hand-overs within `budget` on a fresh latch path. Each run replaces
/// the leader with the queued follower and queues a new JVM behind it. With `publish`,
/// a granted contender publishes its address (fenced by its latch node) before it says
/// `LEADER`.
pub(crate) async fn measure(
    cp: &Compiled,
    connect: &str,
    session: Duration,
    crash: bool,
    runs: usize,
    budget: Budget,
    publish: bool,
) -> BoxResult<Samples> {
    let path = format!("/ha-bench-curator/{}", ha_core::ClusterId::random("latch"));
    let limit = session * 10 + Duration::from_secs(10);
    let mut leader = Contender::spawn(cp, connect, &path, session, "c0", publish).await?;
    leader.expect("LEADER", limit).await?;
    let mut follower = Contender::spawn(cp, connect, &path, session, "c1", publish).await?;
    let negotiated = Duration::from_millis(leader.session_ms);
    let mut durations = Vec::with_capacity(runs);
    for i in 0..runs {
        if budget.exhausted() && !durations.is_empty() {
            break;
        }
        tokio::time::sleep(QUEUE_SETTLE).await;
        let start = Instant::now();
        if crash {
            leader.child.start_kill()?;
        } else {
            leader.close().await?;
        }
        follower.expect("LEADER", limit).await?;
        durations.push(start.elapsed());
        if !crash {
            let _ = leader.expect("CLOSED", Duration::from_secs(10)).await;
        }
        let _ = leader.child.kill().await;
        leader = follower;
        follower = Contender::spawn(cp, connect, &path, session, &format!("c{}", i + 2), publish).await?;
    }
    leader.close().await?;
    follower.close().await?;
    let _ = leader.child.wait().await;
    let _ = follower.child.wait().await;
    Ok(Samples {
        durations,
        session: negotiated,
    })
}
