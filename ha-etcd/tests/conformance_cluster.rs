//! The whole conformance suite against a 3-member etcd 3.4 cluster, every client
//! knowing all members (cases isolated by cluster-id).
#![allow(clippy::unwrap_used)]

mod common;

ha_testkit::conformance_suite!(common::cluster_harness());
