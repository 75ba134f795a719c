//! Label and field selectors as the Kubernetes API parses them (`a=b,c!=d,e,!f,
//! g in (x,y),h notin (z)`; fields: `metadata.name`, `metadata.namespace`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label or field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Selector {
    reqs: Vec<Req>,
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised value set, got `{rest}`"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl Selector {
    /// Parses a selector; the error text is what goes into a 400 Status.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s).into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Req::NotIn(k.trim().into(), set_values(rest)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Req::In(k.trim().into(), set_values(rest)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(k.trim().into())
            } else {
                Req::Exists(part.into())
            };
            let key = match &req {
                Req::Eq(k, _)
                | Req::Ne(k, _)
                | Req::Exists(k)
                | Req::NotExists(k)
                | Req::In(k, _)
                | Req::NotIn(k, _) => k,
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(format!("unable to parse requirement: `{part}`"));
            }
            reqs.push(req);
        }
        Ok(Self { reqs })
    }

    /// Whether `lookup` (key → value) satisfies every requirement.
    pub(crate) fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Req::Ne(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Req::Exists(k) => lookup(k).is_some(),
            Req::NotExists(k) => lookup(k).is_none(),
            Req::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
        })
    }

    /// Label selector semantics on an object's `metadata.labels`.
    pub(crate) fn matches_labels(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.matches(|k| labels.get(k).and_then(Value::as_str).map(str::to_string))
    }

    /// Field selector semantics (`metadata.name`, `metadata.namespace`).
    pub(crate) fn matches_fields(&self, obj: &Value) -> bool {
        self.matches(|k| match k {
            "metadata.name" | "metadata.namespace" => {
                let field = &k["metadata.".len()..];
                obj["metadata"][field].as_str().map(str::to_string)
            }
            _ => None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_selectors_follow_the_api_grammar() {
        let obj = json!({"metadata": {"name": "n", "labels": {"app": "c1", "type": "ha"}}});
        let yes = [
            "app=c1",
            "app==c1,type",
            "app in (c1, c2)",
            "!other",
            "type notin (x)",
            "app!=c2",
            "",
        ];
        for s in yes {
            assert!(Selector::parse(s).unwrap().matches_labels(&obj), "{s}");
        }
        let no = [
            "app=c2",
            "other",
            "!app",
            "app in (c2)",
            "app notin (c1)",
            "app=c1,type=x",
        ];
        for s in no {
            assert!(!Selector::parse(s).unwrap().matches_labels(&obj), "{s}");
        }
        assert!(Selector::parse("a in b").is_err());
        assert!(Selector::parse("metadata.name=n").unwrap().matches_fields(&obj));
    }
}
