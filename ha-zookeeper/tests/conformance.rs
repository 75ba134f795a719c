//! The whole conformance suite against a real ZooKeeper server.

#![allow(clippy::unwrap_used)]

mod common;

ha_testkit::conformance_suite!(common::harness());
