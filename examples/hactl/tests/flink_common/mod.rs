//! Helpers of the `hactl --flink` tests: fixtures of what real Flink 2.3 wrote
//! (`tests/fixtures/flink/`, made by `flink/FlinkHaWriter.java`) and running hactl.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The job that runs: execution plan, checkpoints 2 and 3 retained, counter 4.
pub const RUNNING: &str = "5f1ac3e6b9d2c4a7e8f0a1b2c3d4e5f6";
/// The job whose HA data leaked: checkpoint 1, counter 2, no execution plan.
pub const LEAKED: &str = "0badc0ffee0000000000000000000b0b";
/// The job that finished, cleanup pending: plan, checkpoint 1, counter 2, a dirty
/// job result.
pub const FINISHED: &str = "feedface00000000000000000000f1d0";

/// A fixture file.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flink")
        .join(name)
}

/// Writes the fixture Flink config `name` into `dir` with `from` replaced by `to`
/// (the address of the test's server) and `high-availability.storageDir` pointed at
/// `dir/recovery`, which gets the fixture's job results; returns the config's path.
pub fn config(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    assert!(text.contains(from), "{name} names {from}");
    let storage = dir.join("recovery");
    for cluster in ["cluster_one", "default"] {
        let results = storage.join("job-result-store").join(cluster);
        std::fs::create_dir_all(&results).unwrap();
        for entry in std::fs::read_dir(fixture("job-result-store").join(cluster)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), results.join(entry.file_name())).unwrap();
        }
    }
    let text = text.replace(from, to).replace(
        "file:///tmp/flink-ha/recovery",
        &format!("file://{}", storage.display()),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs hactl with `args` and `stdin`; (exit code, stdout, stderr).
pub fn hactl(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(args)
        .env_remove("HA_HIGH_AVAILABILITY_TYPE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `hactl --flink --config CONFIG cleanup --cluster-id CLUSTER --yes`.
pub fn cleanup_yes(config: &str, cluster: &str) -> (i32, String, String) {
    hactl(
        &[
            "--flink",
            "--config",
            config,
            "cleanup",
            "--cluster-id",
            cluster,
            "--yes",
        ],
        "",
    )
}

/// `hactl --flink --json status` parsed.
pub fn status(config: &Path) -> serde_json::Value {
    let (code, out, err) = hactl(
        &["--flink", "--json", "--config", config.to_str().unwrap(), "status"],
        "",
    );
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The job `id` of a status.
pub fn job<'a>(status: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == id)
        .unwrap_or_else(|| panic!("no job {id} in {status:#}"))
}

/// (id, path) of each checkpoint of `job`.
pub fn checkpoints(job: &serde_json::Value) -> Vec<(u64, String)> {
    job["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().unwrap(),
                c["handle"]["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// (component, address, session id) of each leader.
pub fn leaders(status: &serde_json::Value) -> Vec<(String, String, String)> {
    status["leaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["component"].as_str().unwrap().to_string(),
                l["info"]["address"].as_str().unwrap_or("").to_string(),
                l["info"]["session_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// (key, kept?) of each orphan.
pub fn orphans(status: &serde_json::Value) -> Vec<(String, bool)> {
    status["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["key"].as_str().unwrap().to_string(), !o["kept"].is_null()))
        .collect()
}

/// The payload files (under the recovery directory `dir`) of the fixture's jobs, as
/// Flink named them.
pub struct JobFiles<'a> {
    /// RUNNING's execution plan, checkpoint 2 and checkpoint 3.
    pub running: [&'a str; 3],
    /// LEAKED's checkpoint 1.
    pub leaked: &'a str,
    /// FINISHED's execution plan and checkpoint 1.
    pub finished: [&'a str; 2],
}

/// Checks the fixture's three jobs field by field: plans, checkpoint ids with their
/// paths, counters, job results.
pub fn assert_jobs(s: &serde_json::Value, dir: &str, files: &JobFiles<'_>) {
    let path = |name: &str| format!("{dir}/{name}");
    let running = job(s, RUNNING);
    assert_eq!(running["execution_plan"]["path"], path(files.running[0]));
    assert_eq!(
        checkpoints(running),
        vec![(2, path(files.running[1])), (3, path(files.running[2]))]
    );
    assert_eq!(running["counter"], 4);
    assert!(running["result"].is_null());
    let leaked = job(s, LEAKED);
    assert!(leaked["execution_plan"].is_null());
    assert_eq!(checkpoints(leaked), vec![(1, path(files.leaked))]);
    assert_eq!(leaked["counter"], 2);
    assert!(leaked["result"].is_null());
    let finished = job(s, FINISHED);
    assert_eq!(finished["execution_plan"]["path"], path(files.finished[0]));
    assert_eq!(checkpoints(finished), vec![(1, path(files.finished[1]))]);
    assert_eq!(finished["counter"], 2);
    assert_eq!(finished["result"]["state"], "dirty");
    assert_eq!(finished["result"]["status"], "SUCCEEDED");
}

/// After a cleanup (`after`) of `before`: the running job alone is left, unchanged.
pub fn assert_only_running_is_left(after: &serde_json::Value, before: &serde_json::Value) {
    assert_eq!(job(after, RUNNING), job(before, RUNNING));
    let ids: Vec<&str> = after["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![RUNNING]);
}
