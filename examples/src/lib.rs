//! Shared pieces of the ha-rs examples (`cargo run --example NAME`, listed in
//! `examples/README.md`).
//!
//! Backends other than `embedded` are cargo features of this package (`zookeeper`,
//! `etcd`, `kubernetes`), off by default so that the failover demo builds from a fresh
//! clone with only the Rust toolchain.

use std::process::ExitCode;

use ha_core::BackendRegistry;

/// Registers every backend compiled into the examples with the process-wide registry,
/// so that `high-availability.type` can name any of them; a backend left out gets an
/// error naming the cargo feature that adds it.
pub fn register_backends() {
    // `embedded` is built into ha-core.
    #[cfg(feature = "zookeeper")]
    ha_zookeeper::register();
    #[cfg(feature = "etcd")]
    ha_etcd::register();
    #[cfg(feature = "kubernetes")]
    ha_kubernetes::register();
    BackendRegistry::explain_unregistered_global(|mode| {
        format!("a cargo feature of the examples: `cargo run --features {mode} --example …`")
    });
}

/// The exit code of an example program: 0 on success, 2 with the error (which names
/// the config key where one is at fault) on stderr.
pub fn exit_code(program: &str, result: ha_core::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::from(2)
        }
    }
}
