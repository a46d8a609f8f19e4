//! Load benchmark: the largest real-world compose file (opentelemetry-demo) and the whole
//! awesome-compose set. Run with `cargo bench --bench compose_load` (optimised) or, on a busy
//! machine, `cargo test --bench compose_load --no-run` and run the binary (debug build).
#![allow(clippy::print_stdout, clippy::print_stderr)] // a bench binary reports on stdout
use berth::compose::{LoadOptions, load};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn corpus() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    ["../shared/corpus", "../../shared/corpus"]
        .iter()
        .map(|r| root.join(r))
        .find(|p| p.join("INDEX.md").is_file())
}

fn opts(dir: &Path, files: &[PathBuf]) -> LoadOptions {
    LoadOptions {
        files: files.to_vec(),
        working_dir: dir.to_path_buf(),
        env: [("HOME".to_string(), "/home/user".to_string())].into(),
        ..Default::default()
    }
}

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn main() {
    let Some(root) = corpus() else {
        eprintln!("skipped: corpus folder ../shared/corpus is absent");
        return;
    };
    let otel = root.join("real-world/opentelemetry-demo");
    let o = opts(&otel, &[otel.join("compose.yaml")]);
    load(&o).expect("opentelemetry-demo loads");
    let m = median(51, || {
        let _ = load(&o);
    });
    println!(
        "opentelemetry-demo/compose.yaml: median {:.2} ms",
        m.as_secs_f64() * 1e3
    );

    let mut sets = Vec::new();
    let ac = root.join("awesome-compose");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&ac)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    for d in dirs {
        for name in [
            "compose.yaml",
            "compose.yml",
            "docker-compose.yaml",
            "docker-compose.yml",
        ] {
            if d.join(name).is_file() {
                sets.push(opts(&d, &[d.join(name)]));
                break;
            }
        }
    }
    let m = median(11, || {
        for o in &sets {
            let _ = load(o);
        }
    });
    println!(
        "awesome-compose ({} projects): median {:.2} ms for all",
        sets.len(),
        m.as_secs_f64() * 1e3
    );
}
