//! The raw-client baselines: the same bytes written, and the same counter advanced,
//! with the plain client of each server and no HA layer.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use zookeeper_client as zk;

use crate::systems::{Endpoints, Kind, KUBE_NAMESPACE};
use crate::BoxResult;

/// A raw client bound to one key (znode, etcd key, ConfigMap), with the version it
/// last wrote: a raw write replaces the value only if it is still that version, as the
/// fenced pointer write (a compare-and-set on the entry's version) does, so that the
/// two differ by the fence alone.
#[derive(Clone)]
pub(crate) enum Raw {
    /// Client, path, znode version.
    Zk(zk::Client, String, i32),
    /// Client, key, mod-revision.
    Etcd(Box<etcd_client::Client>, String, i64),
    /// The API, and the object as last written (its resourceVersion included).
    Kube(Api<ConfigMap>, Box<ConfigMap>),
}

const KUBE_KEY: &str = "value";

impl Raw {
    /// A fresh key holding `initial`; `None` for backends without a raw client.
    pub(crate) async fn create(endpoints: &Endpoints, kind: Kind, initial: &[u8]) -> BoxResult<Option<Self>> {
        let name = ha_core::ClusterId::random("raw").to_string();
        Ok(Some(match kind {
            Kind::Embedded => return Ok(None),
            Kind::Zookeeper => {
                let client = zk::Client::connector()
                    .with_session_timeout(endpoints.ttl())
                    .connect(&endpoints.zk_connect_string()?)
                    .await?;
                let path = format!("/ha-bench-raw/{name}");
                let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                match client.create("/ha-bench-raw", &[], &options).await {
                    Ok(_) | Err(zk::Error::NodeExists) => {}
                    Err(e) => return Err(e.into()),
                }
                let (stat, _) = client.create(&path, initial, &options).await?;
                let version = if stat.version >= 0 {
                    stat.version
                } else {
                    client.check_stat(&path).await?.map_or(0, |s| s.version)
                };
                Raw::Zk(client, path, version)
            }
            Kind::Etcd => {
                let mut client = Box::new(etcd_client::Client::connect(endpoints.etcd_endpoints()?, None).await?);
                let key = format!("/ha-bench-raw/{name}");
                let put = client.put(key.as_str(), initial, None).await?;
                let revision = put.header().map(|h| h.revision()).unwrap_or_default();
                Raw::Etcd(client, key, revision)
            }
            Kind::Kubernetes => {
                let api: Api<ConfigMap> = Api::namespaced(endpoints.kube_client()?, KUBE_NAMESPACE);
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(KUBE_KEY.to_string(), text(initial))])),
                    ..Default::default()
                };
                let cm = api.create(&PostParams::default(), &cm).await?;
                Raw::Kube(api, Box::new(cm))
            }
        }))
    }

    /// A write of `value` over the version last written (ZooKeeper: `set_data` with
    /// that version; etcd: a `txn` comparing the mod-revision, then `put`; Kubernetes: a
    /// replace of the object as last written, which is how a client updates a ConfigMap
    /// it owns).
    pub(crate) async fn write(&mut self, value: &[u8]) -> BoxResult<()> {
        match self {
            Raw::Zk(client, path, version) => {
                *version = client.set_data(path, value, Some(*version)).await?.version;
            }
            Raw::Etcd(client, key, revision) => {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, *revision)])
                    .and_then([TxnOp::put(key.as_str(), value, None)]);
                let resp = client.txn(txn).await?;
                if !resp.succeeded() {
                    return Err(format!("raw write of {key}: changed by someone else").into());
                }
                *revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            }
            Raw::Kube(api, cm) => {
                cm.data = Some(BTreeMap::from([(KUBE_KEY.to_string(), text(value))]));
                let name = cm.metadata.name.clone().unwrap_or_default();
                **cm = api.replace(&name, &PostParams::default(), cm).await?;
            }
        }
        Ok(())
    }

    /// One raw compare-and-set increment of a decimal counter, retried on conflict.
    /// Returns the number of attempts.
    pub(crate) async fn increment(&mut self) -> BoxResult<u32> {
        for attempt in 1..=10_000u32 {
            let done = match self {
                Raw::Zk(client, path, _) => {
                    let (data, stat) = client.get_data(path).await?;
                    let next = parse(&data) + 1;
                    match client
                        .set_data(path, next.to_string().as_bytes(), Some(stat.version))
                        .await
                    {
                        Ok(_) => true,
                        Err(zk::Error::BadVersion) => false,
                        Err(e) => return Err(e.into()),
                    }
                }
                Raw::Etcd(client, key, _) => {
                    let got = client.get(key.as_str(), None).await?;
                    let kv = got.kvs().first().ok_or("raw counter key missing")?;
                    let next = parse(kv.value()) + 1;
                    let txn = Txn::new()
                        .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, kv.mod_revision())])
                        .and_then([TxnOp::put(key.as_str(), next.to_string(), None)]);
                    client.txn(txn).await?.succeeded()
                }
                Raw::Kube(api, last) => {
                    let name = last.metadata.name.clone().unwrap_or_default();
                    let mut cm = api.get(&name).await?;
                    let current = cm
                        .data
                        .as_ref()
                        .and_then(|d| d.get(KUBE_KEY))
                        .map_or(0, |v| parse(v.as_bytes()));
                    cm.data = Some(BTreeMap::from([(KUBE_KEY.to_string(), (current + 1).to_string())]));
                    match api.replace(&name, &PostParams::default(), &cm).await {
                        Ok(_) => true,
                        Err(kube::Error::Api(e)) if e.code == 409 => false,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            if done {
                return Ok(attempt);
            }
        }
        Err("raw CAS loop: too many conflicts".into())
    }

    /// Removes the key.
    pub(crate) async fn remove(self) {
        let _ = match self {
            Raw::Zk(client, path, _) => client.delete(&path, None).await.map_err(|e| e.to_string()),
            Raw::Etcd(mut client, key, _) => client.delete(key, None).await.map(|_| ()).map_err(|e| e.to_string()),
            Raw::Kube(api, cm) => api
                .delete(cm.metadata.name.as_deref().unwrap_or_default(), &Default::default())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
    }
}

fn parse(data: &[u8]) -> u64 {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// ConfigMap data is text; pointer bytes are ASCII already.
fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}
