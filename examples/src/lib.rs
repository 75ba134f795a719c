//! Shared pieces of the ha-rs example programs.

/// Registers every backend linked into the examples with the process-wide registry,
/// so that `high-availability.type` can name any of them.
pub fn register_backends() {
    // The embedded backend is built in; backend crates add themselves here.
}
