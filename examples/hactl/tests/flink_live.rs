//! Opt-in: real Flink 2.3 writes its HA state (`flink/FlinkHaWriter.java`, through
//! `HighAvailabilityServicesUtils.createAvailableOrEmbeddedServices`) into a real
//! ZooKeeper and into the Kubernetes API emulator, and `hactl --flink status` must show
//! exactly that. Needs Flink's jars (`scripts/fetch-flink.sh`, in `$HA_FLINK_DIR/lib`,
//! default `target/flink/lib`) and a JDK; skips with a message when they are absent.
//! Run: `cargo test -p hactl --test flink_live -- --ignored`.

#![cfg(all(feature = "zookeeper", feature = "kubernetes"))]
#![allow(clippy::unwrap_used)]

mod flink_common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use flink_common::{checkpoints, cleanup_yes, hactl, job, orphans, FINISHED, LEAKED, RUNNING};

fn flink_lib() -> Option<PathBuf> {
    let dir = std::env::var("HA_FLINK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/flink"));
    let lib = dir.join("lib");
    lib.join("flink-dist-2.3.0.jar").exists().then_some(lib)
}

fn classpath(lib: &Path, extra: &Path) -> String {
    let mut parts = vec![extra.display().to_string()];
    for entry in std::fs::read_dir(lib).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "jar") {
            parts.push(p.display().to_string());
        }
    }
    parts.join(":")
}

/// Compiles the harness and runs it on `config_dir` (with `extra` arguments); returns
/// it once it printed READY, with the lines it printed.
fn run_flink(lib: &Path, work: &Path, config_dir: &Path, extra: &[&str]) -> (Child, Vec<String>) {
    let classes = work.join("classes");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("flink/FlinkHaWriter.java");
    let status = Command::new("javac")
        .args(["-d", classes.to_str().unwrap(), "-cp", &classpath(lib, &classes)])
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "javac failed");
    let mut child = Command::new("java")
        .args([
            "-Xmx192m",
            "-XX:+UseSerialGC",
            "-cp",
            &classpath(lib, &classes),
            "FlinkHaWriter",
        ])
        .arg(config_dir)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "READY" {
            return (child, seen);
        }
        seen.push(line);
    }
    let _ = child.kill();
    let status = child.wait();
    panic!("the Flink harness ended before READY: {status:?}; it printed {seen:?}");
}

/// The leader session id the harness confirmed.
fn session_of(lines: &[String]) -> String {
    let leader = lines.iter().find_map(|l| l.strip_prefix("LEADER ")).unwrap();
    leader.rsplit(' ').next().unwrap().to_string()
}

/// After the writer is gone (its lease or session expired): cleanup deletes the 7
/// orphans, and a new Flink JobManager recovers exactly the running job from what is
/// left.
fn clean_up_and_recover(lib: &Path, work: &Path, config_dir: &Path, cluster_id: &str) {
    let config = config_dir.join("config.yaml");
    let path = config.to_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, out, _) = hactl(&["--flink", "--json", "--config", path, "status"], "");
        let s: serde_json::Value = serde_json::from_str(&out).unwrap();
        if s["leader_running"] == false && s["orphans"].as_array().unwrap().iter().all(|o| o["kept"].is_null()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the crashed writer still counts as running: {s:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (code, out, err) = cleanup_yes(path, cluster_id);
    eprintln!("{out}");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted 7 orphaned record(s)"), "{out}");
    let (child, lines) = run_flink(lib, work, config_dir, &["recover"]);
    stop(child);
    let recovered: Vec<&String> = lines.iter().filter(|l| l.starts_with("RECOVERED_")).collect();
    assert_eq!(
        recovered,
        vec![
            &format!("RECOVERED_PLAN {RUNNING}"),
            &format!("RECOVERED_CHECKPOINTS {RUNNING} 2,3"),
            &format!("RECOVERED_COUNTER {RUNNING} 4"),
        ]
    );
}

fn stop(mut child: Child) {
    let _ = child.stdin.take().unwrap().write_all(b"close\n");
    let _ = child.wait();
}

/// Checks what the harness wrote, as `hactl --flink --json status` shows it.
fn check(config: &Path, session: &str, storage: &str) {
    let (code, out, err) = hactl(
        &["--flink", "--json", "--config", config.to_str().unwrap(), "status"],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    eprintln!(
        "{}",
        hactl(&["--flink", "--config", config.to_str().unwrap(), "status"], "").1
    );
    assert_eq!(s["leader_running"], true, "{s:#}");
    let leaders = s["leaders"].as_array().unwrap();
    assert_eq!(leaders.len(), 4, "{s:#}");
    for l in leaders {
        assert_eq!(l["info"]["session_id"], session, "{l}");
    }
    assert!(leaders
        .iter()
        .any(|l| l["info"]["address"] == "pekko.tcp://flink@10.0.0.7:6123/user/rpc/dispatcher_1"));
    assert!(leaders.iter().any(|l| l["component"] == format!("job-{RUNNING}")));
    let running = job(&s, RUNNING);
    assert!(
        running["execution_plan"]["path"].as_str().unwrap().starts_with(storage),
        "{running}"
    );
    let ids: Vec<u64> = checkpoints(running).iter().map(|c| c.0).collect();
    assert_eq!(ids, vec![2, 3]);
    for (id, path) in checkpoints(running) {
        assert!(path.starts_with(storage), "{path}");
        let pointer = running["checkpoints"][usize::try_from(id).unwrap() - 2]["external_pointer"].clone();
        assert_eq!(pointer, format!("file:/tmp/flink-checkpoints/{RUNNING}/chk-{id}"));
    }
    assert_eq!(running["counter"], 4);
    let leaked = job(&s, LEAKED);
    assert!(leaked["execution_plan"].is_null());
    assert_eq!(checkpoints(leaked).len(), 1);
    assert_eq!(leaked["counter"], 2);
    let finished = job(&s, FINISHED);
    assert!(finished["execution_plan"]["path"]
        .as_str()
        .unwrap()
        .starts_with(storage));
    assert_eq!(finished["result"]["state"], "dirty");
    assert_eq!(finished["result"]["status"], "SUCCEEDED");
    // The finished job's plan and checkpoints (kept: the running leader cleans them
    // up) and the leaked job (no plan).
    assert_eq!(orphans(&s).len(), 3, "{s:#}");
    assert_eq!(s["errors"], serde_json::json!([]));
}

/// Flink writes, hactl shows it, Flink crashes, hactl cleans up, Flink recovers.
fn write_check_clean_recover(lib: &Path, work: &Path, dir: &Path, storage: &str, cluster_id: &str) {
    let (child, lines) = run_flink(lib, work, dir, &[]);
    check(&dir.join("config.yaml"), &session_of(&lines), storage);
    stop(child);
    clean_up_and_recover(lib, work, dir, cluster_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts real Flink 2.3 (JVM); run with --ignored"]
async fn what_real_flink_writes_is_what_hactl_shows() {
    let Some(lib) = flink_lib() else {
        eprintln!(
            "SKIPPED: no Flink 2.3 jars in $HA_FLINK_DIR/lib (default target/flink/lib); run scripts/fetch-flink.sh"
        );
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let storage = work.path().join("recovery");
    std::fs::create_dir_all(&storage).unwrap();
    let storage_url = format!("file://{}", storage.display());

    // ZooKeeper, with the docs' config (quorum and storageDir pointed here).
    let server = ha_testkit::ZooKeeperServer::start().unwrap();
    let zk_dir = work.path().join("zookeeper");
    std::fs::create_dir_all(&zk_dir).unwrap();
    let text = std::fs::read_to_string(flink_common::fixture("zookeeper-config.yaml"))
        .unwrap()
        .replace("127.0.0.1:21810", &server.connect_string())
        .replace("file:///tmp/flink-ha/recovery", &storage_url)
        // So that the crashed writer's session (and its locks) end within seconds.
        + "high-availability.zookeeper.client.session-timeout: 3000\n";
    std::fs::write(zk_dir.join("config.yaml"), text).unwrap();
    let storage_prefix = format!("file:{}", storage.display());
    let (lib2, work2, sp) = (lib.clone(), work.path().to_path_buf(), storage_prefix.clone());
    tokio::task::spawn_blocking(move || write_check_clean_recover(&lib2, &work2, &zk_dir, &sp, "/cluster_one"))
        .await
        .unwrap();

    // Kubernetes, on the emulator.
    let emulator = ha_testkit::KubeApiEmulator::start().unwrap();
    let k8s_dir = work.path().join("kubernetes");
    std::fs::create_dir_all(&k8s_dir).unwrap();
    let kubeconfig = k8s_dir.join("kubeconfig");
    std::fs::write(&kubeconfig, emulator.kubeconfig_yaml("ha-test")).unwrap();
    let text = std::fs::read_to_string(flink_common::fixture("kubernetes-config.yaml"))
        .unwrap()
        .replace("/tmp/pack-emu.kubeconfig", kubeconfig.to_str().unwrap())
        .replace("file:///tmp/flink-ha/recovery", &storage_url);
    std::fs::write(k8s_dir.join("config.yaml"), text).unwrap();
    let work2 = work.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        write_check_clean_recover(&lib, &work2, &k8s_dir, &storage_prefix, "cluster1337")
    })
    .await
    .unwrap();
}
