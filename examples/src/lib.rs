//! Shared pieces of the ha-rs examples (`cargo run --example NAME`, listed in
//! `examples/README.md`).
//!
//! Backends other than `embedded` are cargo features of this package (`zookeeper`,
//! `etcd`, `kubernetes`), off by default so that the failover demo builds from a fresh
//! clone with only the Rust toolchain.

use ha_core::config::KEY_TYPE;
use ha_core::{Error, HaConfig, Result};

/// Backend modes that are cargo features of this package, and whether each is
/// compiled in.
const FEATURE_MODES: [(&str, bool); 3] = [
    ("zookeeper", cfg!(feature = "zookeeper")),
    ("etcd", cfg!(feature = "etcd")),
    ("kubernetes", cfg!(feature = "kubernetes")),
];

/// Registers every backend compiled into the examples with the process-wide registry,
/// so that `high-availability.type` can name any of them.
pub fn register_backends() {
    // `embedded` is built into ha-core.
    #[cfg(feature = "zookeeper")]
    ha_zookeeper::register();
    #[cfg(feature = "etcd")]
    ha_etcd::register();
    #[cfg(feature = "kubernetes")]
    ha_kubernetes::register();
}

/// Fails with an error naming the cargo feature when `config` selects a backend that
/// this build of the examples leaves out.
pub fn check_backend_compiled(config: &HaConfig) -> Result<()> {
    let mode = config.mode();
    match FEATURE_MODES.iter().find(|(m, _)| *m == mode) {
        Some((_, false)) => Err(Error::config(
            KEY_TYPE,
            format!(
                "mode `{mode}` is not compiled into this example; run it with \
                 `cargo run --features {mode} --example …`"
            ),
        )),
        _ => Ok(()),
    }
}
