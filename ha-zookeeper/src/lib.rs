#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod counter;
mod election;
mod error;
mod fenced;
mod latch;
mod layout;
mod leader_info;
mod leader_record;
mod participants;
mod provider;
mod session;
mod store;
mod tls;

pub use backend::{ConnectionState, ZooKeeperBackend};
pub use config::{AclMode, ZooKeeperConfig};
pub use ha_core::driver::kit::TlsFiles;
pub use provider::{register, ZooKeeperProvider};
