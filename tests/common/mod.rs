//! Helpers shared by the compose tests.
#![allow(dead_code, clippy::print_stderr)]
use std::path::PathBuf;

/// `../shared/corpus` next to the crate (or next to the worktree folder holding it); `None`,
/// with the skip reason printed, when it is absent.
pub fn corpus() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let found = ["../shared/corpus", "../../shared/corpus"]
        .iter()
        .map(|r| root.join(r))
        .find(|p| p.join("INDEX.md").is_file());
    if found.is_none() {
        eprintln!("skipped: corpus folder ../shared/corpus is absent");
    }
    found
}
