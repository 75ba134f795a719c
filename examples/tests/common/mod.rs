//! Building and locating the example programs the tests run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The features of this package the test was compiled with; the examples are built
/// with the same ones.
fn features() -> Vec<&'static str> {
    [
        ("zookeeper", cfg!(feature = "zookeeper")),
        ("etcd", cfg!(feature = "etcd")),
        ("kubernetes", cfg!(feature = "kubernetes")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}

/// Path of the example `name`, built with the test's features and profile. Cargo
/// exposes no path for examples (only `CARGO_BIN_EXE_*` for binaries), so this asks
/// cargo, which is a no-op when `cargo test` has just built it.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/<test>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target directory");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "--message-format=json",
        "-p",
        "ha-examples",
        "--example",
        name,
    ])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    let features = features();
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build --example {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|msg| {
            let is_it = msg["reason"] == "compiler-artifact" && msg["target"]["name"] == name;
            msg["executable"].as_str().filter(|_| is_it).map(PathBuf::from)
        })
        .unwrap_or_else(|| panic!("cargo reported no executable for example {name}"))
}
