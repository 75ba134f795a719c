//! Hand-over of ha-rs leadership between two processes: graceful (the leader resigns)
//! and crash (the leader's session/lease must run out).

use std::time::{Duration, Instant};

use ha_core::{ClusterId, ComponentId, DEFAULT_ELECTION_GROUP};

use crate::procs::Samples;
use crate::systems::{Endpoints, Kind};
use crate::{BoxResult, Budget};

/// How long the follower is given to be queued before the leader goes away.
const QUEUE_SETTLE: Duration = Duration::from_millis(100);

/// One hand-over: `crash` picks the scenario. Returns leader gone → follower granted,
/// and → follower granted and confirmed.
async fn once(endpoints: &Endpoints, kind: Kind, crash: bool) -> BoxResult<(Duration, Duration)> {
    let cluster = ClusterId::random("bench-handover");
    let component = ComponentId::new("dispatcher")?;
    let limit = endpoints.ttl() * 10 + Duration::from_secs(10);

    let a = endpoints.connect(kind, &cluster).await?;
    let svc_a = a.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut ea = svc_a.register(component.clone())?;
    tokio::time::timeout(limit, ea.granted()).await??;

    let b = endpoints.connect(kind, &cluster).await?;
    let svc_b = b.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut eb = svc_b.register(component)?;
    tokio::time::sleep(QUEUE_SETTLE).await;
    if eb.current().is_some() {
        return Err("follower granted while the leader was alive".into());
    }

    let start = Instant::now();
    if crash {
        drop((ea, svc_a));
        a.crash();
    } else {
        svc_a.close().await?;
    }
    let grant = tokio::time::timeout(limit, eb.granted()).await??;
    let granted = start.elapsed();
    eb.confirm(&grant, "bench://b").await?;
    let confirmed = start.elapsed();

    svc_b.close().await?;
    b.cleanup().await;
    Ok((granted, confirmed))
}

/// Up to `runs` hand-overs within `budget` (no retriever: one process).
pub(crate) async fn measure(
    endpoints: &Endpoints,
    kind: Kind,
    crash: bool,
    runs: usize,
    budget: Budget,
) -> BoxResult<Samples> {
    let mut samples = Samples::default();
    for _ in 0..runs {
        if budget.exhausted() && !samples.granted.is_empty() {
            break;
        }
        let (granted, confirmed) = once(endpoints, kind, crash).await?;
        samples.granted.push(granted);
        samples.confirmed.push(confirmed);
    }
    Ok(samples)
}
