//! The REST semantics of the emulator: routing, get/list/watch, create, update with a
//! resourceVersion precondition, merge patch, delete and delete-collection, with
//! Kubernetes `Status` error bodies.

// The error path of every handler step is the finished error response.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::access::{self, ApiAccess};
use super::faults::Verdict;
use super::selector::Selector;
use super::store::{Event, Resource, Watcher};
use super::{Shared, MAX_OBJECT_BYTES};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Returned instead of a response when a reply is to be lost: hyper then closes the
/// connection without answering.
#[derive(Debug)]
pub(crate) struct LostReply;

impl std::fmt::Display for LostReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reply dropped by fault injection")
    }
}

impl std::error::Error for LostReply {}

/// Requests larger than this are refused before parsing, as the API server does.
const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

fn full(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A Kubernetes `Status` failure body.
pub(crate) fn status_body(code: u16, reason: &str, message: &str, details: Option<(Resource, &str)>) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some((resource, name)) = details {
        v["details"] = json!({"name": name, "group": resource.group(), "kind": resource.plural()});
    }
    v
}

fn failure(code: u16, reason: &str, message: &str, details: Option<(Resource, &str)>) -> Response<Body> {
    full(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &status_body(code, reason, message, details),
    )
}

fn reason_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Where a request goes.
#[derive(Clone)]
struct Target {
    resource: Resource,
    /// `None`: all namespaces (only list/watch).
    namespace: Option<String>,
    name: Option<String>,
}

fn route(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (resource, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => (None, rest),
        ["apis", "coordination.k8s.io", "v1", rest @ ..] => (Some(Resource::Leases), rest),
        _ => return None,
    };
    let pick = |plural: &str| -> Option<Resource> {
        match (resource, plural) {
            (None, "configmaps") => Some(Resource::ConfigMaps),
            (Some(Resource::Leases), "leases") => Some(Resource::Leases),
            _ => None,
        }
    };
    match rest {
        [plural] => Some(Target {
            resource: pick(plural)?,
            namespace: None,
            name: None,
        }),
        ["namespaces", ns, plural] => Some(Target {
            resource: pick(plural)?,
            namespace: Some(percent_decode(ns)),
            name: None,
        }),
        ["namespaces", ns, plural, name] => Some(Target {
            resource: pick(plural)?,
            namespace: Some(percent_decode(ns)),
            name: Some(percent_decode(name)),
        }),
        _ => None,
    }
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn invalid(resource: Resource, name: &str, field: &str, message: &str) -> Response<Body> {
    failure(
        422,
        "Invalid",
        &format!("{} \"{name}\" is invalid: {field}: {message}", resource.kind()),
        Some((resource, name)),
    )
}

/// Checks what the API server's validation would reject: names, ConfigMap keys, size.
fn validate(resource: Resource, name: &str, obj: &Value) -> Result<(), Response<Body>> {
    if !is_dns1123_subdomain(name) {
        return Err(invalid(
            resource,
            name,
            "metadata.name",
            &format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
    }
    if resource == Resource::ConfigMaps {
        for section in ["data", "binaryData"] {
            if let Some(map) = obj.get(section).and_then(Value::as_object) {
                for key in map.keys() {
                    let ok = !key.is_empty()
                        && key.len() <= 253
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
                    if !ok {
                        return Err(invalid(
                            resource,
                            name,
                            &format!("{section}[{key}]"),
                            "Invalid value: a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                        ));
                    }
                }
            }
        }
    }
    let size = serde_json::to_vec(obj).map(|v| v.len()).unwrap_or(0);
    if size > MAX_OBJECT_BYTES {
        return Err(failure(
            413,
            "RequestEntityTooLarge",
            &format!(
                "{} \"{name}\" is {size} bytes, above the limit of {MAX_OBJECT_BYTES} bytes",
                resource.kind()
            ),
            Some((resource, name)),
        ));
    }
    Ok(())
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Some(t) = target.as_object_mut() {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn rv_of(obj: &Value) -> Option<&str> {
    obj["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty())
}

fn conflict(resource: Resource, name: &str) -> Response<Body> {
    failure(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            resource.plural()
        ),
        Some((resource, name)),
    )
}

fn not_found(resource: Resource, name: &str) -> Response<Body> {
    failure(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", resource.plural()),
        Some((resource, name)),
    )
}

/// Serves one request. `Err(LostReply)` makes the server drop the connection.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, LostReply> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let watch = matches!(query_param(&query, "watch").as_deref(), Some("true" | "1"));
    let mutating = !matches!(method, Method::GET | Method::HEAD);
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let bearer_token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let target = route(&path);
    shared.record(match &target {
        Some(t) => ApiAccess {
            verb: access::verb(&method, t.name.is_some(), watch),
            group: Some(t.resource.group().to_string()),
            resource: t.resource.plural().to_string(),
            namespace: t.namespace.clone(),
            bearer_token,
        },
        None => ApiAccess {
            verb: method.as_str().to_ascii_lowercase(),
            group: None,
            resource: path.clone(),
            namespace: None,
            bearer_token,
        },
    });
    if let Some(doc) = discovery(&path) {
        return Ok(full(StatusCode::OK, &doc));
    }
    if path == "/version" {
        return Ok(full(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-ha-rs-emulator", "platform": "linux/amd64"}),
        ));
    }
    if content_type.contains("protobuf") {
        return Ok(failure(
            415,
            "UnsupportedMediaType",
            &format!("the emulator speaks JSON only, not `{content_type}`"),
            None,
        ));
    }
    let Some(target) = target else {
        return Ok(failure(
            404,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
            None,
        ));
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(failure(400, "BadRequest", "could not read the request body", None)),
    };
    let matches = |fragment: &str| path.contains(fragment) || String::from_utf8_lossy(&body).contains(fragment);
    let lose = match shared.faults.verdict(mutating, watch, &matches) {
        Verdict::Serve => false,
        Verdict::LoseReply => true,
        Verdict::Fail(code) => {
            return Ok(failure(code, reason_of(code), "injected fault", None));
        }
    };
    if body.len() > MAX_REQUEST_BYTES {
        return Ok(failure(413, "RequestEntityTooLarge", "request entity too large", None));
    }
    let parsed = if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice::<Value>(&body)
    };
    let Ok(input) = parsed else {
        return Ok(failure(400, "BadRequest", "the request body is not valid JSON", None));
    };
    if let Some(delay) = shared.faults.request_delay(method.as_str(), &matches) {
        if method != Method::POST {
            tokio::time::sleep(delay).await;
        } else {
            // Applied by a task of its own, so a client that gives up (closes the
            // connection) does not cancel it: the server applies it late.
            let (shared, target) = (shared.clone(), target.clone());
            let applied = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                create(&shared, &target, input)
            });
            return Ok(applied
                .await
                .unwrap_or_else(|_| failure(500, "InternalError", "delayed create failed", None)));
        }
    }
    let resp = match (&method, &target.name) {
        (&Method::GET, Some(name)) => get(&shared, &target, name),
        (&Method::GET, None) if watch => return Ok(start_watch(&shared, &target, &query)),
        (&Method::GET, None) => list(&shared, &target, &query),
        (&Method::POST, None) => create(&shared, &target, input),
        (&Method::PUT, Some(name)) => replace(&shared, &target, name, input),
        (&Method::PATCH, Some(name)) => patch(&shared, &target, name, &content_type, input),
        (&Method::DELETE, Some(name)) => delete(&shared, &target, name, &input),
        (&Method::DELETE, None) => delete_collection(&shared, &target, &query),
        _ => failure(
            405,
            "MethodNotAllowed",
            &format!("{method} is not supported on {path}"),
            None,
        ),
    };
    if lose && resp.status().is_success() {
        return Err(LostReply);
    }
    Ok(resp)
}

/// The discovery documents `kubectl` reads before it makes a request.
fn discovery(path: &str) -> Option<Value> {
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    Some(match path.trim_end_matches('/') {
        "/api" => json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        "/apis" => json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [{
                "name": "coordination.k8s.io",
                "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"},
            }],
        }),
        "/api/v1" => json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [{"name": "configmaps", "singularName": "configmap", "namespaced": true,
                           "kind": "ConfigMap", "verbs": verbs, "shortNames": ["cm"]}],
        }),
        "/apis/coordination.k8s.io/v1" => json!({
            "kind": "APIResourceList",
            "groupVersion": "coordination.k8s.io/v1",
            "resources": [{"name": "leases", "singularName": "lease", "namespaced": true,
                           "kind": "Lease", "verbs": verbs}],
        }),
        _ => return None,
    })
}

fn namespaced(target: &Target) -> Result<&str, Response<Body>> {
    target
        .namespace
        .as_deref()
        .ok_or_else(|| failure(405, "MethodNotAllowed", "this operation needs a namespace", None))
}

fn selectors(query: &str) -> Result<(Selector, Selector), Response<Body>> {
    let parse = |p: &str| {
        Selector::parse(&query_param(query, p).unwrap_or_default())
            .map_err(|m| failure(400, "BadRequest", &format!("invalid {p}: {m}"), None))
    };
    Ok((parse("labelSelector")?, parse("fieldSelector")?))
}

fn get(shared: &Shared, target: &Target, name: &str) -> Response<Body> {
    let ns = match namespaced(target) {
        Ok(ns) => ns,
        Err(r) => return r,
    };
    match shared.store().get(target.resource, ns, name) {
        Some(obj) => full(StatusCode::OK, obj),
        None => not_found(target.resource, name),
    }
}

fn list(shared: &Shared, target: &Target, query: &str) -> Response<Body> {
    let (labels, fields) = match selectors(query) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let store = shared.store();
    let items: Vec<Value> = store
        .list(target.resource, target.namespace.as_deref())
        .filter(|(_, o)| labels.matches_labels(o) && fields.matches_fields(o))
        .map(|(_, o)| o.clone())
        .collect();
    full(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", target.resource.kind()),
            "apiVersion": target.resource.api_version(),
            "metadata": {"resourceVersion": store.current_rv().to_string()},
            "items": items,
        }),
    )
}

fn create(shared: &Shared, target: &Target, mut obj: Value) -> Response<Body> {
    let ns = match namespaced(target) {
        Ok(ns) => ns,
        Err(r) => return r,
    };
    let resource = target.resource;
    if !obj.is_object() {
        return failure(400, "BadRequest", "the body must be an object", None);
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if let Some(body_ns) = obj["metadata"]["namespace"].as_str() {
        if body_ns != ns {
            return failure(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
                None,
            );
        }
    }
    obj["apiVersion"] = json!(resource.api_version());
    obj["kind"] = json!(resource.kind());
    let meta = &mut obj["metadata"];
    meta["namespace"] = json!(ns);
    meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
    meta["creationTimestamp"] = json!(super::rfc3339_now());
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    if let Err(r) = validate(resource, &name, &obj) {
        return r;
    }
    let mut store = shared.store();
    if store.get(resource, ns, &name).is_some() {
        return failure(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", resource.plural()),
            Some((resource, &name)),
        );
    }
    let stored = store.put(resource, ns, &name, obj, "ADDED");
    full(StatusCode::CREATED, &stored)
}

/// Keeps the fields the server owns from `old` in `new`.
fn carry_server_fields(resource: Resource, ns: &str, old: &Value, new: &mut Value) {
    new["apiVersion"] = json!(resource.api_version());
    new["kind"] = json!(resource.kind());
    for f in ["name", "uid", "creationTimestamp"] {
        new["metadata"][f] = old["metadata"][f].clone();
    }
    new["metadata"]["namespace"] = json!(ns);
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
}

fn replace(shared: &Shared, target: &Target, name: &str, mut obj: Value) -> Response<Body> {
    let ns = match namespaced(target) {
        Ok(ns) => ns,
        Err(r) => return r,
    };
    let resource = target.resource;
    if !obj.is_object() {
        return failure(400, "BadRequest", "the body must be an object", None);
    }
    if obj["metadata"]["name"].as_str() != Some(name) {
        return failure(
            400,
            "BadRequest",
            "the name of the object does not match the name on the URL",
            None,
        );
    }
    let mut store = shared.store();
    let Some(old) = store.get(resource, ns, name) else {
        return not_found(resource, name);
    };
    if let Some(want) = rv_of(&obj) {
        if Some(want) != rv_of(old) {
            return conflict(resource, name);
        }
    }
    let old = old.clone();
    carry_server_fields(resource, ns, &old, &mut obj);
    if let Err(r) = validate(resource, name, &obj) {
        return r;
    }
    let stored = store.put(resource, ns, name, obj, "MODIFIED");
    full(StatusCode::OK, &stored)
}

fn patch(shared: &Shared, target: &Target, name: &str, content_type: &str, patch: Value) -> Response<Body> {
    let ns = match namespaced(target) {
        Ok(ns) => ns,
        Err(r) => return r,
    };
    let resource = target.resource;
    // ConfigMap and Lease fields are maps and scalars, where strategic merge equals
    // merge patch.
    if !content_type.starts_with("application/merge-patch+json")
        && !content_type.starts_with("application/strategic-merge-patch+json")
    {
        return failure(
            415,
            "UnsupportedMediaType",
            &format!("the emulator supports merge patches only, not `{content_type}`"),
            None,
        );
    }
    let mut store = shared.store();
    let Some(old) = store.get(resource, ns, name) else {
        return not_found(resource, name);
    };
    if let Some(want) = rv_of(&patch) {
        if Some(want) != rv_of(old) {
            return conflict(resource, name);
        }
    }
    let old = old.clone();
    let mut obj = old.clone();
    merge_patch(&mut obj, &patch);
    carry_server_fields(resource, ns, &old, &mut obj);
    if let Err(r) = validate(resource, name, &obj) {
        return r;
    }
    if obj == old {
        return full(StatusCode::OK, &old);
    }
    let stored = store.put(resource, ns, name, obj, "MODIFIED");
    full(StatusCode::OK, &stored)
}

fn delete(shared: &Shared, target: &Target, name: &str, options: &Value) -> Response<Body> {
    let ns = match namespaced(target) {
        Ok(ns) => ns,
        Err(r) => return r,
    };
    let resource = target.resource;
    let mut store = shared.store();
    let Some(old) = store.get(resource, ns, name) else {
        return not_found(resource, name);
    };
    let pre = &options["preconditions"];
    if let Some(want) = pre["resourceVersion"].as_str() {
        if Some(want) != rv_of(old) {
            return conflict(resource, name);
        }
    }
    if let Some(want) = pre["uid"].as_str() {
        if Some(want) != old["metadata"]["uid"].as_str() {
            return conflict(resource, name);
        }
    }
    let uid = old["metadata"]["uid"].clone();
    store.remove(resource, ns, name);
    full(
        StatusCode::OK,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": resource.group(), "kind": resource.plural(), "uid": uid},
        }),
    )
}

fn delete_collection(shared: &Shared, target: &Target, query: &str) -> Response<Body> {
    let ns = match namespaced(target) {
        Ok(ns) => ns.to_string(),
        Err(r) => return r,
    };
    let (labels, fields) = match selectors(query) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut store = shared.store();
    let names: Vec<String> = store
        .list(target.resource, Some(&ns))
        .filter(|(_, o)| labels.matches_labels(o) && fields.matches_fields(o))
        .filter_map(|(_, o)| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let items: Vec<Value> = names
        .iter()
        .filter_map(|n| store.remove(target.resource, &ns, n))
        .collect();
    full(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", target.resource.kind()),
            "apiVersion": target.resource.api_version(),
            "metadata": {"resourceVersion": store.current_rv().to_string()},
            "items": items,
        }),
    )
}

fn start_watch(shared: &Shared, target: &Target, query: &str) -> Response<Body> {
    let (labels, fields) = match selectors(query) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let timeout = query_param(query, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let from = query_param(query, "resourceVersion").filter(|v| !v.is_empty() && v != "0");
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = Watcher {
        resource: target.resource,
        namespace: target.namespace.clone(),
        labels,
        fields,
        tx,
    };
    {
        let mut store = shared.store();
        match from {
            None => {
                for (_, o) in store.list(target.resource, target.namespace.as_deref()) {
                    if watcher.labels.matches_labels(o) && watcher.fields.matches_fields(o) {
                        let _ = watcher.tx.send(Event::line("ADDED", o));
                    }
                }
                store.watchers.push(watcher);
            }
            Some(v) => match v.parse::<u64>() {
                Ok(rv) if rv >= store.compacted_rv() => {
                    for e in store.events_since(rv) {
                        if watcher.wants(e.resource, &e.namespace, &e.selectable) {
                            let _ = watcher.tx.send(e.line.clone());
                        }
                    }
                    store.watchers.push(watcher);
                }
                Ok(rv) => {
                    let msg = format!("too old resource version: {rv} ({})", store.compacted_rv());
                    let _ = watcher
                        .tx
                        .send(Event::line("ERROR", &status_body(410, "Expired", &msg, None)));
                }
                Err(_) => {
                    return failure(400, "BadRequest", &format!("invalid resourceVersion `{v}`"), None);
                }
            },
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = futures::stream::unfold(rx, move |mut rx| async move {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) => Some((Ok::<_, Infallible>(Frame::data(line)), rx)),
            _ => None,
        }
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn routes_and_names() {
        let t = route("/api/v1/namespaces/ns1/configmaps/x").unwrap();
        assert_eq!(
            (t.resource, t.namespace.as_deref(), t.name.as_deref()),
            (Resource::ConfigMaps, Some("ns1"), Some("x"))
        );
        assert!(route("/apis/coordination.k8s.io/v1/namespaces/n/leases").is_some());
        assert!(route("/api/v1/namespaces/n/secrets").is_none());
        assert!(is_dns1123_subdomain("a-b.c"));
        assert!(!is_dns1123_subdomain("A"));
        assert_eq!(percent_decode("app%3Dc1%2Cx"), "app=c1,x");
    }
}
