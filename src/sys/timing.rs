//! Phase marks for latency work: with `BERTH_TIMING=<file>`, every berth process (CLI, shim,
//! container init) appends `<unix-µs> <pid> <label>` lines to that file. Off (one env lookup,
//! cached) otherwise. `bench/timeline` turns the file into a per-run timeline.
use std::io::Write;
use std::sync::OnceLock;

fn sink() -> Option<&'static std::path::Path> {
    static SINK: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    SINK.get_or_init(|| std::env::var_os("BERTH_TIMING").map(Into::into))
        .as_deref()
}

/// Appends one mark, when marks are on. Errors are ignored: this is a measuring aid.
pub fn mark(label: &str) {
    let Some(path) = sink() else { return };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        // One write: the CLI and a shim append to the same file at the same time.
        let line = format!("{now} {} {label}\n", std::process::id());
        let _ = f.write_all(line.as_bytes());
    }
}
