//! Shared pieces of the ha-rs example programs.

/// Registers every backend linked into the examples with the process-wide registry,
/// so that `high-availability.type` can name any of them.
pub fn register_backends() {
    // `embedded` is built into ha-core.
    ha_zookeeper::register();
    ha_etcd::register();
    ha_kubernetes::register();
}
