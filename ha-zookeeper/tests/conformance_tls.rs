//! The whole conformance suite over TLS (client certificates required by the server),
//! with digest authentication and `creator` ACLs on every znode. Needs the crate
//! feature `tls`: `cargo test -p ha-zookeeper --features tls --test conformance_tls`.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)]

mod common;

ha_testkit::conformance_suite!(common::secure::secure_harness());
