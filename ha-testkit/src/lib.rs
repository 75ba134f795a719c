//! # ha-testkit
//!
//! Everything needed to prove an ha-rs backend right:
//! - [`conformance`]: the shared conformance suite, one case per semantic rule, and
//!   the [`conformance_suite!`] macro that turns it into one named `#[tokio::test]`
//!   per case in a backend crate;
//! - [`Harness`]: what a backend provides to the suite;
//! - [`EmbeddedHarness`]: the harness of the built-in embedded backend;
//! - [`KubeApiEmulator`]: an in-process Kubernetes API server (ConfigMaps, Leases)
//!   with fault injection, for the Kubernetes backend.

pub mod conformance;
mod embedded;
mod harness;
mod kube_api;

pub use embedded::EmbeddedHarness;
pub use harness::{Ctx, Harness};
pub use kube_api::{KubeApiEmulator, KubeFaults};
