//! The ConfigMap client: ConfigMaps of one namespace, every request bounded and its
//! failure classified by [`crate::error`].

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::Api;

use crate::error::{bounded, ApiError};

/// Kubernetes' limit on the data of one ConfigMap.
pub(crate) const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;

/// ConfigMaps of one namespace, with bounded requests.
#[derive(Clone)]
pub(crate) struct ConfigMaps {
    api: Api<ConfigMap>,
    timeout: Duration,
}

impl ConfigMaps {
    pub(crate) fn new(api: Api<ConfigMap>, timeout: Duration) -> Self {
        Self { api, timeout }
    }

    async fn bounded<T>(&self, mutating: bool, fut: impl Future<Output = kube::Result<T>>) -> Result<T, ApiError> {
        bounded(self.timeout, mutating, fut).await
    }

    /// The ConfigMap, `None` if absent.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<ConfigMap>, ApiError> {
        self.bounded(false, self.api.get_opt(name)).await
    }

    /// Creates `cm`; `Conflict` if it exists.
    pub(crate) async fn create(&self, cm: &ConfigMap) -> Result<ConfigMap, ApiError> {
        self.bounded(true, self.api.create(&PostParams::default(), cm)).await
    }

    /// Replaces `cm` iff its `metadata.resourceVersion` is current; `Conflict` if not.
    pub(crate) async fn replace(&self, name: &str, cm: &ConfigMap) -> Result<ConfigMap, ApiError> {
        self.bounded(true, self.api.replace(name, &PostParams::default(), cm))
            .await
    }

    /// Deletes `name` iff its resourceVersion is `rv`; `Ok(false)` if it was absent.
    pub(crate) async fn delete(&self, name: &str, rv: Option<String>) -> Result<bool, ApiError> {
        let params = DeleteParams {
            preconditions: rv.map(|rv| Preconditions {
                resource_version: Some(rv),
                uid: None,
            }),
            ..Default::default()
        };
        match self.bounded(true, self.api.delete(name, &params)).await {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// ConfigMaps matching a label selector.
    pub(crate) async fn list(&self, selector: &str) -> Result<Vec<ConfigMap>, ApiError> {
        let params = ListParams::default().labels(selector);
        Ok(self.bounded(false, self.api.list(&params)).await?.items)
    }

    /// Deletes every ConfigMap matching a label selector.
    pub(crate) async fn delete_all(&self, selector: &str) -> Result<(), ApiError> {
        let list = ListParams::default().labels(selector);
        self.bounded(true, self.api.delete_collection(&DeleteParams::default(), &list))
            .await
            .map(|_| ())
    }
}
