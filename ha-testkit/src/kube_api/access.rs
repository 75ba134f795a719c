//! The access log of the emulator: which RBAC verb on which resource every request
//! needed, and with which bearer token it came, so a test can compare what a client
//! really does with what a Role grants.

use hyper::Method;

/// One request as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiAccess {
    /// RBAC verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`; for non-resource URLs the lower-case HTTP method.
    pub verb: String,
    /// API group (`""` for core); `None` for a non-resource URL.
    pub group: Option<String>,
    /// Resource plural (`configmaps`, `leases`), or the path of a non-resource URL.
    pub resource: String,
    /// Namespace; `None` for a cluster-wide request or a non-resource URL.
    pub namespace: Option<String>,
    /// The `Authorization: Bearer` token, if any (the emulator authenticates nobody;
    /// the token only tells clients apart).
    pub bearer_token: Option<String>,
}

/// The RBAC verb of a resource request.
pub(crate) fn verb(method: &Method, named: bool, watch: bool) -> String {
    match (method, named) {
        (&Method::GET | &Method::HEAD, true) => "get",
        (&Method::GET | &Method::HEAD, false) if watch => "watch",
        (&Method::GET | &Method::HEAD, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        (other, _) => return other.as_str().to_ascii_lowercase(),
    }
    .to_string()
}
