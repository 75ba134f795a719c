//! The whole conformance suite on the Kubernetes backend with the leader lock in a
//! coordination.k8s.io/v1 Lease (`high-availability.kubernetes.lock: lease`): the
//! same fencing guarantees as with the ConfigMap lock.

#![allow(clippy::unwrap_used)]

mod common;

ha_testkit::conformance_suite!(common::KubeHarness::from_env().with_lock(ha_kubernetes::LockKind::Lease));
