//! `KubeApiEmulator`: an in-process Kubernetes API server for tests, since no real
//! one can be installed on the test machines.
//!
//! It serves plain HTTP on `127.0.0.1:<free port>` and implements the REST semantics
//! the Kubernetes HA backend relies on, for core/v1 `ConfigMap`s and
//! coordination.k8s.io/v1 `Lease`s:
//! - get; list with label and field selectors (`metadata.name`, `metadata.namespace`);
//! - create (409 `AlreadyExists`), update with a `metadata.resourceVersion`
//!   precondition (409 `Conflict` on mismatch; no version = unconditional), merge
//!   patch (a `resourceVersion` in the patch is a precondition too), delete (with
//!   `preconditions`) and delete-collection by selector;
//! - watch from a resourceVersion with `ADDED`/`MODIFIED`/`DELETED` events, replayed
//!   from a bounded history; a version older than the history yields an `ERROR` event
//!   carrying a 410 `Expired` Status, as the real server does; `timeoutSeconds` ends
//!   the stream;
//! - `Status` error bodies; 422 `Invalid` for names that are not RFC 1123 subdomains and
//!   for bad ConfigMap keys; 413 `RequestEntityTooLarge` for objects above 1 MiB.
//!
//! Objects are stored as JSON; one global resourceVersion counter orders every change,
//! as etcd's revision does. [`KubeFaults`] injects latency, errors, lost replies, dropped
//! watches and unavailability. Every request is recorded as an [`ApiAccess`] (RBAC
//! verb, resource, namespace, bearer token) for RBAC checks. Not emulated:
//! authentication and authorization, admission, server-side apply, JSON patch,
//! pagination (`limit` is ignored: lists are complete), bookmarks.
//!
//! Dropping the emulator stops the server and every connection.

mod access;
mod faults;
mod handlers;
mod selector;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub use access::ApiAccess;
pub use faults::KubeFaults;
use store::Store;

/// The largest object the emulator stores (etcd's default request limit in
/// Kubernetes is 1.5 MiB; ConfigMaps are limited to 1 MiB of data).
pub(crate) const MAX_OBJECT_BYTES: usize = 1024 * 1024;

/// How many events the watch history keeps by default.
pub(crate) const DEFAULT_HISTORY: usize = 1000;

pub(crate) struct Shared {
    store: Mutex<Store>,
    faults: KubeFaults,
    requests: AtomicU64,
    accesses: Mutex<BTreeMap<ApiAccess, u64>>,
}

impl Shared {
    fn record(&self, access: ApiAccess) {
        *self
            .accesses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(access)
            .or_insert(0) += 1;
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An in-process Kubernetes API server (ConfigMaps and Leases) on a free loopback port.
pub struct KubeApiEmulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for KubeApiEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApiEmulator").field("addr", &self.addr).finish()
    }
}

impl Drop for KubeApiEmulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl KubeApiEmulator {
    /// Starts an emulator with the default watch history. Must be called within a
    /// Tokio runtime, which then runs the server.
    pub fn start() -> std::io::Result<Self> {
        Self::with_history(DEFAULT_HISTORY)
    }

    /// Starts an emulator whose watch history keeps `events` events; watches from an
    /// older resourceVersion get 410 Gone.
    pub fn with_history(events: usize) -> std::io::Result<Self> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(events)),
            faults: KubeFaults::default(),
            requests: AtomicU64::new(0),
            accesses: Mutex::new(BTreeMap::new()),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Ok(Self { addr, shared, server })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fault switches.
    pub fn faults(&self) -> &KubeFaults {
        &self.shared.faults
    }

    /// Ends every open watch stream now (clients see the stream close and re-watch);
    /// returns how many were open.
    pub fn drop_watches(&self) -> usize {
        self.shared.store().drop_watches()
    }

    /// Marks the server unavailable (every request gets 503, open watches end) or
    /// available again.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.faults.set_unavailable(unavailable);
        if unavailable {
            self.drop_watches();
        }
    }

    /// How many HTTP requests the emulator has received (a watch counts once, when
    /// opened), e.g. to count what idle clients send per renew period.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Every distinct kind of request served so far, with how many times it came
    /// (faulted ones included).
    pub fn accesses(&self) -> BTreeMap<ApiAccess, u64> {
        self.shared.accesses.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The number of open watch streams.
    pub fn watch_count(&self) -> usize {
        let mut store = self.shared.store();
        store.watchers.retain(|w| !w.tx.is_closed());
        store.watchers.len()
    }

    /// A kubeconfig (YAML) pointing at this emulator with `namespace` as default,
    /// usable with `kubectl --kubeconfig` and kube's config loading.
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {url}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: {namespace}\ncurrent-context: emulator\nusers:\n- name: emulator\n  user: {{}}\n",
            url = self.url()
        )
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in the set so that aborting this task ends them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        shared.requests.fetch_add(1, Ordering::Relaxed);
                        handlers::handle(shared.clone(), req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
                        tracing::trace!(error = %e, "emulator connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The current UTC time as RFC 3339 with second precision, as Kubernetes writes
/// timestamps.
pub(crate) fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
