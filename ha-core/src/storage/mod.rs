//! Payload storage: where the bytes behind every pointer live.
//!
//! [`StateStorage`] writes payloads under `<storageDir>/<cluster-id>/` through
//! `object_store` (`file://`, `memory://`, `s3://`) and returns a [`StateHandle`]
//! carrying path, size and SHA-256. Reading verifies both; a missing object or a
//! mismatch is an error that names the backend key and the payload path.

mod handle;
mod state_storage;

pub use handle::{StateHandle, HANDLE_FORMAT};
pub use state_storage::StateStorage;
