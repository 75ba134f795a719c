//! # ha-core
//!
//! The backend-independent heart of ha-rs, a pluggable high-availability framework
//! modelled on Apache Flink's HA services.
//!
//! - [`driver`]: the small traits a backend implements ([`HaBackend`] and its drivers).
//! - [`services`]: the generic services built once on them: leader election and
//!   retrieval, job-graph, completed-checkpoint, job-result and blob stores, the
//!   checkpoint-id counter, bundled by [`HaServices`].
//! - [`storage`]: payloads in an object store, addressed by checksummed pointers.
//! - [`config`]: Flink-style configuration and the mode → backend registry.
//! - [`embedded`]: the in-process backend (mode `embedded`, the default).
//! - [`inspect`]: read-only views of a cluster's HA state for operators.
//! - [`metrics`]: metric names, recorded through the `metrics` facade.
//!
//! ```no_run
//! # async fn demo() -> ha_core::Result<()> {
//! use ha_core::{ComponentId, HaConfig, HaServices, DEFAULT_ELECTION_GROUP};
//! let config = HaConfig::load(None)?; // embedded unless configured otherwise
//! let ha = HaServices::from_config(&config).await?;
//! let election = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
//! let mut dispatcher = election.register(ComponentId::new("dispatcher")?)?;
//! let grant = dispatcher.granted().await?;
//! dispatcher.confirm(&grant, "http://10.0.0.1:8081").await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod driver;
pub mod embedded;
mod error;
mod ids;
pub mod inspect;
pub mod metrics;
pub mod services;
pub mod storage;

pub use config::{BackendProvider, BackendRegistry, HaConfig};
pub use driver::{HaBackend, Participant, StoreNamespace};
pub use error::{BoxError, Error, Result};
pub use ids::{
    ClusterId, ComponentId, ElectionGroup, Epoch, Fence, JobId, LeaderInformation, LeaderSessionId, Version, Versioned,
};
pub use services::*;
