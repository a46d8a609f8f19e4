//! `extends`: a service starts from another one (same file or another file) and is merged over
//! it with the usual merge rules, `!reset` and `!override` included. Chains are followed; a cycle
//! is an error naming the chain. Relative paths of a service from another folder are resolved
//! against that folder.
use super::loader::{Ctx, Via, clean_path, load_other, resolve_paths};
use super::merge::{self, Tags};
use super::yaml::MergeTag;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

pub(super) fn apply_extends(
    doc: &mut Value,
    tags: &HashMap<String, MergeTag>,
    base_dir: &Path,
    ctx: &mut Ctx,
) {
    let Some(Value::Object(services)) = doc.get("services") else {
        return;
    };
    let originals = services.clone();
    let names: Vec<String> = originals
        .iter()
        .filter(|(_, v)| v.get("extends").is_some())
        .map(|(k, _)| k.clone())
        .collect();
    if names.is_empty() {
        return;
    }
    let mut resolved = Vec::new();
    for name in names {
        let mut chain = Vec::new();
        if let Some(v) = resolve(&originals, &name, &name, tags, base_dir, ctx, &mut chain) {
            resolved.push((name, v));
        }
    }
    if let Some(Value::Object(services)) = doc.get_mut("services") {
        for (name, v) in resolved {
            services.insert(name, v);
        }
    }
}

fn resolve(
    services: &Map<String, Value>,
    name: &str,
    top: &str,
    tags: &HashMap<String, MergeTag>,
    base_dir: &Path,
    ctx: &mut Ctx,
    chain: &mut Vec<String>,
) -> Option<Value> {
    let key = format!("services.{top}.extends");
    let Some(svc) = services.get(name) else {
        let e = ctx.sources.error(
            &key,
            format!("cannot extend service {name:?}: no such service"),
            None,
        );
        ctx.errors.push(e);
        return None;
    };
    let mut svc = match svc {
        Value::Null => Value::Object(Map::new()),
        v => v.clone(),
    };
    let Some(ext) = svc.as_object_mut().and_then(|o| o.remove("extends")) else {
        return Some(svc);
    };
    if chain.iter().any(|c| c == name) {
        chain.push(name.to_string());
        let e = ctx.sources.error(
            &key,
            format!("circular reference with extends: {}", chain.join(" -> ")),
            None,
        );
        ctx.errors.push(e);
        return None;
    }
    chain.push(name.to_string());
    let (file, target) = match &ext {
        Value::String(s) => (None, s.clone()),
        Value::Object(o) => (
            o.get("file").and_then(Value::as_str).map(String::from),
            o.get("service")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        _ => return Some(svc),
    };
    let current = ctx.stack.last().cloned();
    // `file:` may name a git repository, as docker compose's remote loaders allow.
    let other = match file {
        Some(f) if super::remote::is_remote(&f) => {
            match super::remote::resolve(&f, ctx.opts.remote_cache.as_deref(), &ctx.opts.env) {
                Ok(p) => Some(p),
                Err(e) => {
                    let hint =
                        Some("check the URL, the ref and your access to the repository".into());
                    ctx.errors
                        .push(ctx.sources.error(&format!("{key}.file"), e, hint));
                    return None;
                }
            }
        }
        f => f.map(|f| clean_path(&base_dir.join(f))),
    }
    .filter(|f| Some(f) != current.as_ref());
    let base = match other {
        None => resolve(services, &target, top, tags, base_dir, ctx, chain)?,
        Some(path) => {
            let env = ctx.env.clone();
            let (mut v, _) = load_other(&path, &env, Via::Extends, ctx)?;
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            resolve_paths(&mut v, &dir, &env);
            match v.get("services").and_then(|s| s.get(&target)) {
                Some(b) if b.is_object() => b.clone(),
                Some(_) => Value::Object(Map::new()),
                None => {
                    let e = ctx.sources.error(
                        &key,
                        format!(
                            "cannot extend service {target:?} of {}: no such service",
                            path.display()
                        ),
                        None,
                    );
                    ctx.errors.push(e);
                    return None;
                }
            }
        }
    };
    let mut merged = base;
    let mut path = vec!["services".to_string(), name.to_string()];
    merge::merge(&mut merged, svc, &mut path, &Tags { tags });
    Some(merged)
}
