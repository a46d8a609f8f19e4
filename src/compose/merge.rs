//! Merging compose documents (`-f a -f b`, `extends`), by the rules of the spec's merge chapter.
//!
//! Mappings merge key by key and sequences append, except where compose says otherwise:
//! `command`, `entrypoint` and `healthcheck.test` are replaced; attributes that can be written
//! as a list or a map (`environment`, `labels`, `depends_on`, service `networks`, …) are brought to
//! map form first so that keys override; `ports`, `volumes`, `secrets`, `configs` and the like are
//! kept unique by their key after appending. A node tagged `!reset` removes the inherited value;
//! one tagged `!override` replaces it whole.
use super::yaml::MergeTag;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// How a key path merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Default,
    Replace,
    /// List-or-map of `KEY=VALUE`: merged as a map.
    KeyValue,
    /// `depends_on`, service `networks`: list of names or map, merged as a map.
    NameMap,
    /// Append, then keep the last entry for each key computed by the indexer.
    Unique(Indexer),
    Build,
    Logging,
    Ulimit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Indexer {
    Exact,
    Port,
    Mount,
    Secret,
    EnvFile,
}

fn rule(path: &[&str]) -> Rule {
    use Indexer::*;
    match path {
        ["services", _, "command" | "entrypoint"] => Rule::Replace,
        ["services", _, "healthcheck", "test"] => Rule::Replace,
        [
            "services",
            _,
            "environment" | "labels" | "annotations" | "sysctls",
        ]
        | [
            "services",
            _,
            "build",
            "args" | "labels" | "additional_contexts",
        ]
        | ["services", _, "deploy", "labels"]
        | ["networks" | "volumes" | "secrets" | "configs", _, "labels"]
        | ["services", _, "extra_hosts"]
        | ["services", _, "build", "extra_hosts"] => Rule::KeyValue,
        ["services", _, "depends_on" | "networks"] => Rule::NameMap,
        ["services", _, "build"] => Rule::Build,
        ["services", _, "logging"] => Rule::Logging,
        ["services", _, "ulimits", _] => Rule::Ulimit,
        ["services", _, "ports"] => Rule::Unique(Port),
        ["services", _, "volumes" | "devices"] => Rule::Unique(Mount),
        ["services", _, "secrets"] => Rule::Unique(Secret),
        ["services", _, "configs"] => Rule::Unique(Secret),
        ["services", _, "env_file" | "label_file"] => Rule::Unique(EnvFile),
        [
            "services",
            _,
            "cap_add" | "cap_drop" | "dns" | "dns_opt" | "dns_search" | "expose",
        ]
        | [
            "services",
            _,
            "profiles" | "links" | "tmpfs" | "security_opt" | "group_add",
        ]
        | ["services", _, "build", "tags" | "platforms" | "cache_from"]
        | ["services", _, "networks", _, "aliases" | "link_local_ips"] => Rule::Unique(Exact),
        _ => Rule::Default,
    }
}

/// Turns the list form of a key/value attribute into its map form (`K=V` or `K:V` for hosts).
pub fn key_value_map(v: Value, hosts: bool) -> Value {
    match v {
        Value::Array(items) => {
            let mut m = Map::new();
            for item in items {
                let s = match item {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let split = if hosts {
                    s.split_once('=').or_else(|| s.split_once(':'))
                } else {
                    s.split_once('=')
                };
                match split {
                    Some((k, v)) => m.insert(k.to_string(), Value::String(v.to_string())),
                    None => m.insert(s, Value::Null),
                };
            }
            Value::Object(m)
        }
        other => other,
    }
}

/// Turns a list of names into a map of name → `{}` (`depends_on`, service `networks`).
pub fn name_map(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Object(
            items
                .into_iter()
                .map(|i| {
                    let k = match i {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, Value::Null)
                })
                .collect(),
        ),
        other => other,
    }
}

fn index(ix: Indexer, v: &Value) -> String {
    match (ix, v) {
        (Indexer::Exact, v) => v.to_string(),
        (Indexer::Port, Value::Object(o)) => format!(
            "{}:{}:{}/{}",
            o.get("host_ip").and_then(Value::as_str).unwrap_or(""),
            o.get("published").map(scalar_text).unwrap_or_default(),
            o.get("target").map(scalar_text).unwrap_or_default(),
            o.get("protocol").and_then(Value::as_str).unwrap_or("tcp"),
        ),
        (Indexer::Mount, Value::String(s)) => {
            let parts: Vec<&str> = s.split(':').collect();
            if parts.len() >= 2 {
                parts[1].to_string()
            } else {
                s.clone()
            }
        }
        (Indexer::Mount, Value::Object(o)) => o.get("target").map(scalar_text).unwrap_or_default(),
        (Indexer::Secret, Value::String(s)) => s.clone(),
        (Indexer::Secret, Value::Object(o)) => o
            .get("target")
            .or_else(|| o.get("source"))
            .map(scalar_text)
            .unwrap_or_default(),
        (Indexer::EnvFile, Value::Object(o)) => o.get("path").map(scalar_text).unwrap_or_default(),
        (_, v) => scalar_text(v),
    }
}

pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn unique(ix: Indexer, items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in items {
        let k = index(ix, &item);
        match seen.get(&k) {
            Some(&i) => out[i] = item,
            None => {
                seen.insert(k, out.len());
                out.push(item);
            }
        }
    }
    out
}

/// The merge tags of the override document, by key path.
pub struct Tags<'a> {
    pub tags: &'a HashMap<String, MergeTag>,
}

impl Tags<'_> {
    fn get(&self, path: &[&str]) -> Option<MergeTag> {
        if self.tags.is_empty() {
            return None;
        }
        self.tags.get(&path.join(".")).copied()
    }
}

/// Merges `over` into `base` at `path` (the key path of both values).
pub fn merge(base: &mut Value, over: Value, path: &mut Vec<String>, tags: &Tags) {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match tags.get(&p) {
        Some(MergeTag::Override) => {
            *base = over;
            return;
        }
        Some(MergeTag::Reset) => {
            *base = Value::Null;
            return;
        }
        None => {}
    }
    let rule = rule(&p);
    match rule {
        Rule::Replace => {
            *base = over;
            return;
        }
        Rule::KeyValue => {
            let hosts = p.last() == Some(&"extra_hosts");
            *base = key_value_map(std::mem::take(base), hosts);
            let over = key_value_map(over, hosts);
            merge_maps(base, over, path, tags);
            return;
        }
        Rule::NameMap => {
            *base = name_map(std::mem::take(base));
            merge_maps(base, name_map(over), path, tags);
            return;
        }
        Rule::Build => {
            let to_map = |v: Value| match v {
                Value::String(s) => Value::Object(
                    [("context".to_string(), Value::String(s))]
                        .into_iter()
                        .collect(),
                ),
                v => v,
            };
            *base = to_map(std::mem::take(base));
            merge_maps(base, to_map(over), path, tags);
            return;
        }
        Rule::Logging => {
            let driver = |v: &Value| v.get("driver").cloned();
            if let (Some(a), Some(b)) = (driver(base), driver(&over))
                && a != b
            {
                *base = over;
                return;
            }
        }
        Rule::Ulimit => {
            if !(base.is_object() && over.is_object()) {
                *base = over;
                return;
            }
        }
        Rule::Default | Rule::Unique(_) => {}
    }
    match (base, over) {
        (b @ Value::Object(_), o @ Value::Object(_)) => merge_maps(b, o, path, tags),
        (Value::Array(b), Value::Array(o)) => {
            b.extend(o);
            if let Rule::Unique(ix) = rule {
                *b = unique(ix, std::mem::take(b));
            }
        }
        (b, o) => *b = o,
    }
}

fn merge_maps(base: &mut Value, over: Value, path: &mut Vec<String>, tags: &Tags) {
    let Value::Object(o) = over else {
        if !over.is_null() {
            *base = over;
        }
        return;
    };
    if !base.is_object() {
        *base = Value::Object(Map::new());
    }
    let Value::Object(b) = base else { return };
    for (k, v) in o {
        path.push(k.clone());
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let tag = tags.get(&p);
        match (b.get_mut(&k), tag) {
            (_, Some(MergeTag::Reset)) => {
                b.remove(&k);
            }
            // An empty entry (`db:` in a list turned map) keeps what the base says about it.
            (Some(slot), None) if v.is_null() && !slot.is_null() => {}
            (Some(slot), _) if !slot.is_null() => merge(slot, v, path, tags),
            (_, _) => {
                b.insert(k, v);
            }
        }
        path.pop();
    }
}

/// Removes the nodes tagged `!reset` from a document that is not merged over anything (they
/// reset nothing, and would otherwise fail validation as `null`).
pub fn drop_reset(v: &mut Value, tags: &HashMap<String, MergeTag>, path: &str) {
    if !tags.values().any(|t| *t == MergeTag::Reset) {
        return;
    }
    match v {
        Value::Object(o) => {
            o.retain(|k, _| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                tags.get(&p) != Some(&MergeTag::Reset)
            });
            for (k, x) in o.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                drop_reset(x, tags, &p);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                drop_reset(x, tags, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(a: Value, b: Value) -> Value {
        let mut a = a;
        let tags = HashMap::new();
        merge(&mut a, b, &mut Vec::new(), &Tags { tags: &tags });
        a
    }

    #[test]
    fn rules() {
        let r = m(
            json!({"services": {"w": {"command": ["a", "b"], "environment": ["A=1", "B=2"], "ports": ["80:80"], "volumes": ["./a:/data"], "dns": ["1.1.1.1"]}}}),
            json!({"services": {"w": {"command": ["c"], "environment": {"B": "3"}, "ports": ["80:80", "81:81"], "volumes": ["./b:/data"], "dns": ["1.1.1.1", "8.8.8.8"]}}}),
        );
        let w = &r["services"]["w"];
        assert_eq!(w["command"], json!(["c"]));
        assert_eq!(w["environment"], json!({"A": "1", "B": "3"}));
        assert_eq!(w["ports"], json!(["80:80", "81:81"]));
        assert_eq!(w["volumes"], json!(["./b:/data"]));
        assert_eq!(w["dns"], json!(["1.1.1.1", "8.8.8.8"]));
    }

    #[test]
    fn list_entry_keeps_the_base_details() {
        let r = m(
            json!({"services": {"w": {"depends_on": {"db": {"condition": "service_healthy"}}}}}),
            json!({"services": {"w": {"depends_on": ["db", "cache"]}}}),
        );
        assert_eq!(
            r["services"]["w"]["depends_on"],
            json!({"db": {"condition": "service_healthy"}, "cache": null})
        );
    }

    #[test]
    fn reset_and_override() {
        let mut tags = HashMap::new();
        tags.insert("services.w.ports".to_string(), MergeTag::Reset);
        tags.insert("services.w.labels".to_string(), MergeTag::Override);
        let mut a =
            json!({"services": {"w": {"ports": ["80"], "labels": {"a": "1"}, "image": "x"}}});
        merge(
            &mut a,
            json!({"services": {"w": {"ports": [], "labels": {"b": "2"}}}}),
            &mut Vec::new(),
            &Tags { tags: &tags },
        );
        assert_eq!(
            a,
            json!({"services": {"w": {"labels": {"b": "2"}, "image": "x"}}})
        );
    }
}
