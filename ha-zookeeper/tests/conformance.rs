//! The whole conformance suite against a real ZooKeeper server.

mod common;

ha_testkit::conformance_suite!(common::harness());
