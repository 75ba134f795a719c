//! [`StateStorage`]: payloads in an object store, addressed by [`StateHandle`]s.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

use super::handle::{StateHandle, HANDLE_FORMAT};
use crate::error::{Error, Result};
use crate::ids::ClusterId;

/// Config key of the storage URL, named in errors.
const STORAGE_DIR_KEY: &str = "high-availability.storageDir";

/// Payload storage of one cluster, rooted at `<storageDir>/<cluster-id>/`.
#[derive(Clone)]
pub struct StateStorage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
}

impl fmt::Debug for StateStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStorage")
            .field("url", &self.url)
            .field("root", &self.root)
            .finish()
    }
}

/// `memory://NAME` stores are shared process-wide by name, so that several backend
/// instances of one process (contenders in a test or demo) see the same payloads.
fn shared_memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    stores
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

/// `scheme://user:pw@host/…` → `scheme://<redacted>@host/…`, textually (for strings
/// that do not even parse as URLs).
fn without_user_info(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => format!("{}<redacted>{}", &url[..start], &url[start + at..]),
        None => url.to_string(),
    }
}

fn storage_err(what: &str, e: object_store::Error) -> Error {
    Error::unavailable(format!("payload storage: {what}"), e)
}

impl StateStorage {
    /// Opens the storage at `url` for `cluster_id`.
    ///
    /// `options` are object_store settings for `s3://` (e.g. `aws_endpoint`,
    /// `aws_access_key_id`, `aws_allow_http`) plus `max-retries` and `retry-timeout`
    /// (how long one storage call may retry; object_store's defaults are 10 and 3 min);
    /// `AWS_*` environment variables are read as well. Errors name `high-availability.storageDir` or the offending option.
    pub fn open(url: &str, cluster_id: &ClusterId, options: &BTreeMap<String, String>) -> Result<Self> {
        if crate::config::url_has_password(url) {
            // Every message below quotes the URL: refuse before any of them.
            return Err(Error::config(
                STORAGE_DIR_KEY,
                "must not carry a password in the URL (`user:password@`); use high-availability.storage.* options",
            ));
        }
        let parsed = Url::parse(url).map_err(|e| {
            Error::config(
                STORAGE_DIR_KEY,
                format!("`{}` is not a URL: {e}", without_user_info(url)),
            )
        })?;
        let (store, base): (Arc<dyn ObjectStore>, Path) = match parsed.scheme() {
            "file" => {
                if parsed.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(Error::config(
                        STORAGE_DIR_KEY,
                        format!("`{url}` names a host; use file:///absolute/path"),
                    ));
                }
                let dir = parsed
                    .to_file_path()
                    .map_err(|_| Error::config(STORAGE_DIR_KEY, format!("`{url}` is not an absolute file path")))?;
                // A missing root is never created here: it is a volume not mounted or a
                // wrong path, and an empty stand-in would hide every payload.
                if !dir.is_dir() {
                    return Err(Error::config(
                        STORAGE_DIR_KEY,
                        format!(
                            "directory {} does not exist (not mounted?); create it when setting up the cluster",
                            dir.display()
                        ),
                    ));
                }
                // Durable before acknowledged: each payload and its directory are fsynced
                // before the pointer that references it is written.
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| Error::config(STORAGE_DIR_KEY, format!("cannot open {}: {e}", dir.display())))?
                    .with_automatic_cleanup(true)
                    .with_fsync(true);
                (Arc::new(fs), Path::default())
            }
            "memory" => {
                let name = format!("{}{}", parsed.host_str().unwrap_or(""), parsed.path());
                (shared_memory_store(&name), Path::default())
            }
            "s3" | "s3a" => {
                let bucket = parsed.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(Error::config(STORAGE_DIR_KEY, format!("`{url}` has no bucket")));
                }
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                let mut retry = object_store::RetryConfig::default();
                for (key, value) in options {
                    // Our own keys bound how long a storage call may retry, so an
                    // unreachable store surfaces as `Unavailable` in time.
                    match key.as_str() {
                        "max-retries" => {
                            retry.max_retries = value.trim().parse().map_err(|_| {
                                Error::config(
                                    format!("high-availability.storage.{key}"),
                                    format!("must be a non-negative integer, got `{value}`"),
                                )
                            })?;
                            continue;
                        }
                        "retry-timeout" => {
                            retry.retry_timeout = crate::config::parse_duration(value)
                                .map_err(|e| Error::config(format!("high-availability.storage.{key}"), e))?;
                            continue;
                        }
                        _ => {}
                    }
                    let parsed_key: AmazonS3ConfigKey = key.parse().map_err(|_| {
                        Error::config(
                            format!("high-availability.storage.{key}"),
                            "unknown S3 option (object_store keys such as aws_endpoint, aws_region, aws_access_key_id, aws_secret_access_key, aws_allow_http)",
                        )
                    })?;
                    builder = builder.with_config(parsed_key, value);
                }
                let s3 = builder
                    .with_retry(retry)
                    .build()
                    .map_err(|e| Error::config(STORAGE_DIR_KEY, format!("cannot configure S3 for `{url}`: {e}")))?;
                (Arc::new(s3), Path::parse(parsed.path()).unwrap_or_default())
            }
            other => {
                return Err(Error::config(
                    STORAGE_DIR_KEY,
                    format!("unsupported URL scheme `{other}` in `{url}`; valid schemes: file, memory, s3"),
                ))
            }
        };
        if parsed.scheme() != "s3" && parsed.scheme() != "s3a" && !options.is_empty() {
            let key = options.keys().next().map(String::as_str).unwrap_or_default();
            return Err(Error::config(
                format!("high-availability.storage.{key}"),
                format!("storage options apply only to s3:// URLs, not `{url}`"),
            ));
        }
        Ok(Self::with_store(store, base, cluster_id, url))
    }

    /// Wraps an existing object store; payloads go under `base/<cluster-id>/`.
    pub fn with_store(store: Arc<dyn ObjectStore>, base: Path, cluster_id: &ClusterId, url: &str) -> Self {
        let root = base.clone().join(cluster_id.as_str());
        Self {
            store,
            root,
            url: url.to_string(),
        }
    }

    /// Wraps the underlying object store with `wrap` (metrics, throttling, fault
    /// injection); the root and URL stay.
    pub fn map_store(self, wrap: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>) -> Self {
        Self {
            store: wrap(self.store),
            ..self
        }
    }

    /// The storage URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes `data` as a new payload under `<kind>/<name>-<uuid>` and returns its
    /// pointer. A fresh object every time: a retry never overwrites a payload another
    /// pointer may already reference.
    pub async fn store(&self, kind: &str, name: &str, data: Bytes) -> Result<StateHandle> {
        let path = self.rel_path(kind)?.join(format!("{name}-{}", Uuid::new_v4().simple()));
        let sha256 = hex::encode(Sha256::digest(&data));
        let size = data.len() as u64;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&path, PutPayload::from_bytes(data), opts)
            .await
            .map_err(|e| storage_err(&format!("writing {path}"), e))?;
        Ok(StateHandle {
            format: HANDLE_FORMAT,
            path: path.to_string(),
            size,
            sha256,
        })
    }

    /// Reads and verifies the payload of `handle`, read from backend entry `key`.
    pub async fn retrieve(&self, key: &str, handle: &StateHandle) -> Result<Bytes> {
        let path = Path::parse(&handle.path)
            .map_err(|e| Error::corrupt(key, Some(handle.path.clone()), format!("invalid payload path: {e}")))?;
        let data = match self.store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| storage_err(&format!("reading {path}"), e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::MissingPayload {
                    key: key.to_string(),
                    path: handle.path.clone(),
                })
            }
            Err(e) => return Err(storage_err(&format!("reading {path}"), e)),
        };
        if data.len() as u64 != handle.size {
            return Err(Error::corrupt(
                key,
                Some(handle.path.clone()),
                format!("payload is {} bytes, pointer says {}", data.len(), handle.size),
            ));
        }
        let actual = hex::encode(Sha256::digest(&data));
        if actual != handle.sha256 {
            return Err(Error::corrupt(
                key,
                Some(handle.path.clone()),
                format!(
                    "checksum mismatch: payload sha256 {actual}, pointer says {}",
                    handle.sha256
                ),
            ));
        }
        Ok(data)
    }

    /// Deletes the payload of `handle`; a payload already gone counts as deleted.
    pub async fn discard(&self, handle: &StateHandle) -> Result<()> {
        let path = Path::parse(&handle.path).map_err(|e| {
            Error::corrupt(
                "discard",
                Some(handle.path.clone()),
                format!("invalid payload path: {e}"),
            )
        })?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_err(&format!("deleting {path}"), e)),
        }
    }

    async fn list_paths(&self) -> Result<Vec<Path>> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.root))
            .try_collect()
            .await
            .map_err(|e| storage_err(&format!("listing {}", self.root), e))?;
        let mut paths: Vec<Path> = metas.into_iter().map(|m| m.location).collect();
        paths.sort();
        Ok(paths)
    }

    /// Paths of every payload of the cluster.
    pub async fn list_all(&self) -> Result<Vec<String>> {
        Ok(self.list_paths().await?.into_iter().map(|p| p.to_string()).collect())
    }

    /// Deletes every payload of the cluster.
    pub async fn delete_all(&self) -> Result<()> {
        for path in self.list_paths().await? {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage_err(&format!("deleting {path}"), e)),
            }
        }
        Ok(())
    }

    /// Writes `data` at the fixed relative path `rel` (overwriting).
    pub async fn put_at(&self, rel: &str, data: Bytes) -> Result<()> {
        let path = self.rel_path(rel)?;
        self.store
            .put(&path, PutPayload::from_bytes(data))
            .await
            .map(|_| ())
            .map_err(|e| storage_err(&format!("writing {path}"), e))
    }

    /// Reads the object at relative path `rel`; `NotFound` if absent.
    pub async fn get_at(&self, rel: &str) -> Result<Bytes> {
        let path = self.rel_path(rel)?;
        match self.store.get(&path).await {
            Ok(r) => r.bytes().await.map_err(|e| storage_err(&format!("reading {path}"), e)),
            Err(object_store::Error::NotFound { .. }) => Err(Error::NotFound { key: path.to_string() }),
            Err(e) => Err(storage_err(&format!("reading {path}"), e)),
        }
    }

    /// Deletes the object at `rel` and everything below it.
    pub async fn delete_prefix(&self, rel: &str) -> Result<()> {
        let path = self.rel_path(rel)?;
        // `rel` may be an object, a "directory" of objects, or both.
        match self.store.head(&path).await {
            Ok(_) => match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage_err(&format!("deleting {path}"), e)),
            },
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(storage_err(&format!("reading {path}"), e)),
        }
        let below: Vec<_> = self
            .store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|e| storage_err(&format!("listing {path}"), e))?;
        for meta in below {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage_err(&format!("deleting {}", meta.location), e)),
            }
        }
        Ok(())
    }

    fn rel_path(&self, rel: &str) -> Result<Path> {
        let mut path = self.root.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." {
                return Err(Error::Other {
                    message: format!("invalid storage path `{rel}`"),
                    source: None,
                });
            }
            path = path.join(part);
        }
        Ok(path)
    }

    /// Overwrites the payload at `path` with `data`. Only for fault-injection tests
    /// that corrupt a payload on purpose.
    #[doc(hidden)]
    pub async fn overwrite_for_test(&self, path: &str, data: Bytes) -> Result<()> {
        let path = Path::parse(path).map_err(|e| Error::Other {
            message: e.to_string(),
            source: None,
        })?;
        self.store
            .put(&path, PutPayload::from_bytes(data))
            .await
            .map(|_| ())
            .map_err(|e| storage_err(&format!("writing {path}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterId {
        ClusterId::random("st")
    }

    #[tokio::test]
    async fn file_storage_round_trip_and_verification() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let s = StateStorage::open(&url, &cluster(), &BTreeMap::new()).unwrap();
        let h = s
            .store("checkpoints", "cp-1", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(s.retrieve("k", &h).await.unwrap(), Bytes::from_static(b"hello"));
        assert_eq!(s.list_all().await.unwrap().len(), 1);

        s.overwrite_for_test(&h.path, Bytes::from_static(b"hellO"))
            .await
            .unwrap();
        let err = s.retrieve("checkpointID-1", &h).await.unwrap_err().to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("checkpointID-1") && err.contains(&h.path),
            "{err}"
        );

        s.discard(&h).await.unwrap();
        s.discard(&h).await.unwrap();
        let err = s.retrieve("checkpointID-1", &h).await.unwrap_err();
        assert!(matches!(err, Error::MissingPayload { .. }), "{err}");
        assert!(s.list_all().await.unwrap().is_empty());
    }

    #[test]
    fn file_storage_fsyncs_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let s = StateStorage::open(&url, &cluster(), &BTreeMap::new()).unwrap();
        let shown = format!("{:?}", s.store);
        assert!(
            shown.contains("fsync: true"),
            "file:// payloads must be fsynced: {shown}"
        );
    }

    #[test]
    fn missing_file_root_is_an_error_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not-mounted");
        let url = format!("file://{}", missing.display());
        let err = StateStorage::open(&url, &cluster(), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("high-availability.storageDir") && err.contains(&missing.display().to_string()),
            "{err}"
        );
        assert!(!missing.exists(), "a missing storage root must not be created");
    }

    #[tokio::test]
    async fn memory_storage_is_shared_by_name() {
        let c = cluster();
        let a = StateStorage::open("memory://shared-test", &c, &BTreeMap::new()).unwrap();
        let b = StateStorage::open("memory://shared-test", &c, &BTreeMap::new()).unwrap();
        let h = a.store("blobs", "b", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(b.retrieve("k", &h).await.unwrap(), Bytes::from_static(b"x"));
        b.delete_all().await.unwrap();
        assert!(a.list_all().await.unwrap().is_empty());
    }

    #[test]
    fn bad_urls_name_the_key() {
        let c = cluster();
        let err = StateStorage::open("ftp://x/y", &c, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("high-availability.storageDir") && err.contains("file, memory, s3"),
            "{err}"
        );
        let err = StateStorage::open("not a url", &c, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("high-availability.storageDir"), "{err}");
        let mut opts = BTreeMap::new();
        opts.insert("aws_no_such_option".to_string(), "1".to_string());
        let err = StateStorage::open("s3://bucket/p", &c, &opts).unwrap_err().to_string();
        assert!(err.contains("high-availability.storage.aws_no_such_option"), "{err}");
    }
}
