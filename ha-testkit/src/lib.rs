//! # ha-testkit
//!
//! Everything needed to prove an ha-rs backend right:
//! - [`conformance`]: the shared conformance suite, one case per semantic rule, and
//!   the [`conformance_suite!`] macro that turns it into one named `#[tokio::test]`
//!   per case in a backend crate;
//! - [`Harness`]: what a backend provides to the suite;
//! - [`EmbeddedHarness`]: the harness of the built-in embedded backend;
//! - [`EtcdServer`]: real etcd members (single node or cluster) as child processes.

pub mod conformance;
mod embedded;
mod etcd;
mod harness;

pub use embedded::EmbeddedHarness;
pub use etcd::{EtcdServer, EtcdServerTls};
pub use harness::{Ctx, Harness};
