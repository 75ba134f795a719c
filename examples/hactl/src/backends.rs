//! The backends compiled into this `hactl` (one cargo feature each).

use ha_core::config::KEY_TYPE;
use ha_core::{Error, Result};

/// Modes that are cargo features of `hactl`, and whether each is compiled in.
const FEATURE_MODES: [(&str, bool); 3] = [
    ("zookeeper", cfg!(feature = "zookeeper")),
    ("etcd", cfg!(feature = "etcd")),
    ("kubernetes", cfg!(feature = "kubernetes")),
];

/// Adds the compiled-in backends to the process-wide registry (`embedded` is built
/// into ha-core).
pub(crate) fn register() {
    #[cfg(feature = "zookeeper")]
    ha_zookeeper::register();
    #[cfg(feature = "etcd")]
    ha_etcd::register();
    #[cfg(feature = "kubernetes")]
    ha_kubernetes::register();
}

/// Refuses a mode whose feature this build leaves out, naming the feature.
pub(crate) fn check_compiled(mode: &str) -> Result<()> {
    match FEATURE_MODES.iter().find(|(m, _)| *m == mode) {
        Some((_, false)) => Err(Error::config(
            KEY_TYPE,
            format!(
                "mode `{mode}` is not compiled into this hactl (cargo feature `{mode}`); \
                 rebuild with it, e.g. `cargo install --path examples/hactl --features {mode}`"
            ),
        )),
        _ => Ok(()),
    }
}
