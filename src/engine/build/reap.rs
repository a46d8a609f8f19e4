//! What a killed build leaves behind, and how the next build (or `builder prune`) removes it.
//!
//! Every build holds an exclusive lock on `build-tmp/<id>.lock` for its lifetime and labels
//! its RUN containers with its id. A lock nobody holds therefore marks a dead build: its RUN
//! containers are stopped and removed (their shims outlive a `kill -9` of the CLI), the mounts
//! under its temp directory are detached, and the directory goes.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::container::{self, Status};
use crate::engine::runtime;
use crate::state::Paths;

/// The label naming the build a RUN container belongs to.
pub const OWNER_LABEL: &str = "berth.build.owner";

/// The directory of builds' temp dirs and locks.
pub fn tmp_root(paths: &Paths) -> PathBuf {
    paths.data.join("build-tmp")
}

/// Takes the lock of build `id`; held until the file is dropped.
pub fn lock(paths: &Paths, id: &str) -> std::io::Result<File> {
    let dir = tmp_root(paths);
    fs::create_dir_all(&dir)?;
    // Locked under a temp name, then renamed: a visible lock file is always held.
    let tmp = dir.join(format!(".{id}.lock.new"));
    let f = File::create(&tmp)?;
    f.lock()?;
    fs::rename(&tmp, dir.join(format!("{id}.lock")))?;
    Ok(f)
}

/// True when no live build holds `id`'s lock.
fn dead(paths: &Paths, id: &str) -> bool {
    let path = tmp_root(paths).join(format!("{id}.lock"));
    match File::open(&path) {
        Ok(f) => f.try_lock().is_ok(),
        Err(_) => true,
    }
}

/// Removes what dead builds left. Returns how many builds were cleaned.
pub fn reap(paths: &Paths) -> usize {
    let mut owners = std::collections::BTreeSet::new();
    for rec in container::list(paths).unwrap_or_default() {
        let Some(owner) = rec.label(OWNER_LABEL).map(str::to_owned) else {
            continue;
        };
        if !dead(paths, &owner) {
            continue;
        }
        if rec.state(paths).is_ok_and(|s| s.status == Status::Running) {
            let _ = runtime::stop(paths, &rec, Duration::from_secs(1));
        }
        let _ = runtime::remove(paths, &rec);
        let _ = crate::net::netns::remove_netns(&paths.netns(&rec.id));
        owners.insert(owner);
    }
    let root = tmp_root(paths);
    for e in fs::read_dir(&root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".lock") else {
            continue;
        };
        if !dead(paths, id) {
            continue;
        }
        let dir = root.join(id);
        detach_mounts_under(&dir);
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_file(e.path());
        owners.insert(id.to_owned());
    }
    owners.len()
}

/// Lazily unmounts every mount at or below `dir`, deepest first.
fn detach_mounts_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> PathBuf {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from(
        String::from_utf8_lossy(&out).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_mark_live_builds() {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(t.path()));
        let held = lock(&paths, "a").unwrap();
        drop(lock(&paths, "b").unwrap());
        fs::create_dir_all(tmp_root(&paths).join("a/x")).unwrap();
        fs::create_dir_all(tmp_root(&paths).join("b/y")).unwrap();
        assert!(!dead(&paths, "a"));
        assert!(dead(&paths, "b"));
        assert_eq!(reap(&paths), 1);
        assert!(tmp_root(&paths).join("a/x").exists());
        assert!(!tmp_root(&paths).join("b").exists());
        drop(held);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
    }
}
