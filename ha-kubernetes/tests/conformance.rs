//! The whole conformance suite on the Kubernetes backend: against a private
//! `KubeApiEmulator` per case, or a real cluster if `HA_KUBE_TEST_KUBECONFIG` is set.

#![allow(clippy::unwrap_used)]

mod common;

ha_testkit::conformance_suite!(common::KubeHarness::from_env());
