//! What Flink's HA values mean: leader information (ZooKeeper's `connection_info`,
//! Kubernetes' `"<session>,<address>"`), state handles (a `RetrievableStreamStateHandle`
//! around a `FileStateHandle`, on Kubernetes inside a `StateHandleWithDeleteMarker`)
//! and checkpoint id counters. Every error names the key it came from.

use serde::Serialize;

use super::java_serial::{self, Content, Value};

/// A value that could not be decoded, with the key it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// The znode path or `ConfigMap/key`.
    pub(crate) key: String,
    /// What is wrong.
    pub(crate) message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn error(key: &str, message: impl std::fmt::Display) -> DecodeError {
    DecodeError {
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// A leader's published address and session id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LeaderInfo {
    /// The RPC or REST address.
    pub(crate) address: String,
    /// The leader session id (a UUID).
    pub(crate) session_id: String,
}

/// A state handle: where the payload lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct StateHandle {
    /// The payload's path (a URI, e.g. `s3://bucket/ha/completedCheckpoint1a2b`).
    pub(crate) path: String,
    /// The payload's size in bytes, as recorded.
    pub(crate) size: i64,
    /// Kubernetes only: Flink marked the entry for deletion (a removal in progress).
    pub(crate) marked_for_deletion: bool,
}

fn uuid_of(key: &str, v: &Value) -> Result<String, DecodeError> {
    let o = v
        .as_object()
        .filter(|o| &*o.class == "java.util.UUID")
        .ok_or_else(|| error(key, "no java.util.UUID after the address"))?;
    let part = |name| match o.field(name) {
        Some(Value::Int(n)) => Ok(*n as u64),
        _ => Err(error(key, format!("java.util.UUID without `{name}`"))),
    };
    Ok(uuid::Uuid::from_u64_pair(part("mostSigBits")?, part("leastSigBits")?).to_string())
}

/// ZooKeeper's `connection_info`: `writeUTF(address)` then a serialized `UUID`.
pub(crate) fn zookeeper_leader(key: &str, bytes: &[u8]) -> Result<LeaderInfo, DecodeError> {
    let contents = java_serial::read_stream(bytes).map_err(|e| error(key, e))?;
    let mut it = contents.iter();
    let Some(Content::Block(block)) = it.next() else {
        return Err(error(key, "no address (writeUTF) at the start"));
    };
    let (address, _) = java_serial::read_utf(block).map_err(|e| error(key, e))?;
    let Some(Content::Value(uuid)) = it.next() else {
        return Err(error(key, "no session id after the address"));
    };
    Ok(LeaderInfo {
        address,
        session_id: uuid_of(key, uuid)?,
    })
}

/// Kubernetes' leader entry `"<session uuid>,<address>"`.
pub(crate) fn kubernetes_leader(key: &str, value: &str) -> Result<LeaderInfo, DecodeError> {
    let (session, address) = value
        .split_once(',')
        .ok_or_else(|| error(key, "expected `<session id>,<address>`"))?;
    let session = uuid::Uuid::parse_str(session.trim())
        .map_err(|e| error(key, format!("session id `{session}` is no UUID: {e}")))?;
    Ok(LeaderInfo {
        address: address.to_string(),
        session_id: session.to_string(),
    })
}

/// A serialized state handle (raw bytes, as on ZooKeeper).
pub(crate) fn state_handle(key: &str, bytes: &[u8]) -> Result<StateHandle, DecodeError> {
    let contents = java_serial::read_stream(bytes).map_err(|e| error(key, e))?;
    let Some(Content::Value(root)) = contents.first() else {
        return Err(error(key, "no object in the value"));
    };
    let marked_for_deletion = root
        .as_object()
        .and_then(|o| o.field("markedForDeletion"))
        .is_some_and(|v| *v == Value::Bool(true));
    let file = root
        .find_object("org.apache.flink.runtime.state.filesystem.FileStateHandle")
        .ok_or_else(|| {
            let class = root.as_object().map_or("a non-object", |o| &o.class);
            error(key, format!("no FileStateHandle in the value (found {class})"))
        })?;
    let path = file
        .field("filePath")
        .and_then(|p| p.find_object("java.net.URI"))
        .and_then(|u| u.field("string"))
        .and_then(Value::as_str)
        .ok_or_else(|| error(key, "FileStateHandle without a filePath URI"))?;
    let size = match file.field("stateSize") {
        Some(Value::Int(n)) => *n,
        _ => -1,
    };
    Ok(StateHandle {
        path: path.to_string(),
        size,
        marked_for_deletion,
    })
}

/// A base64 state handle (a Kubernetes ConfigMap value).
pub(crate) fn state_handle_base64(key: &str, value: &str) -> Result<StateHandle, DecodeError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| error(key, format!("not base64: {e}")))?;
    state_handle(key, &bytes)
}

/// ZooKeeper's `checkpoint_id_counter`: a 4-byte big-endian int (8 bytes, a long,
/// is accepted too).
pub(crate) fn zookeeper_counter(key: &str, bytes: &[u8]) -> Result<i64, DecodeError> {
    match bytes.len() {
        4 => Ok(i64::from(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))),
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            Ok(i64::from_be_bytes(b))
        }
        n => Err(error(key, format!("expected a 4-byte counter, found {n} bytes"))),
    }
}

/// The external pointer (`s3://…/chk-42`) of a serialized `CompletedCheckpoint`
/// payload, if it has one.
pub(crate) fn checkpoint_pointer(key: &str, bytes: &[u8]) -> Result<Option<String>, DecodeError> {
    let contents = java_serial::read_stream(bytes).map_err(|e| error(key, e))?;
    let Some(Content::Value(root)) = contents.first() else {
        return Err(error(key, "no object in the payload"));
    };
    Ok(root
        .find_object("org.apache.flink.runtime.checkpoint.CompletedCheckpoint")
        .and_then(|c| c.field("externalPointer"))
        .and_then(Value::as_str)
        .map(str::to_string))
}
