//! Runs a `KubeApiEmulator` until Ctrl-C and writes a kubeconfig for it, so that
//! `kubectl` or the conformance suite's real-cluster mode can talk to it:
//!
//! ```sh
//! cargo run -p ha-testkit --bin kube-emulator -- /tmp/emulator.kubeconfig
//! kubectl --kubeconfig /tmp/emulator.kubeconfig get configmaps -n ha-test
//! HA_KUBE_TEST_KUBECONFIG=/tmp/emulator.kubeconfig HA_KUBE_TEST_NAMESPACE=ha-test \
//!   cargo test -p ha-kubernetes --test conformance
//! ```

use ha_testkit::KubeApiEmulator;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "emulator.kubeconfig".to_string());
    let emulator = KubeApiEmulator::start()?;
    std::fs::write(&path, emulator.kubeconfig_yaml("ha-test"))?;
    println!(
        "Kubernetes API emulator at {}; kubeconfig written to {path}",
        emulator.url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
