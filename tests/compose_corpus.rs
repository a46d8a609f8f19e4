//! Every compose file of ../shared/corpus loads, or fails where it must: alone, or as its project
//! loads it (tests/compose_corpus_how_to_load.txt: base files, env files, variables), or as its
//! compose-go test loads it (the inline fixtures' rows). The files that must fail are listed in
//! tests/compose_corpus_expected_failures.txt, each with its category, the error it must give,
//! and why. The 140 inline loader fixtures of compose-go load or fail as their row says.
//! `BERTH_CORPUS_VERBOSE=1` prints the error of each expected failure.
#![allow(clippy::print_stderr)] // tests report their counts and skip reasons
use berth::compose::loader::clean_path;
use berth::compose::{LoadOptions, load, schema, yaml};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod common;
use common::corpus;

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

/// A failure the corpus test accepts: its category, and text berth's error must contain.
struct Expected {
    category: String,
    error: String,
}

/// `tests/NAME`, without comments and blank lines, split at ` | `.
fn table(name: &str, columns: usize) -> Vec<Vec<String>> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let cols: Vec<String> = l.split(" | ").map(|c| c.trim().to_string()).collect();
            assert_eq!(cols.len(), columns, "{name}: {l}");
            cols
        })
        .collect()
}

fn expected_failures() -> BTreeMap<String, Expected> {
    table("compose_corpus_expected_failures.txt", 4)
        .into_iter()
        .map(|c| {
            assert!(
                matches!(c[1].as_str(), "meant-to-fail" | "needs-missing-file"),
                "unknown category {:?} for {}",
                c[1],
                c[0]
            );
            let e = Expected {
                category: c[1].clone(),
                error: c[2].clone(),
            };
            (c[0].clone(), e)
        })
        .collect()
}

/// How a file is loaded: compose_corpus_how_to_load.txt's folder and arguments, parsed.
struct Recipe {
    opts: LoadOptions,
    schema_only: bool,
    /// `--cp SRC DST`: the step a README asks for first (`cp .env.example .env`), done in a
    /// temporary copy of the folder, as the corpus is read-only.
    copies: Vec<(String, String)>,
}

fn recipes(root: &Path) -> BTreeMap<String, Recipe> {
    table("compose_corpus_how_to_load.txt", 4)
        .into_iter()
        .map(|c| {
            let dir = root.join(&c[1]);
            assert!(dir.is_dir(), "{}: no folder {}", c[0], c[1]);
            let mut opts = LoadOptions {
                working_dir: dir,
                ..Default::default()
            };
            let mut schema_only = false;
            let mut copies = Vec::new();
            let mut args = c[2].split_whitespace();
            while let Some(a) = args.next() {
                let mut value = || {
                    args.next()
                        .unwrap_or_else(|| panic!("{}: {a} needs a value", c[0]))
                };
                match a {
                    "-f" => opts.files.push(value().into()),
                    "--env-file" => opts.env_files.push(value().into()),
                    "--project-directory" => opts.project_directory = Some(value().into()),
                    "-p" => opts.project_name = Some(value().into()),
                    "--profile" => opts.profiles.push(value().into()),
                    "--no-consistency" => opts.skip_consistency = true,
                    "--schema-only" => schema_only = true,
                    "--cp" => {
                        let src = value().to_string();
                        copies.push((src, value().to_string()));
                    }
                    kv => {
                        let (k, v) = kv
                            .split_once('=')
                            .unwrap_or_else(|| panic!("{}: unknown argument {kv}", c[0]));
                        opts.env.insert(k.into(), v.into());
                    }
                }
            }
            opts.env
                .entry("HOME".into())
                .or_insert_with(|| "/home/user".into());
            let r = Recipe {
                opts,
                schema_only,
                copies,
            };
            (c[0].clone(), r)
        })
        .collect()
}

/// The compose files a recipe loads, as paths under the corpus root.
fn recipe_files(r: &Recipe, root: &Path) -> Vec<String> {
    let dir = &r.opts.working_dir;
    let files: Vec<PathBuf> = if r.opts.files.is_empty() {
        r.opts
            .env
            .get("COMPOSE_FILE")
            .map(|l| l.split(':').map(|f| dir.join(f)).collect())
            .unwrap_or_default()
    } else {
        r.opts.files.iter().map(|f| dir.join(f)).collect()
    };
    files
        .iter()
        .map(|f| {
            clean_path(f)
                .strip_prefix(clean_path(root))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Loads a recipe; with `--cp`, in a temporary copy of its folder (same folder name).
fn load_recipe(r: &Recipe) -> Result<(), String> {
    if r.copies.is_empty() {
        return load(&r.opts).map(|_| ()).map_err(|e| e.to_string());
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(r.opts.working_dir.file_name().unwrap());
    copy_dir(&r.opts.working_dir, &dir);
    for (src, dst) in &r.copies {
        std::fs::copy(dir.join(src), dir.join(dst)).unwrap();
    }
    let mut opts = r.opts.clone();
    opts.working_dir = dir;
    load(&opts).map(|_| ()).map_err(|e| e.to_string())
}

/// The inline compose-go fixtures' rows: each file's env and loader options.
fn inline_rows(root: &Path) -> BTreeMap<String, LoadOptions> {
    let dir = root.join("compose-go/loader-tests-inline");
    let index = std::fs::read_to_string(root.join("compose-go/loader-tests-inline.jsonl")).unwrap();
    let mut out = BTreeMap::new();
    for line in index.lines().filter(|l| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).unwrap();
        let fixture = row["fixture"].as_str().unwrap();
        let rel = format!("compose-go/loader-tests-inline/{fixture}");
        out.insert(rel, row_options(&row, &dir.join(fixture)));
    }
    out
}

/// The options a row of loader-tests-inline.jsonl loads its fixture with.
fn row_options(row: &Value, file: &Path) -> LoadOptions {
    let env: BTreeMap<String, String> = row["env"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut opts = options(file, env);
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
    opts
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

/// Validates a file against the schema as written (a schema test input).
fn schema_only(file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let docs = yaml::parse(&text).map_err(|e| e.message)?;
    let errors: Vec<String> = docs
        .iter()
        .flat_map(|d| schema::validate(&d.value))
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// How a corpus file was loaded, for the counts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum How {
    Alone,
    InlineRow,
    Recipe,
}

fn try_load(o: &LoadOptions) -> std::thread::Result<Result<(), String>> {
    std::panic::catch_unwind(|| load(o).map(|_| ()).map_err(|e| e.to_string()))
}

#[test]
fn corpus_compose_files() {
    let Some(root) = corpus() else {
        return;
    };
    let mut files = Vec::new();
    walk(&root, &mut files);
    let expected = expected_failures();
    let recipes = recipes(&root);
    let rows = inline_rows(&root);
    let mut problems = Vec::new();
    let mut loaded: BTreeMap<How, usize> = BTreeMap::new();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let verbose = std::env::var_os("BERTH_CORPUS_VERBOSE").is_some();
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        seen.insert(rel.clone());
        let (how, result) = if let Some(r) = recipes.get(&rel) {
            if !r.schema_only && !recipe_files(r, &root).contains(&rel) {
                problems.push(format!("{rel}: its command line does not load it"));
            }
            let result = if r.schema_only {
                std::panic::catch_unwind(|| schema_only(f))
            } else {
                std::panic::catch_unwind(|| load_recipe(r))
            };
            (How::Recipe, result)
        } else if let Some(o) = rows.get(&rel) {
            (How::InlineRow, try_load(o))
        } else {
            (How::Alone, try_load(&options(f, BTreeMap::new())))
        };
        match (result, expected.get(&rel)) {
            (Err(_), _) => problems.push(format!("{rel}: PANIC")),
            (Ok(Ok(())), None) => *loaded.entry(how).or_default() += 1,
            (Ok(Ok(())), Some(e)) => problems.push(format!(
                "{rel}: loads, but is listed as {} (remove it from the list)",
                e.category
            )),
            (Ok(Err(msg)), None) => problems.push(format!("{rel}: {msg}")),
            (Ok(Err(msg)), Some(e)) if !msg.contains(&e.error) => problems.push(format!(
                "{rel}: fails with another error than {:?}: {msg}",
                e.error
            )),
            (Ok(Err(msg)), Some(e)) => {
                if verbose {
                    eprintln!("{} {rel}: {msg}", e.category);
                }
                *failed.entry(e.category.clone()).or_default() += 1
            }
        }
    }
    for name in expected.keys().chain(recipes.keys()) {
        if !seen.contains(name) {
            problems.push(format!("{name}: listed, but not a file of the corpus"));
        }
    }
    let n = |h| loaded.get(&h).copied().unwrap_or(0);
    eprintln!(
        "corpus: {} compose files; {} load: {} alone, {} inline compose-go fixtures with their \
         row's env and options, {} with their project's command line \
         (compose_corpus_how_to_load.txt)",
        files.len(),
        loaded.values().sum::<usize>(),
        n(How::Alone),
        n(How::InlineRow),
        n(How::Recipe),
    );
    let m = |c: &str| failed.get(c).copied().unwrap_or(0);
    eprintln!(
        "corpus: {} fail as expected: {} meant-to-fail, {} needs-missing-file; {} problems",
        failed.values().sum::<usize>(),
        m("meant-to-fail"),
        m("needs-missing-file"),
        problems.len()
    );
    // The corpus INDEX counts 527 compose files: every .yml and .yaml file it holds.
    assert_eq!(files.len(), 527, "the corpus has changed");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
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
        let fixture = row["fixture"].as_str().unwrap();
        let opts = row_options(&row, &dir.join(fixture));
        let result = std::panic::catch_unwind(|| load(&opts));
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
