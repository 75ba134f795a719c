//! The emulator's object store: objects by (resource, namespace, name), one global
//! resourceVersion counter as etcd has, a bounded event history for watches, and the
//! live watchers.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::selector::Selector;

/// The resource kinds the emulator serves.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub(crate) enum Resource {
    /// core/v1 ConfigMaps.
    ConfigMaps,
    /// coordination.k8s.io/v1 Leases.
    Leases,
}

impl Resource {
    pub(crate) fn plural(self) -> &'static str {
        match self {
            Resource::ConfigMaps => "configmaps",
            Resource::Leases => "leases",
        }
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Resource::ConfigMaps => "ConfigMap",
            Resource::Leases => "Lease",
        }
    }

    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Resource::ConfigMaps => "v1",
            Resource::Leases => "coordination.k8s.io/v1",
        }
    }

    pub(crate) fn group(self) -> &'static str {
        match self {
            Resource::ConfigMaps => "",
            Resource::Leases => "coordination.k8s.io",
        }
    }
}

type Key = (Resource, String, String);

/// A change as watchers see it, kept in the history in its wire form: the line is
/// serialized once for every watcher, and keeping or evicting an event costs the same
/// whatever the size of the object (as the API server's watch cache, an old large
/// object does not slow down later writes).
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) rv: u64,
    pub(crate) resource: Resource,
    pub(crate) namespace: String,
    /// What selectors read: `{"metadata": {"name", "namespace", "labels"}}`.
    pub(crate) selectable: Value,
    /// The watch wire line (type and object).
    pub(crate) line: Bytes,
}

impl Event {
    /// The watch wire form: one JSON object per line.
    pub(crate) fn line(kind: &str, object: &Value) -> Bytes {
        let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }
}

/// One open watch stream.
pub(crate) struct Watcher {
    pub(crate) resource: Resource,
    /// `None`: all namespaces.
    pub(crate) namespace: Option<String>,
    pub(crate) labels: Selector,
    pub(crate) fields: Selector,
    pub(crate) tx: mpsc::UnboundedSender<Bytes>,
}

impl Watcher {
    pub(crate) fn wants(&self, resource: Resource, namespace: &str, object: &Value) -> bool {
        self.resource == resource
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self.labels.matches_labels(object)
            && self.fields.matches_fields(object)
    }
}

pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Event>,
    history_cap: usize,
    /// Highest resourceVersion whose event was evicted from the history: watches from
    /// an older version get 410 Gone.
    compacted: u64,
    pub(crate) watchers: Vec<Watcher>,
}

impl Store {
    pub(crate) fn new(history_cap: usize) -> Self {
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            compacted: 1,
            watchers: Vec::new(),
        }
    }

    pub(crate) fn current_rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn compacted_rv(&self) -> u64 {
        self.compacted
    }

    pub(crate) fn get(&self, resource: Resource, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(resource, ns.to_string(), name.to_string()))
    }

    /// Objects of `resource` in `ns` (all namespaces if `None`), in name order.
    pub(crate) fn list<'a>(
        &'a self,
        resource: Resource,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.objects
            .iter()
            .filter(move |((r, n, _), _)| *r == resource && ns.is_none_or(|x| x == n))
            .map(|((_, n, _), v)| (n.as_str(), v))
    }

    /// Stores `object` under a fresh resourceVersion and notifies watchers; returns
    /// the stored object.
    pub(crate) fn put(
        &mut self,
        resource: Resource,
        ns: &str,
        name: &str,
        mut object: Value,
        kind: &'static str,
    ) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.record(resource, ns, kind, &object);
        self.objects
            .insert((resource, ns.to_string(), name.to_string()), object.clone());
        object
    }

    /// Removes an object and notifies watchers with its final state.
    pub(crate) fn remove(&mut self, resource: Resource, ns: &str, name: &str) -> Option<Value> {
        let mut object = self.objects.remove(&(resource, ns.to_string(), name.to_string()))?;
        self.rv += 1;
        // As in the API server, the DELETED event carries the deletion's revision.
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.record(resource, ns, "DELETED", &object);
        Some(object)
    }

    fn record(&mut self, resource: Resource, ns: &str, kind: &'static str, object: &Value) {
        let meta = &object["metadata"];
        let event = Event {
            rv: self.rv,
            resource,
            namespace: ns.to_string(),
            selectable: json!({"metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "labels": meta["labels"],
            }}),
            line: Event::line(kind, object),
        };
        self.watchers
            .retain(|w| !w.wants(resource, ns, &event.selectable) || w.tx.send(event.line.clone()).is_ok());
        self.history.push_back(event);
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// Events after `rv`, oldest first.
    pub(crate) fn events_since(&self, rv: u64) -> impl Iterator<Item = &Event> {
        self.history.iter().filter(move |e| e.rv > rv)
    }

    /// Ends every open watch (their streams close after what was already sent).
    pub(crate) fn drop_watches(&mut self) -> usize {
        let n = self.watchers.len();
        self.watchers.clear();
        n
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The history keeps the wire line of each change and what selectors read: a
    /// watch replayed from an old version gets exactly the matching changes, whole.
    #[test]
    fn history_replays_matching_changes_in_wire_form() {
        let mut store = Store::new(10);
        let big: String = "x".repeat(10_000);
        let cm = |name: &str, app: &str| json!({"metadata": {"name": name, "namespace": "ns", "labels": {"app": app}}, "data": {"k": big}});
        let start = store.current_rv();
        store.put(Resource::ConfigMaps, "ns", "a", cm("a", "one"), "ADDED");
        store.put(Resource::ConfigMaps, "ns", "b", cm("b", "two"), "ADDED");
        store.remove(Resource::ConfigMaps, "ns", "a");
        let (tx, _rx) = mpsc::unbounded_channel();
        let watcher = Watcher {
            resource: Resource::ConfigMaps,
            namespace: Some("ns".into()),
            labels: Selector::parse("app=one").unwrap(),
            fields: Selector::parse("").unwrap(),
            tx,
        };
        let lines: Vec<Value> = store
            .events_since(start)
            .filter(|e| watcher.wants(e.resource, &e.namespace, &e.selectable))
            .map(|e| serde_json::from_slice(&e.line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["type"], "ADDED");
        assert_eq!(lines[1]["type"], "DELETED");
        assert_eq!(lines[0]["object"]["data"]["k"].as_str().map(str::len), Some(10_000));
        assert_eq!(lines[1]["object"]["metadata"]["name"], "a");
        // Evicted beyond the cap: a watch from before is told it is too old.
        for i in 0..20 {
            store.put(Resource::ConfigMaps, "ns", "c", cm("c", &i.to_string()), "MODIFIED");
        }
        assert!(store.compacted_rv() > start);
        assert_eq!(store.events_since(start).count(), 10);
    }
}
