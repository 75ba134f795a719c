#![doc = include_str!("../README.md")]

mod backend;
mod client;
mod config;
mod counter;
mod election;
mod entry;
mod epoch;
mod error;
mod fenced;
mod last_seen;
mod layout;
mod leader_record;
mod lock;
mod participants;
mod provider;
mod record;
mod session;
mod shared;
mod store;
mod watch;

use std::sync::Arc;

pub use backend::KubernetesBackend;
pub use config::{
    KubernetesConfig, LeaseTimings, LockKind, DEFAULT_LEASE_DURATION, DEFAULT_RENEW_DEADLINE, DEFAULT_RETRY_PERIOD,
    MODE,
};
pub use provider::KubernetesProvider;

/// Adds mode `kubernetes` to the process-wide backend registry.
pub fn register() {
    ha_core::BackendRegistry::register_global(Arc::new(KubernetesProvider));
}
