//! Helpers of the `hactl --flink` tests: fixtures of what real Flink 2.3 wrote
//! (`tests/fixtures/flink/`, made by `flink/FlinkHaWriter.java`) and running hactl.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The job that runs: execution plan, checkpoints 2 and 3 retained, counter 4.
pub const RUNNING: &str = "5f1ac3e6b9d2c4a7e8f0a1b2c3d4e5f6";
/// The job whose HA data leaked: checkpoint 1, counter 2, no execution plan.
pub const LEAKED: &str = "0badc0ffee0000000000000000000b0b";

/// A fixture file.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flink")
        .join(name)
}

/// Writes the fixture Flink config `name` into `dir` with `from` replaced by `to`
/// (the address of the test's server); returns its path.
pub fn config(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    assert!(text.contains(from), "{name} names {from}");
    let path = dir.join("config.yaml");
    std::fs::write(&path, text.replace(from, to)).unwrap();
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
