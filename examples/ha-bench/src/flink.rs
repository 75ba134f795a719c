//! Peer: Apache Flink 2.3's own HA services (`HighAvailabilityServicesUtils.
//! createAvailableOrEmbeddedServices`) on the same ZooKeeper and the same Kubernetes API
//! emulator, one JVM per contender and one retriever JVM (`java/FlinkHaContender.java`,
//! compiled at run time with `javac` against Flink's jars). The jars come from
//! `scripts/fetch-flink.sh` (`$HA_FLINK_DIR/lib`, default `target/flink/lib`); without
//! them the peer is skipped with a message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::procs::{self, Role, Samples};
use crate::{BoxResult, Budget};

const SOURCE: &str = include_str!("../java/FlinkHaContender.java");
const DIST_JAR: &str = "flink-dist-2.3.0.jar";

/// Where Flink's jars are looked for: `$HA_FLINK_DIR/lib`, else the workspace's
/// `target/flink/lib` (the defaults of `scripts/fetch-flink.sh`).
pub(crate) fn lib_dir() -> PathBuf {
    match std::env::var_os("HA_FLINK_DIR") {
        Some(dir) => PathBuf::from(dir).join("lib"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/flink/lib"),
    }
}

/// The compiled harness: a class directory plus the classpath to run it.
pub(crate) struct Compiled {
    dir: tempfile::TempDir,
    classpath: String,
}

/// Compiles the harness. `Ok(None)` when Flink's jars are absent (the peer is skipped).
pub(crate) async fn compile() -> BoxResult<Option<Compiled>> {
    let lib = lib_dir();
    if !lib.join(DIST_JAR).exists() {
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("FlinkHaContender.java");
    tokio::fs::write(&src, SOURCE).await?;
    let jars = format!("{}/*", lib.display());
    let out = Command::new("javac")
        .arg("-d")
        .arg(dir.path())
        .arg("-cp")
        .arg(&jars)
        .arg(&src)
        .output()
        .await
        .map_err(|e| format!("javac: {e} (install a JDK)"))?;
    if !out.status.success() {
        return Err(format!("javac failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let classpath = format!("{}:{jars}", dir.path().display());
    Ok(Some(Compiled { dir, classpath }))
}

/// Where Flink's HA services connect.
pub(crate) enum Target<'a> {
    /// A ZooKeeper connect string.
    Zookeeper(&'a str),
    /// The Kubernetes API (emulator) URL.
    Kubernetes(&'a str),
}

/// A kubeconfig pointing fabric8 at `url` without credentials.
fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: {url}\n\
         contexts:\n- name: bench\n  context:\n    cluster: bench\n    namespace: {ns}\n    user: bench\n\
         current-context: bench\nusers:\n- name: bench\n  user: {{}}\n",
        ns = crate::systems::KUBE_NAMESPACE
    )
}

/// Up to `runs` hand-overs between Flink contender JVMs, watched by a retriever JVM.
pub(crate) async fn measure(
    cp: &Compiled,
    target: Target<'_>,
    ttl: Duration,
    crash: bool,
    runs: usize,
    budget: Budget,
) -> BoxResult<Samples> {
    let (kind, arg) = match target {
        Target::Zookeeper(connect) => ("zookeeper", connect.to_string()),
        Target::Kubernetes(url) => {
            let file = cp.dir.path().join("kubeconfig.yaml");
            tokio::fs::write(&file, kubeconfig(url)).await?;
            ("kubernetes", file.display().to_string())
        }
    };
    let cluster = ha_core::ClusterId::random("flink").to_string();
    let ttl_ms = ttl.as_millis().to_string();
    let spawn = |id: &str, role: Role| {
        let mut cmd = Command::new("java");
        cmd.args(["-Xmx192m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(&cp.classpath)
            .arg("FlinkHaContender")
            .args([kind, &arg, &cluster, &ttl_ms, id, role.name()]);
        Ok(cmd)
    };
    procs::measure(&spawn, ttl, crash, runs, budget).await
}
