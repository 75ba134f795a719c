//! Participants and targeted hand-off, kept apart from the lock record.
//!
//! The lock record names only its holder, so every candidacy registers itself in a
//! `Lease` of its own, `<cluster-id>-participant-<holder>` (labels `app=<cluster-id>`,
//! `ha-kind=participant`, `ha-instance=<instance-id>`; annotation `ha-group`;
//! `holderIdentity` = the candidacy's holder identity), created when it joins and
//! deleted when it resigns or its instance closes. Registering also starts the
//! instance's session `Lease`: a participant is listed only while its instance's
//! session exists, so a crashed contender goes from the list when its session is
//! swept, and the next registration of any contender deletes it. The leader is the
//! participant the group's lock record names.
//!
//! A hand-off is one resourceVersion-guarded update of the lock record, from the
//! leader's own term (holder and `leaderTransitions` equal to the fence) to the
//! target's holder identity with `leaderTransitions` + 1 and a fresh `renewTime`. The
//! old leader ends its term locally first (its writes are refused from then on, and
//! the record's change refuses them at the API server); the target's elector sees
//! its own identity in the record through the shared watch and takes the lock at once
//! with a higher epoch, while every other contender sees a freshly renewed foreign
//! holder and waits a full lease, as for any renewal.

use std::collections::BTreeMap;

use ha_core::driver::{LeaderElectionDriver, Participant};
use ha_core::{ComponentId, Error, Fence, LeaderInformation, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};

use crate::election::KubeElectionDriver;
use crate::error::{bounded, ApiError};
use crate::record::{now_rfc3339, LeaderRecord};
use crate::shared::Shared;
use std::sync::Arc;

const KIND: &str = "participant";
const LABEL_INSTANCE: &str = "ha-instance";
const ANNOTATION_GROUP: &str = "ha-group";
/// How many times a hand-off re-reads after a resourceVersion conflict.
const CONFLICT_RETRIES: usize = 5;

/// `<cluster-id>-participant-<holder>`, lower-cased with characters a name cannot
/// hold replaced (holder identities end in a per-instance counter, so names stay
/// unique).
fn lease_name(core: &Shared, holder: &str) -> String {
    let safe: String = holder
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '.') => c,
            _ => '-',
        })
        .collect();
    format!("{}-participant-{safe}", core.layout.cluster_id())
}

fn selector(core: &Shared) -> String {
    format!("app={},ha-kind={KIND}", core.layout.cluster_id())
}

/// Registers the candidacy `holder` of `group` (and this instance's session).
async fn register(core: &Arc<Shared>, group: &str, holder: &str) -> Result<()> {
    core.sessions.ensure(core).await?;
    let name = lease_name(core, holder);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(core.namespace.clone()),
            labels: Some(BTreeMap::from([
                ("app".to_string(), core.layout.cluster_id().to_string()),
                ("ha-kind".to_string(), KIND.to_string()),
                (LABEL_INSTANCE.to_string(), core.instance_id.clone()),
            ])),
            annotations: Some(BTreeMap::from([(ANNOTATION_GROUP.to_string(), group.to_string())])),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_string()),
            ..Default::default()
        }),
    };
    let api = core.sessions.leases();
    match bounded(
        core.timings.request_timeout(),
        true,
        api.create(&PostParams::default(), &lease),
    )
    .await
    {
        Ok(_) | Err(ApiError::Conflict) => {}
        Err(e) => return Err(e.into_error("register participant", &name)),
    }
    if let Err(e) = prune(core).await {
        tracing::debug!(error = %e, "could not remove registrations of ended sessions");
    }
    Ok(())
}

/// Deletes the registrations whose instance's session is gone (crashed contenders,
/// unlisted already). A registration is made only after its instance's session, so
/// a missing session means the instance ended.
async fn prune(core: &Shared) -> Result<()> {
    let params = ListParams::default().labels(&selector(core));
    let api = core.sessions.leases();
    let timeout = core.timings.request_timeout();
    let list = bounded(timeout, false, api.list(&params))
        .await
        .map_err(|e| e.into_error("list", "participant leases"))?;
    let live = core.sessions.live_owners(core).await?;
    for lease in list.items {
        let instance = lease.metadata.labels.as_ref().and_then(|l| l.get(LABEL_INSTANCE));
        let (Some(instance), Some(name)) = (instance, lease.metadata.name.as_deref()) else {
            continue;
        };
        if live.contains(instance) {
            continue;
        }
        match bounded(timeout, true, api.delete(name, &DeleteParams::default())).await {
            Ok(_) | Err(ApiError::NotFound) => {
                tracing::debug!(participant = %name, "removed the registration of an ended session")
            }
            Err(e) => return Err(e.into_error("delete participant", name)),
        }
    }
    Ok(())
}

/// Deletes the registration of `holder`.
async fn unregister(core: &Shared, holder: &str) -> Result<()> {
    let name = lease_name(core, holder);
    let api = core.sessions.leases();
    match bounded(
        core.timings.request_timeout(),
        true,
        api.delete(&name, &DeleteParams::default()),
    )
    .await
    {
        Ok(_) | Err(ApiError::NotFound) => Ok(()),
        Err(e) => Err(e.into_error("unregister participant", &name)),
    }
}

/// Deletes the registrations of this instance (`instance_only`) or of the whole
/// cluster.
pub(crate) async fn unregister_all(core: &Shared, instance_only: bool) -> Result<()> {
    let mut selector = selector(core);
    if instance_only {
        selector.push_str(&format!(",{LABEL_INSTANCE}={}", core.instance_id));
    }
    let params = ListParams::default().labels(&selector);
    bounded(
        core.timings.request_timeout(),
        true,
        core.sessions
            .leases()
            .delete_collection(&DeleteParams::default(), &params),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.into_error("delete-collection", "participant leases"))
}

/// One live registration: `(instance id, holder identity)`, oldest first.
async fn registrations(core: &Shared, group: &str) -> Result<Vec<(String, String)>> {
    let params = ListParams::default().labels(&selector(core));
    let list = bounded(
        core.timings.request_timeout(),
        false,
        core.sessions.leases().list(&params),
    )
    .await
    .map_err(|e| e.into_error("list", "participant leases"))?;
    let live = core.sessions.live_owners(core).await?;
    let mut out: Vec<(Option<String>, String, String)> = list
        .items
        .into_iter()
        .filter(|l| {
            l.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_GROUP))
                .map(String::as_str)
                == Some(group)
        })
        .filter_map(|l| {
            let instance = l.metadata.labels.as_ref()?.get(LABEL_INSTANCE)?.clone();
            let holder = l.spec?.holder_identity?;
            let created = l.metadata.creation_timestamp.map(|t| t.0.to_string());
            live.contains(&instance).then_some((created, instance, holder))
        })
        .collect();
    out.sort();
    Ok(out.into_iter().map(|(_, i, h)| (i, h)).collect())
}

/// The lock record of `group` now, if readable (from the cluster ConfigMap or the
/// group's Lease, whichever lock this backend uses).
async fn lock_record(core: &Shared, group: &str) -> Result<Option<LeaderRecord>> {
    let lock = core.locks.of(&core.layout, group)?;
    let object = core
        .locks
        .get(core, &lock)
        .await
        .map_err(|e| e.into_error("get", &lock.name))?;
    Ok(object
        .and_then(|o| o.raw_record(&lock.annotation))
        .and_then(|r| LeaderRecord::parse(&r)))
}

/// The contenders of `group`, the lock holder first.
pub(crate) async fn participants(core: &Shared, group: &str) -> Result<Vec<Participant>> {
    let holder = lock_record(core, group).await?.map(|r| r.holder_identity);
    let mut out: Vec<Participant> = registrations(core, group)
        .await?
        .into_iter()
        .map(|(id, h)| Participant {
            id,
            leader: Some(&h) == holder.as_ref(),
        })
        .collect();
    out.sort_by_key(|p| !p.leader);
    Ok(out)
}

/// Writes the lock record of the term `fence` over to the candidacy of `target`
/// (the [`LeaderElectionDriver::hand_off`] of the lock election).
pub(crate) async fn hand_off(core: &Shared, fence: &Fence, target: &str) -> Result<()> {
    let Some((group, own)) = crate::epoch::parse_token(fence) else {
        return Err(fence.rejected("leadership"));
    };
    let (group, own) = (group.to_string(), own.to_string());
    let group = group.as_str();
    let key = format!("leadership of group {group}");
    let Some((_, to)) = registrations(core, group)
        .await?
        .into_iter()
        .find(|(i, h)| i == target && *h != own)
    else {
        return Err(Error::NotFound {
            key: format!("participant `{target}` of group {group}"),
        });
    };
    // From here on this term acts no more, whatever the outcome: a failed hand-off
    // leaves the lock with us and the elector's next renewal takes the term up again.
    core.end_term(&own);
    // One resourceVersion-guarded update of the lock object (the cluster ConfigMap or
    // the group's Lease) that still names this term moves it to the target.
    let lock = core.locks.of(&core.layout, group)?;
    for _ in 0..CONFLICT_RETRIES {
        let found = core
            .locks
            .get(core, &lock)
            .await
            .map_err(|e| e.into_error("get", &lock.name))?;
        let Some(mut object) = found else {
            return Err(fence.rejected(key));
        };
        let current = object
            .raw_record(&lock.annotation)
            .and_then(|r| LeaderRecord::parse(&r));
        let Some(current) = current.filter(|r| r.holder_identity == own && r.leader_transitions == fence.epoch.0)
        else {
            return Err(fence.rejected(key));
        };
        let now = now_rfc3339();
        let handed = LeaderRecord {
            holder_identity: to.clone(),
            lease_duration_seconds: current.lease_duration_seconds,
            acquire_time: now.clone(),
            renew_time: now,
            leader_transitions: current.leader_transitions + 1,
        };
        object.set_record(&lock.annotation, &handed);
        match core.locks.replace(core, &object).await {
            Ok(_) => {
                // A renewal that raced with us may have taken the term up again.
                core.end_term(&own);
                tracing::info!(%group, %target, holder = %to, "leadership handed off");
                return Ok(());
            }
            Err(ApiError::Conflict) => continue,
            Err(e) => return Err(e.into_error("hand off leadership", &lock.name)),
        }
    }
    Err(Error::VersionConflict { key: lock.name })
}

/// The election driver with its participant registration: joins the lock election
/// ([`KubeElectionDriver`]) and registers the candidacy next to it.
pub(crate) struct ParticipantDriver {
    core: Arc<Shared>,
    holder: String,
    inner: KubeElectionDriver,
}

impl ParticipantDriver {
    /// Registers `inner`'s candidacy of `group`.
    pub(crate) async fn register(core: Arc<Shared>, group: &str, inner: KubeElectionDriver) -> Result<Self> {
        let holder = inner.holder().to_string();
        register(&core, group, &holder).await?;
        Ok(Self { core, holder, inner })
    }
}

#[async_trait::async_trait]
impl LeaderElectionDriver for ParticipantDriver {
    async fn publish_leader_information(
        &self,
        fence: &Fence,
        component: &ComponentId,
        info: &LeaderInformation,
    ) -> Result<()> {
        self.inner.publish_leader_information(fence, component, info).await
    }

    async fn delete_leader_information(&self, fence: &Fence, component: &ComponentId) -> Result<()> {
        self.inner.delete_leader_information(fence, component).await
    }

    async fn resign(&self) -> Result<()> {
        let resigned = self.inner.resign().await;
        unregister(&self.core, &self.holder).await?;
        resigned
    }

    async fn hand_off(&self, fence: &Fence, target: &str) -> Result<()> {
        self.inner.hand_off(fence, target).await
    }
}
