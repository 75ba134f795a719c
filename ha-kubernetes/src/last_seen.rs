//! The ConfigMaps this instance last read or wrote in a fenced read-modify-write,
//! so that the next write to one of them is a single resourceVersion-guarded replace
//! instead of a read and a replace. The guard makes a stale copy harmless: the
//! replace is refused (409) and the write starts over from a fresh read. Bounded in
//! entries and bytes; an entry beyond the bounds only costs a read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;

/// Most ConfigMaps kept.
const MAX_ENTRIES: usize = 1024;
/// Most data bytes kept (keys and values).
const MAX_BYTES: usize = 8 * 1024 * 1024;

/// Last-seen ConfigMaps by name.
#[derive(Default)]
pub(crate) struct LastSeen {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_name: HashMap<String, (Arc<ConfigMap>, usize)>,
    bytes: usize,
}

impl LastSeen {
    /// The ConfigMap `name` as last seen, if kept.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<ConfigMap>> {
        self.lock().by_name.get(name).map(|(cm, _)| cm.clone())
    }

    /// Keeps `cm` as the last-seen state of `name`.
    pub(crate) fn put(&self, name: &str, cm: ConfigMap) {
        let size = data_bytes(&cm);
        let mut e = self.lock();
        e.remove(name);
        if size > MAX_BYTES {
            return;
        }
        while e.by_name.len() >= MAX_ENTRIES || e.bytes + size > MAX_BYTES {
            let Some(victim) = e.by_name.keys().next().cloned() else {
                break;
            };
            e.remove(&victim);
        }
        e.bytes += size;
        e.by_name.insert(name.to_string(), (Arc::new(cm), size));
    }

    /// Forgets `name` (deleted, or its state is unknown).
    pub(crate) fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Entries {
    fn remove(&mut self, name: &str) {
        if let Some((_, size)) = self.by_name.remove(name) {
            self.bytes -= size;
        }
    }
}

fn data_bytes(cm: &ConfigMap) -> usize {
    cm.data
        .as_ref()
        .map_or(0, |d| d.iter().map(|(k, v)| k.len() + v.len()).sum())
}
