//! Payload-storage faults: what a real failure does to checkpoint payloads.
//!
//! - [`StorageFaults`] injures a case's `file://` storage on disk: the cluster's
//!   storage root goes missing (a volume not mounted yet: the mount point is there and
//!   empty), one payload is deleted or truncated.
//! - [`FaultyStore`] wraps any object store and makes it unavailable (every call fails
//!   as an I/O error would) or slow, switchable at run time through a
//!   [`StorageCondition`] handle.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use ha_core::ClusterId;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

/// How a [`FaultyStore`] behaves right now.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum StorageMode {
    /// Every call goes through.
    #[default]
    Healthy,
    /// Every call fails at once with an I/O error (storage unreachable).
    Unavailable,
    /// Every call waits this long first.
    Slow(Duration),
}

/// A switch shared by every [`FaultyStore`] made with it.
#[derive(Clone, Debug, Default)]
pub struct StorageCondition(Arc<Mutex<StorageMode>>);

impl StorageCondition {
    /// Switches the stores to `mode`.
    pub fn set(&self, mode: StorageMode) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// The current mode.
    pub fn get(&self) -> StorageMode {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An object store that passes every call to `inner` unless its condition says
/// otherwise.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    condition: StorageCondition,
}

impl FaultyStore {
    /// Wraps `inner`, obeying `condition`.
    pub fn wrap(inner: Arc<dyn ObjectStore>, condition: StorageCondition) -> Arc<dyn ObjectStore> {
        Arc::new(Self { inner, condition })
    }

    async fn gate(&self) -> object_store::Result<()> {
        match self.condition.get() {
            StorageMode::Healthy => Ok(()),
            StorageMode::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            StorageMode::Unavailable => Err(unavailable()),
        }
    }
}

fn unavailable() -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "storage unavailable (injected fault)",
        )),
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.gate().await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.gate().await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.gate().await?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        match self.condition.get() {
            StorageMode::Unavailable => stream::once(async { Err(unavailable()) }).boxed(),
            _ => self.inner.delete_stream(locations),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.condition.get() {
            StorageMode::Unavailable => stream::once(async { Err(unavailable()) }).boxed(),
            _ => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.gate().await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.gate().await?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// On-disk faults of one case's `file://` payload storage.
#[derive(Clone, Debug)]
pub struct StorageFaults {
    root: PathBuf,
    cluster_id: ClusterId,
}

impl StorageFaults {
    /// Faults of the storage rooted at directory `root` (the `storageDir`), for
    /// `cluster_id`'s payloads below it.
    pub fn new(root: PathBuf, cluster_id: ClusterId) -> Self {
        Self { root, cluster_id }
    }

    fn cluster_dir(&self) -> PathBuf {
        self.root.join(self.cluster_id.as_str())
    }

    fn hidden_dir(&self) -> PathBuf {
        self.root.join(format!(".unmounted-{}", self.cluster_id))
    }

    /// The volume is not mounted: the cluster's payload directory is moved away and
    /// the storage root is an empty directory, as a mount point without its volume.
    pub fn unmount(&self) {
        std::fs::rename(self.cluster_dir(), self.hidden_dir()).expect("unmount payload storage");
    }

    /// Puts back what [`unmount`](Self::unmount) took away. Anything written to the
    /// bare mount point in between is discarded, as a mount would hide it.
    pub fn remount(&self) {
        let _ = std::fs::remove_dir_all(self.cluster_dir());
        std::fs::rename(self.hidden_dir(), self.cluster_dir()).expect("remount payload storage");
    }

    fn file(&self, payload_path: &str) -> PathBuf {
        // Payload paths are relative to the storage root and start with the cluster-id.
        self.root.join(payload_path)
    }

    /// Deletes one payload (an object lost by the storage).
    pub fn delete_payload(&self, payload_path: &str) {
        std::fs::remove_file(self.file(payload_path)).expect("delete payload");
    }

    /// Cuts one payload to half its length (a torn write).
    pub fn truncate_payload(&self, payload_path: &str) {
        let file = self.file(payload_path);
        let len = std::fs::metadata(&file).expect("payload exists").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(len / 2))
            .expect("truncate payload");
    }
}
