//! A custom backend chosen by mode string: `high-availability.type: audited`.
//!
//! The backend (`audited.rs`) is small but real: it delegates every operation to the
//! embedded backend and prints each election event the driver reports (grant with its
//! fence, revocation), which is a template for an audit or tracing layer around any
//! backend. It passes the conformance suite (`tests/custom_backend.rs`). Writing a
//! backend from scratch means implementing `HaBackend` and its driver traits; the
//! guide is the `ha_core::driver` module documentation.
//!
//! ```text
//! cargo run --example custom-backend
//! ```

mod audited;

use std::sync::Arc;

use audited::AuditedProvider;
use ha_core::{BackendRegistry, ComponentId, HaConfig, HaServices, Result, DEFAULT_ELECTION_GROUP};

#[tokio::main]
async fn main() -> Result<()> {
    // Before any config is parsed: validation checks the mode and its keys against
    // the process-wide registry.
    BackendRegistry::register_global(Arc::new(AuditedProvider));
    let config = HaConfig::from_yaml_str(
        "custom-backend example",
        "high-availability.type: audited\n\
         high-availability.audited.lease-duration: 500 ms\n\
         high-availability.storageDir: memory://custom-backend\n",
    )?;
    let ha = HaServices::from_config(&config).await?;
    println!("mode {} connected as {}", config.mode(), ha.backend().instance_id());

    let election = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut dispatcher = election.register(ComponentId::new("dispatcher")?)?;
    let grant = dispatcher.granted().await?;
    dispatcher.confirm(&grant, "http://127.0.0.1:8081").await?;
    let retrieval = ha.leader_retrieval_service(&ComponentId::new("dispatcher")?).await?;
    let leader = retrieval.wait_for(Option::is_some).await?;
    println!("retrieval sees {:?}", leader.map(|l| l.address));

    election.close().await?;
    ha.close_and_cleanup_all_data().await?;
    println!("closed: the leadership was resigned and the cluster's data deleted");
    Ok(())
}
