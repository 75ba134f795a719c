//! The whole conformance suite against one real etcd 3.4 (cases isolated by cluster-id).
#![allow(clippy::unwrap_used)]

mod common;

ha_testkit::conformance_suite!(common::shared_harness());
