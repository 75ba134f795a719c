//! # ha-testkit
//!
//! Everything needed to prove an ha-rs backend right:
//! - [`conformance`]: the shared conformance suite, one case per semantic rule, and
//!   the [`conformance_suite!`] macro that turns it into one named `#[tokio::test]`
//!   per case in a backend crate;
//! - [`Harness`]: what a backend provides to the suite;
//! - [`EmbeddedHarness`]: the harness of the built-in embedded backend;
//! - [`ZooKeeperServer`]: a real ZooKeeper server or ensemble as child processes;
//! - [`FaultProxy`]: a TCP proxy that cuts clients off from their server.

pub mod conformance;
mod embedded;
mod fault_proxy;
mod harness;
mod zookeeper;

pub use embedded::EmbeddedHarness;
pub use fault_proxy::FaultProxy;
pub use harness::{Ctx, Harness};
pub use zookeeper::{four_letter_word, ZooKeeperOptions, ZooKeeperServer, ZOOKEEPER_JAR};
