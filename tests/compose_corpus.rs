//! Every compose file of ../shared/corpus loads, or fails where it is known to (the list in
//! tests/compose_corpus_expected_failures.txt, each with the reason). The 140 inline loader
//! fixtures of compose-go load or fail with the error their row names.
#![allow(clippy::print_stderr)] // tests report their counts and skip reasons
use berth::compose::{LoadOptions, load, yaml};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod common;
use common::corpus;

const TOP_KEYS: [&str; 9] = [
    "services", "networks", "volumes", "secrets", "configs", "include", "name", "version", "models",
];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
            out.push(p);
        }
    }
}

/// The INDEX's definition: all top-level keys are compose keys, or an empty file named compose.
fn is_compose_file(p: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(p) else {
        return false;
    };
    let name = p.file_name().unwrap().to_string_lossy().to_lowercase();
    match yaml::parse(&text) {
        Ok(docs) => match &docs[0].value {
            Value::Object(o) => {
                !o.is_empty()
                    && o.keys()
                        .all(|k| TOP_KEYS.contains(&k.as_str()) || k.starts_with("x-"))
            }
            Value::Null => name.contains("compose"),
            _ => false,
        },
        Err(_) => name.contains("compose"),
    }
}

fn expected_failures() -> BTreeMap<String, String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compose_corpus_expected_failures.txt");
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (f, why) = l.split_once(" # ").unwrap_or((l, ""));
            (f.trim().to_string(), why.trim().to_string())
        })
        .collect()
}

fn options(file: &Path, env: BTreeMap<String, String>) -> LoadOptions {
    let mut env = env;
    env.entry("HOME".into())
        .or_insert_with(|| "/home/user".into());
    LoadOptions {
        files: vec![file.to_path_buf()],
        working_dir: file.parent().unwrap().to_path_buf(),
        env,
        ..Default::default()
    }
}

#[test]
fn corpus_compose_files() {
    let Some(root) = corpus() else {
        return;
    };
    let mut files = Vec::new();
    walk(&root, &mut files);
    let files: Vec<PathBuf> = files.into_iter().filter(|p| is_compose_file(p)).collect();
    let expected = expected_failures();
    let mut ok = 0;
    let mut failed = BTreeSet::new();
    let mut regressions = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let result = std::panic::catch_unwind(|| load(&options(f, BTreeMap::new())));
        match result {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                if !expected.contains_key(&rel) {
                    regressions.push(format!("{rel}: {e}"));
                }
                failed.insert(rel);
            }
            Err(_) => regressions.push(format!("{rel}: PANIC")),
        }
    }
    let now_passing: Vec<&String> = expected.keys().filter(|k| !failed.contains(*k)).collect();
    eprintln!(
        "corpus: {} compose files, {ok} load, {} fail as expected, {} regressions",
        files.len(),
        failed.len() - regressions.len().min(failed.len()),
        regressions.len()
    );
    if !now_passing.is_empty() {
        eprintln!("now loading (remove from the expected-failure list): {now_passing:?}");
    }
    assert!(
        files.len() >= 500,
        "only {} compose files found",
        files.len()
    );
    assert!(regressions.is_empty(), "{}", regressions.join("\n"));
}

#[test]
fn inline_loader_fixtures() {
    let Some(root) = corpus() else {
        return;
    };
    let dir = root.join("compose-go/loader-tests-inline");
    let index = std::fs::read_to_string(root.join("compose-go/loader-tests-inline.jsonl")).unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    for line in index.lines().filter(|l| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).unwrap();
        n += 1;
        let file = dir.join(row["fixture"].as_str().unwrap());
        let env: BTreeMap<String, String> = row["env"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let mut opts = options(&file, env);
        let o = &row["options"];
        opts.skip_consistency = o["SkipConsistencyCheck"].as_bool().unwrap_or(false);
        opts.skip_schema = o["SkipValidation"].as_bool().unwrap_or(false);
        opts.no_path_resolution = o["ResolvePaths"].as_bool() == Some(false);
        if let Some(p) = o["Profiles"].as_array() {
            opts.profiles = p
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect();
        }
        let result = std::panic::catch_unwind(|| load(&opts));
        let fixture = row["fixture"].as_str().unwrap();
        match (row["expect"].as_str(), result) {
            (_, Err(_)) => failures.push(format!("{fixture}: PANIC")),
            (Some("load_ok"), Ok(Err(e))) => failures.push(format!("{fixture}: {e}")),
            (Some("error"), Ok(Ok(_))) => {
                failures.push(format!("{fixture}: loaded, expected an error"))
            }
            _ => {}
        }
    }
    eprintln!("inline fixtures: {n} rows, {} failures", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Override and extension files that cannot load alone load on top of their project's base file.
#[test]
fn override_files_load_with_their_base() {
    let Some(root) = corpus() else {
        return;
    };
    let pairs = [
        "docker-elk/extensions/curator/curator-compose.yml",
        "docker-elk/extensions/filebeat/filebeat-compose.yml",
        "docker-elk/extensions/fleet/fleet-compose.yml",
        "docker-elk/extensions/heartbeat/heartbeat-compose.yml",
        "docker-elk/extensions/metricbeat/metricbeat-compose.yml",
        "docker-jitsi-meet/etherpad.yml",
        "docker-jitsi-meet/grafana.yml",
        "docker-jitsi-meet/jibri.yml",
        "docker-jitsi-meet/jigasi.yml",
        "docker-jitsi-meet/log-analyser.yml",
        "docker-jitsi-meet/prometheus.yml",
        "docker-jitsi-meet/transcriber.yml",
        "docker-jitsi-meet/whiteboard.yml",
        "frappe_docker/overrides/compose.backup-cron.yaml",
        "frappe_docker/overrides/compose.mariadb.yaml",
        "frappe_docker/overrides/compose.migrator.yaml",
        "frappe_docker/overrides/compose.noproxy.yaml",
        "frappe_docker/overrides/compose.postgres.yaml",
        "frappe_docker/overrides/compose.proxy.yaml",
        "frappe_docker/overrides/compose.redis.yaml",
        "hoppscotch/docker-compose.deploy.yml",
        "netbox-docker/docker-compose.test.override.yml",
        "opentelemetry-demo/compose.full.yaml",
        "opentelemetry-demo/compose.observability.yaml",
        "opentelemetry-demo/compose.profiling.yaml",
        "opentelemetry-demo/compose.tests.yaml",
    ];
    let mut failures = Vec::new();
    for rel in pairs {
        let project = rel.split('/').next().unwrap();
        let dir = root.join("real-world").join(project);
        let base = ["compose.yaml", "docker-compose.yml", "docker-compose.yaml"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .unwrap();
        let mut opts = options(&base, BTreeMap::new());
        opts.files.push(root.join("real-world").join(rel));
        if let Err(e) = load(&opts) {
            failures.push(format!("{rel}: {e}"));
        }
    }
    eprintln!(
        "override pairs: {} loaded with their base, {} failures",
        pairs.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
