//! Conformance tables from compose-go (../shared/corpus/compose-go/*.jsonl): every row must pass.
#![allow(clippy::print_stderr)] // tests report their row counts and skip reasons
use berth::compose::dotenv;
use berth::compose::interpolate::{self, InterpolationError};
use serde_json::Value;
use std::collections::BTreeMap;

mod common;
use common::corpus;

fn rows(name: &str) -> Vec<Value> {
    let Some(dir) = corpus().map(|c| c.join("compose-go")) else {
        return Vec::new();
    };
    std::fs::read_to_string(dir.join(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn interpolation_cases() {
    let rows = rows("interpolation-cases.jsonl");
    let mut failures = Vec::new();
    for r in &rows {
        let template = r["template"].as_str().unwrap();
        let env = map(r.get("env"));
        let mut missing = Vec::new();
        let got = interpolate::interpolate(template, &env, &mut missing);
        let ok = match (&got, r.get("expected")) {
            (Ok(s), Some(Value::String(e))) => s == e,
            (Err(e), None) => {
                let contains = r["error_contains"].as_str().unwrap_or("");
                let kind_ok = match r.get("error_kind").and_then(Value::as_str) {
                    Some("MissingRequiredError") => {
                        matches!(e, InterpolationError::MissingRequired { .. })
                    }
                    Some("InvalidTemplateError") => {
                        matches!(e, InterpolationError::InvalidTemplate { .. })
                    }
                    _ => true,
                };
                let fields_ok = match (e, r.get("error_variable"), r.get("error_reason")) {
                    (
                        InterpolationError::MissingRequired { variable, reason },
                        Some(v),
                        Some(rs),
                    ) => {
                        Some(variable.as_str()) == v.as_str()
                            && Some(reason.as_str()) == rs.as_str()
                    }
                    _ => true,
                };
                e.to_string().contains(contains) && kind_ok && fields_ok
            }
            _ => false,
        };
        let warn_ok = match r.get("warnings").and_then(Value::as_u64) {
            Some(n) => missing.len() as u64 == n,
            None => true,
        };
        if !ok || !warn_ok {
            failures.push(format!(
                "{template:?}: got {got:?}, warnings {missing:?}, row {r}"
            ));
        }
    }
    eprintln!(
        "interpolation: {} rows, {} failures",
        rows.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn operator_cases() {
    let rows = rows("interpolation-operator-cases.jsonl");
    for r in &rows {
        let body = r["braced_content"].as_str().unwrap();
        let (_, op) = interpolate::split_braced(body).expect(body);
        assert_eq!(
            op.map(|(o, _)| o.as_str()),
            r["operator"].as_str(),
            "{body}"
        );
    }
    eprintln!("operators: {} rows", rows.len());
}

#[test]
fn variables_extraction_cases() {
    let rows = rows("variables-extraction-cases.jsonl");
    for r in &rows {
        let mut got = BTreeMap::new();
        interpolate::extract_value_variables(&r["dict"], &mut got);
        let got: BTreeMap<String, Value> = got
            .into_iter()
            .map(|(k, v)| {
                let j = serde_json::json!({"Name": v.name, "DefaultValue": v.default_value,
                    "PresenceValue": v.presence_value, "Required": v.required});
                (k, j)
            })
            .collect();
        let want: BTreeMap<String, Value> = r["expected"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(got, want, "{r}");
    }
    eprintln!("variables: {} rows", rows.len());
}

#[test]
fn dotenv_cases() {
    let rows = rows("dotenv-cases.jsonl");
    let Some(dir) = corpus().map(|c| c.join("compose-go")) else {
        return;
    };
    let mut failures = Vec::new();
    for r in &rows {
        let lookup_env = map(r.get("lookup_env"));
        let lookup = |k: &str| lookup_env.get(k).cloned();
        let none = |_: &str| None;
        let kind = r["kind"].as_str().unwrap();
        let result: Result<BTreeMap<String, String>, String> = match kind {
            "parse" => {
                dotenv::parse(r["input"].as_str().unwrap(), &lookup).map_err(|e| e.to_string())
            }
            "expand" => {
                // One raw line: expand it with `vars` and the lookup env (which wins); on error
                // the input comes back unchanged.
                let input = r["input"].as_str().unwrap();
                let vars = map(r.get("vars"));
                let look = |k: &str| lookup_env.get(k).cloned().or_else(|| vars.get(k).cloned());
                let got = match interpolate::substitute(input, &look, &mut Vec::new()) {
                    Ok(s) => s,
                    Err(e) => {
                        if let Some(t) = r.get("error_text").and_then(Value::as_str)
                            && e.to_string() != t
                        {
                            failures.push(format!("expand error text {e} != {t}"));
                        }
                        input.to_string()
                    }
                };
                if Some(got.as_str()) != r["expected"].as_str() {
                    failures.push(format!("expand {input:?}: got {got:?}, row {r}"));
                }
                continue;
            }
            "file" => {
                let text =
                    std::fs::read_to_string(dir.join(r["fixture"].as_str().unwrap())).unwrap();
                match r["mode"].as_str().unwrap() {
                    "ReadWithLookup" => dotenv::read(&text, &lookup).map_err(|e| e.to_string()),
                    "Load" => {
                        let preset = map(r.get("preset_env"));
                        dotenv::read(&text, &none)
                            .map_err(|e| e.to_string())
                            .map(|mut m| {
                                m.extend(preset);
                                m
                            })
                    }
                    _ => dotenv::read(&text, &none).map_err(|e| e.to_string()),
                }
            }
            k => panic!("unknown kind {k}"),
        };
        let ok = if r.get("error").and_then(Value::as_bool) == Some(true) {
            match &result {
                Err(e) => {
                    r.get("error_contains")
                        .and_then(Value::as_str)
                        .is_none_or(|c| e.contains(c))
                        && r.get("error_exact")
                            .and_then(Value::as_str)
                            .is_none_or(|c| e == c)
                }
                Ok(_) => false,
            }
        } else {
            match &result {
                Ok(got) => {
                    let want = map(r.get("expected"));
                    let keys_ok = want.iter().all(|(k, v)| got.get(k) == Some(v));
                    let exact_ok = r.get("exact").and_then(Value::as_bool) != Some(true)
                        || got.len() == want.len();
                    let absent_ok = r
                        .get("expected_absent")
                        .and_then(Value::as_array)
                        .is_none_or(|a| a.iter().all(|k| !got.contains_key(k.as_str().unwrap())));
                    keys_ok && exact_ok && absent_ok
                }
                Err(_) => false,
            }
        };
        if !ok {
            failures.push(format!("{kind}: got {result:?}, row {r}"));
        }
    }
    eprintln!("dotenv: {} rows, {} failures", rows.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
