//! Turns YAML or TOML documents into flat Flink-style `a.b.c → value` entries.
//!
//! Both `high-availability.type: zookeeper` and the nested form
//! `high-availability: { type: zookeeper }` give the same entry, as in Flink's
//! `config.yaml`. Lists become comma-separated values.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// A scalar or structure from either format, reduced to what flattening needs.
pub(crate) enum Node {
    Scalar(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
    Null,
}

impl From<serde_norway::Value> for Node {
    fn from(v: serde_norway::Value) -> Self {
        use serde_norway::Value as V;
        match v {
            V::Null => Node::Null,
            V::Bool(b) => Node::Scalar(b.to_string()),
            V::Number(n) => Node::Scalar(n.to_string()),
            V::String(s) => Node::Scalar(s),
            V::Sequence(s) => Node::List(s.into_iter().map(Node::from).collect()),
            V::Mapping(m) => Node::Map(
                m.into_iter()
                    .map(|(k, v)| {
                        let key = match k {
                            V::String(s) => s,
                            V::Bool(b) => b.to_string(),
                            V::Number(n) => n.to_string(),
                            _ => String::from("<non-scalar key>"),
                        };
                        (key, Node::from(v))
                    })
                    .collect(),
            ),
            V::Tagged(t) => Node::from(t.value),
        }
    }
}

impl From<toml::Value> for Node {
    fn from(v: toml::Value) -> Self {
        use toml::Value as V;
        match v {
            V::String(s) => Node::Scalar(s),
            V::Integer(i) => Node::Scalar(i.to_string()),
            V::Float(f) => Node::Scalar(f.to_string()),
            V::Boolean(b) => Node::Scalar(b.to_string()),
            V::Datetime(d) => Node::Scalar(d.to_string()),
            V::Array(a) => Node::List(a.into_iter().map(Node::from).collect()),
            V::Table(t) => Node::Map(t.into_iter().map(|(k, v)| (k, Node::from(v))).collect()),
        }
    }
}

fn scalar_text(source: &str, key: &str, node: Node) -> Result<Option<String>> {
    match node {
        Node::Null => Ok(None),
        Node::Scalar(s) => Ok(Some(s)),
        Node::List(items) => {
            let mut parts = Vec::new();
            for item in items {
                match item {
                    Node::Scalar(s) => parts.push(s),
                    _ => return Err(Error::config(key, format!("{source}: list items must be scalars"))),
                }
            }
            Ok(Some(parts.join(",")))
        }
        Node::Map(_) => Ok(None),
    }
}

/// Flattens `root` (a document's top level) into `out`. `source` names the document in
/// errors. A key given twice (flat and nested) is an error naming the key.
pub(crate) fn flatten(source: &str, root: Node, out: &mut BTreeMap<String, String>) -> Result<()> {
    match root {
        Node::Map(entries) => {
            for (k, v) in entries {
                walk(source, k, v, out)?;
            }
            Ok(())
        }
        Node::Null => Ok(()),
        _ => Err(Error::config(
            "<document>",
            format!("{source}: the top level must be a mapping of keys to values"),
        )),
    }
}

fn walk(source: &str, key: String, node: Node, out: &mut BTreeMap<String, String>) -> Result<()> {
    if let Node::Map(entries) = node {
        for (k, v) in entries {
            walk(source, format!("{key}.{k}"), v, out)?;
        }
        return Ok(());
    }
    if let Some(value) = scalar_text(source, &key, node)? {
        if out.insert(key.clone(), value).is_some() {
            return Err(Error::config(key, format!("{source}: key is given more than once")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_flat_yaml_agree() {
        let mut a = BTreeMap::new();
        let doc: serde_norway::Value =
            serde_norway::from_str("high-availability:\n  type: zookeeper\n  zookeeper:\n    quorum: [a:1, b:2]\n")
                .unwrap();
        flatten("a.yaml", doc.into(), &mut a).unwrap();
        let mut b = BTreeMap::new();
        let doc: serde_norway::Value =
            serde_norway::from_str("high-availability.type: zookeeper\nhigh-availability.zookeeper.quorum: a:1,b:2\n")
                .unwrap();
        flatten("b.yaml", doc.into(), &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["high-availability.zookeeper.quorum"], "a:1,b:2");
    }

    #[test]
    fn duplicate_key_is_named() {
        let mut out = BTreeMap::new();
        let doc: serde_norway::Value =
            serde_norway::from_str("high-availability.type: a\nhigh-availability:\n  type: b\n").unwrap();
        let err = flatten("c.yaml", doc.into(), &mut out).unwrap_err().to_string();
        assert!(
            err.contains("`high-availability.type`") && err.contains("more than once"),
            "{err}"
        );
    }

    #[test]
    fn toml_tables_flatten() {
        let mut out = BTreeMap::new();
        let doc: toml::Table = "[high-availability]\ntype = \"etcd\"\n[state.checkpoints]\nnum-retained = 3\n"
            .parse()
            .unwrap();
        flatten("c.toml", toml::Value::Table(doc).into(), &mut out).unwrap();
        assert_eq!(out["high-availability.type"], "etcd");
        assert_eq!(out["state.checkpoints.num-retained"], "3");
    }
}
