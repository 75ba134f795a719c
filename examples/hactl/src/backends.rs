//! The backends compiled into this `hactl` (one cargo feature each).

use ha_core::BackendRegistry;

/// Adds the compiled-in backends to the process-wide registry (`embedded` is built
/// into ha-core); a mode whose feature was left out gets an error naming it.
pub(crate) fn register() {
    #[cfg(feature = "zookeeper")]
    ha_zookeeper::register();
    #[cfg(feature = "etcd")]
    ha_etcd::register();
    #[cfg(feature = "kubernetes")]
    ha_kubernetes::register();
    BackendRegistry::explain_unregistered_global(|mode| {
        format!(
            "this hactl was built without the cargo feature `{mode}`; rebuild with it, \
             e.g. `cargo install --path examples/hactl --features {mode}`"
        )
    });
}
