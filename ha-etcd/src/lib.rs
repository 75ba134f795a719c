#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod counter;
mod election;
mod error;
mod fenced;
mod layout;
mod leader_record;
mod participants;
mod provider;
mod session;
mod store;
mod tls;
mod watch;

pub use backend::EtcdBackend;
pub use config::{EtcdConfig, DEFAULT_LEASE_TTL};
pub use ha_core::driver::kit::TlsFiles;
pub use provider::{register, EtcdProvider};
