//! Peer: Apache Curator's `LeaderLatch` on the same ZooKeeper server, one JVM per
//! contender (`java/LatchContender.java`, compiled at run time with the machine's
//! `javac` against the Debian jars in `/usr/share/java`). Graceful = `latch.close()`
//! and client close; crash = SIGKILL of the leader's JVM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::procs::{self, Proc};
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

/// One contender JVM, driven like every contender process ([`procs::Proc`]), with
/// the session timeout its client negotiated.
struct Contender {
    proc: Proc,
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
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xmx64m",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            &cp.classpath,
            "LatchContender",
        ])
        .args([connect, path, &session.as_millis().to_string(), id])
        .args(publish.then_some("publish"));
        let mut proc = Proc::spawn(cmd, &format!("curator contender {id}"))?;
        let session_line = proc.expect("SESSION", Duration::from_secs(60)).await?;
        let session_ms = session_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad SESSION line")?;
        proc.expect("READY", Duration::from_secs(30)).await?;
        Ok(Self { proc, session_ms })
    }
}

/// Results of one scenario: hand-over durations and the negotiated session timeout.
pub(crate) struct Samples {
    /// Leader gone → the next contender granted (`GRANTED` of the publishing variant,
    /// else `LEADER`).
    pub(crate) granted: Vec<Duration>,
    /// Leader gone → the next contender says `LEADER` (after publishing, if it does).
    pub(crate) durations: Vec<Duration>,
    pub(crate) session: Duration,
}

/// Up to `runs` hand-overs within `budget` on a fresh latch path. Each run replaces
/// the leader with the queued follower and queues a new JVM behind it; the leader goes
/// after the same pause as every other system's ([`procs::pause`]). With `publish`, a
/// granted contender says `GRANTED`, then publishes its address (fenced by its latch
/// node) before it says `LEADER`.
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
    leader.proc.expect("LEADER", limit).await?;
    let mut follower = Contender::spawn(cp, connect, &path, session, "c1", publish).await?;
    let negotiated = Duration::from_millis(leader.session_ms);
    let mut out = Samples {
        granted: Vec::with_capacity(runs),
        durations: Vec::with_capacity(runs),
        session: negotiated,
    };
    for i in 0..runs {
        if budget.exhausted() && !out.durations.is_empty() {
            break;
        }
        tokio::time::sleep(procs::pause(crash, negotiated)).await;
        let start = Instant::now();
        if crash {
            leader.proc.child.start_kill()?;
        } else {
            leader.proc.close().await?;
        }
        let (confirmed, _) = follower.proc.expect_at("LEADER", limit).await?;
        let granted = follower.proc.take_read("GRANTED").unwrap_or(confirmed);
        out.granted.push(granted - start);
        out.durations.push(confirmed - start);
        if !crash {
            let _ = leader.proc.expect("CLOSED", Duration::from_secs(10)).await;
        }
        let _ = leader.proc.child.kill().await;
        leader = follower;
        follower = Contender::spawn(cp, connect, &path, session, &format!("c{}", i + 2), publish).await?;
    }
    leader.proc.shutdown().await;
    follower.proc.shutdown().await;
    Ok(out)
}
