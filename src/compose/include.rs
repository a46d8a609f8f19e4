//! Top-level `include`: each entry is loaded as its own project (own project directory and
//! `.env`), its relative paths resolved there, and its resources added to the including file.
//! A resource defined differently on both sides is an error; includes are never merged.
use super::error::ComposeError;
use super::loader::{Ctx, Via, fill_from_env_file, fill_from_env_files, load_other, resolve_paths};
use super::merge::{self, Tags};
use super::remote;
use serde_json::{Map, Value};
use std::path::Path;

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn apply_includes(doc: &mut Value, include: Value, base_dir: &Path, ctx: &mut Ctx) {
    let Value::Array(entries) = include else {
        return;
    };
    for (i, entry) in entries.into_iter().enumerate() {
        let key = format!("include[{i}]");
        let (paths, env_files, project_directory) = match &entry {
            Value::String(s) => (vec![s.clone()], Vec::new(), None),
            Value::Object(o) => (
                strings(o.get("path")),
                strings(o.get("env_file")),
                o.get("project_directory")
                    .and_then(Value::as_str)
                    .map(String::from),
            ),
            _ => continue,
        };
        if paths.is_empty() {
            let e = ctx.sources.error(&key, "include needs a path".into(), None);
            ctx.errors.push(e);
            continue;
        }
        let mut local = Vec::new();
        for p in &paths {
            if !remote::is_remote(p) {
                local.push(super::loader::clean_path(&base_dir.join(p)));
                continue;
            }
            match remote::resolve(p, ctx.opts.remote_cache.as_deref(), &ctx.opts.env) {
                Ok(file) => local.push(file),
                Err(e) => {
                    let hint =
                        Some("check the URL, the ref and your access to the repository".into());
                    let e = ctx.sources.error(&key, e, hint);
                    ctx.errors.push(e);
                }
            }
        }
        if local.len() != paths.len() {
            continue;
        }
        let paths = local;
        let project_dir = match &project_directory {
            Some(d) => super::loader::clean_path(&base_dir.join(d)),
            None => paths[0].parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let mut env = ctx.env.clone();
        let env_result = if env_files.is_empty() {
            fill_from_env_file(&mut env, &project_dir.join(".env"), false)
        } else {
            let files: Vec<_> = env_files.iter().map(|f| base_dir.join(f)).collect();
            fill_from_env_files(&mut env, &files)
        };
        if let Err(e) = env_result {
            ctx.errors.push(e);
            continue;
        }
        let mut included = Value::Object(Map::new());
        let mut ok = true;
        for p in &paths {
            match load_other(p, &env, Via::Include, ctx) {
                Some((v, tags)) => {
                    merge::merge(&mut included, v, &mut Vec::new(), &Tags { tags: &tags })
                }
                None => ok = false,
            }
        }
        if !ok {
            continue;
        }
        resolve_paths(&mut included, &project_dir, &env);
        add_resources(doc, included, &paths[0], &key, ctx);
    }
}

fn add_resources(doc: &mut Value, included: Value, file: &Path, key: &str, ctx: &mut Ctx) {
    let (Some(root), Value::Object(inc)) = (doc.as_object_mut(), included) else {
        return;
    };
    for (top, v) in inc {
        let Value::Object(items) = v else { continue };
        if !matches!(
            top.as_str(),
            "services" | "networks" | "volumes" | "secrets" | "configs" | "models"
        ) {
            continue;
        }
        let slot = root
            .entry(top.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if slot.is_null() {
            *slot = Value::Object(Map::new());
        }
        let Some(dest) = slot.as_object_mut() else {
            continue;
        };
        for (name, def) in items {
            match dest.get(&name) {
                Some(existing) if *existing != def => {
                    let kind = top.trim_end_matches('s');
                    ctx.errors.push(ComposeError::Invalid {
                        file: file.to_path_buf(),
                        key: key.to_string(),
                        message: format!(
                            "imported compose file {} defines conflicting {kind} {name:?}",
                            file.display()
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    dest.insert(name, def);
                }
            }
        }
    }
}
