//! `HaServices`: one backend instance plus payload storage, and the factory of every
//! HA service on top of them.

use std::sync::Arc;

use super::checkpoints::RetainedViews;
use super::metered::{MeteredCounter, MeteredStore};
use super::{
    BlobStore, CheckpointIdCounter, CheckpointRetention, CompletedCheckpointStore, JobGraphStore, JobResultRetention,
    JobResultStore, LeaderElectionService, LeaderObserver, LeaderRetrievalService, OnUnreadable, PayloadCleaner,
    DEFAULT_OBSERVE_INTERVAL,
};
use crate::config::{BackendRegistry, HaConfig};
use crate::driver::{HaBackend, Participant, StoreNamespace};
use crate::error::Result;
use crate::ids::{ClusterId, ComponentId, ElectionGroup, JobId};
use crate::storage::StateStorage;

/// The election group used when an application does not choose one.
pub const DEFAULT_ELECTION_GROUP: &str = "cluster";

/// Everything HA for one process of one cluster.
#[derive(Clone, Debug)]
pub struct HaServices {
    backend: Arc<dyn HaBackend>,
    storage: StateStorage,
    cleaner: PayloadCleaner,
    num_retained: usize,
    on_unreadable: OnUnreadable,
    checkpoint_retention: CheckpointRetention,
    job_result_retention: JobResultRetention,
    observe_interval: std::time::Duration,
    views: RetainedViews,
}

impl HaServices {
    /// Connects the backend chosen by `config` (through the process-wide registry)
    /// and opens payload storage.
    pub async fn from_config(config: &HaConfig) -> Result<Self> {
        Self::from_config_with(config, &BackendRegistry::global()).await
    }

    /// Like [`HaServices::from_config`] with an explicit registry.
    pub async fn from_config_with(config: &HaConfig, registry: &BackendRegistry) -> Result<Self> {
        registry.validate(config)?;
        let storage = StateStorage::open(config.storage_dir(), config.cluster_id(), config.storage_options())?;
        let backend = registry.connect(config).await?;
        Ok(Self::new(backend, storage, config.num_retained())
            .with_on_unreadable(config.on_unreadable())
            .with_checkpoint_retention(config.checkpoint_retention())
            .with_job_result_retention(config.job_result_retention())
            .with_observe_interval(config.observe_interval()))
    }

    /// Assembles services from parts (needs a Tokio runtime for the cleaner).
    pub fn new(backend: Arc<dyn HaBackend>, storage: StateStorage, num_retained: usize) -> Self {
        let cleaner = PayloadCleaner::start(storage.clone());
        Self {
            backend,
            storage,
            cleaner,
            num_retained: num_retained.max(1),
            on_unreadable: OnUnreadable::default(),
            checkpoint_retention: CheckpointRetention::default(),
            job_result_retention: JobResultRetention::default(),
            observe_interval: DEFAULT_OBSERVE_INTERVAL,
            views: RetainedViews::default(),
        }
    }

    /// Sets what a job's end keeps of its checkpoints
    /// (`execution.checkpointing.externalized-checkpoint-retention`).
    pub fn with_checkpoint_retention(mut self, retention: CheckpointRetention) -> Self {
        self.checkpoint_retention = retention;
        self
    }

    /// What a job's end keeps of its checkpoints.
    pub fn checkpoint_retention(&self) -> CheckpointRetention {
        self.checkpoint_retention
    }

    /// Sets how long clean job results are kept (`job-result-store.delete-on-commit`,
    /// `job-result-store.retention`).
    pub fn with_job_result_retention(mut self, retention: JobResultRetention) -> Self {
        self.job_result_retention = retention;
        self
    }

    /// How long clean job results are kept.
    pub fn job_result_retention(&self) -> JobResultRetention {
        self.job_result_retention
    }

    /// Sets what checkpoint recovery does with unreadable entries
    /// (`high-availability.checkpoints.on-unreadable`).
    pub fn with_on_unreadable(mut self, policy: OnUnreadable) -> Self {
        self.on_unreadable = policy;
        self
    }

    /// The cluster served.
    pub fn cluster_id(&self) -> &ClusterId {
        self.backend.cluster_id()
    }

    /// The backend instance.
    pub fn backend(&self) -> &Arc<dyn HaBackend> {
        &self.backend
    }

    /// The payload storage.
    pub fn storage(&self) -> &StateStorage {
        &self.storage
    }

    /// The payload cleaner (e.g. to [`flush`](PayloadCleaner::flush) it).
    pub fn cleaner(&self) -> &PayloadCleaner {
        &self.cleaner
    }

    /// Joins the election of `group` (use [`DEFAULT_ELECTION_GROUP`] unless jobs must
    /// fail over independently).
    pub async fn leader_election_service(&self, group: &str) -> Result<LeaderElectionService> {
        LeaderElectionService::start(self.backend.clone(), group).await
    }

    /// The contenders of election `group` now (the leader first), read without
    /// contending (Curator's `getParticipants`).
    pub async fn participants(&self, group: &str) -> Result<Vec<Participant>> {
        self.backend.participants(&ElectionGroup::new(group)?).await
    }

    /// Follows the leader of election `group` without contending, reading every
    /// `high-availability.election.observe-interval`.
    pub async fn leader_observer(&self, group: &str) -> Result<LeaderObserver> {
        LeaderObserver::start(self.backend.clone(), group, self.observe_interval).await
    }

    /// Sets how often a [`LeaderObserver`] reads the participants
    /// (`high-availability.election.observe-interval`).
    pub fn with_observe_interval(mut self, interval: std::time::Duration) -> Self {
        self.observe_interval = interval;
        self
    }

    /// Watches the confirmed leader of `component`.
    pub async fn leader_retrieval_service(&self, component: &ComponentId) -> Result<LeaderRetrievalService> {
        LeaderRetrievalService::start(self.backend.as_ref(), component).await
    }

    /// The job-graph store.
    pub async fn job_graph_store(&self) -> Result<JobGraphStore> {
        let store = self.store(&StoreNamespace::JobGraphs).await?;
        Ok(JobGraphStore::new(store, self.storage.clone(), self.cleaner.clone()))
    }

    /// The completed-checkpoint store of `job`.
    pub async fn completed_checkpoint_store(&self, job: &JobId) -> Result<CompletedCheckpointStore> {
        let store = self.store(&StoreNamespace::Checkpoints(job.clone())).await?;
        Ok(CompletedCheckpointStore::new(
            job.clone(),
            store,
            self.storage.clone(),
            self.cleaner.clone(),
            self.num_retained,
        )
        .with_on_unreadable(self.on_unreadable)
        .with_retention(self.checkpoint_retention)
        .with_view(self.views.of(job)))
    }

    /// The checkpoint-id counter of `job`.
    pub async fn checkpoint_id_counter(&self, job: &JobId) -> Result<CheckpointIdCounter> {
        Ok(CheckpointIdCounter::new(Arc::new(MeteredCounter(
            self.backend.checkpoint_id_counter(job).await?,
        ))))
    }

    /// The job-result store.
    pub async fn job_result_store(&self) -> Result<JobResultStore> {
        let store = self.store(&StoreNamespace::JobResults).await?;
        Ok(JobResultStore::new(store, self.storage.clone()).with_retention(self.job_result_retention))
    }

    async fn store(&self, namespace: &StoreNamespace) -> Result<Arc<dyn crate::driver::StateHandleStore>> {
        Ok(Arc::new(MeteredStore(
            self.backend.state_handle_store(namespace).await?,
        )))
    }

    /// The blob store.
    pub fn blob_store(&self) -> BlobStore {
        BlobStore::new(self.storage.clone())
    }

    /// Closes the backend instance gracefully (resign, release locks); data stays.
    pub async fn close(&self) -> Result<()> {
        self.cleaner.flush().await;
        self.backend.close().await
    }

    /// Deletes every HA record and payload of the cluster, then closes.
    pub async fn close_and_cleanup_all_data(&self) -> Result<()> {
        self.cleaner.flush().await;
        self.backend.cleanup_all_data().await?;
        self.storage.delete_all().await?;
        self.backend.close().await
    }
}
