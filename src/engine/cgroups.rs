//! Hiding the cgroup attach's wait behind other work.
//!
//! Every move of a process into a cgroup (writing `cgroup.procs`, as libcontainer does for a
//! container's init and as `exec` does) takes the kernel's global `cgroup_threadgroup_rwsem`
//! for writing. When no writer took it during the last RCU grace period, that costs a full
//! grace period: 5–20 ms on this class of host, measured, the largest single wait of a
//! container's start. A writer that comes while the semaphore is still in its writer-biased
//! state (within about one grace period of the previous writer) pays about 0.1 ms.
//!
//! [`warm`] keeps it in that state while a command is about to start containers: a thread
//! re-attaches the CLI to the cgroup it already is in (a move to the same place changes
//! nothing) every few milliseconds, on the cgroup2 hierarchy when one is mounted. Its first
//! write waits out the grace period while the CLI prepares networks and root filesystems,
//! so the init's attach later finds it passed. Failing writes (a read-only cgroupfs in a
//! container, another layout) end the thread; nothing depends on it.
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the thread re-attaches: well inside the ~10 ms the writer-biased state outlives
/// the last writer.
const PERIOD: Duration = Duration::from_millis(4);
/// A bound on the thread's life, whatever the command does.
const LIMIT: Duration = Duration::from_secs(60);

static COOL: AtomicBool = AtomicBool::new(false);
static WARMING: AtomicBool = AtomicBool::new(false);

/// Starts keeping cgroup attaches cheap, until [`cool`] (or [`LIMIT`]). Once per process.
pub fn warm() {
    if WARMING.swap(true, Ordering::Relaxed) {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("cgroup-warm".into())
        .spawn(|| {
            // Never the thread a signal to the process is delivered to: a foreground `run`
            // forwards them to its container from a signalfd, which a thread that left them
            // unblocked would bypass (SIGTERM's default action would end berth instead).
            let _ = nix::sys::signal::pthread_sigmask(
                nix::sys::signal::SigmaskHow::SIG_BLOCK,
                Some(&nix::sys::signal::SigSet::all()),
                None,
            );
            let Some(target) = own_procs_file() else {
                return;
            };
            let pid = std::process::id().to_string();
            let until = Instant::now() + LIMIT;
            while !COOL.load(Ordering::Relaxed) && Instant::now() < until {
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, pid.as_bytes()));
                if written.is_err() {
                    return;
                }
                std::thread::sleep(PERIOD);
            }
        });
}

/// Ends what [`warm`] started: the command's containers are started.
pub fn cool() {
    COOL.store(true, Ordering::Relaxed);
}

/// The `cgroup.procs` of the cgroup this process is in: on the cgroup2 hierarchy (cheapest,
/// no controller callbacks) when mounted, else on the v1 `pids` hierarchy.
fn own_procs_file() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let me = std::process::id().to_string();
    // Only a file that lists this process: a cgroupfs mounted from elsewhere than the path
    // says (a container's bind of a subtree) must not move it anywhere.
    candidates(&text)
        .into_iter()
        .map(|d| d.join("cgroup.procs"))
        .find(|f| {
            is_cgroupfs(f) && std::fs::read_to_string(f).is_ok_and(|t| t.lines().any(|l| l == me))
        })
}

/// The directories, best first, of the cgroup that `/proc/self/cgroup` (`text`) names.
fn candidates(text: &str) -> Vec<PathBuf> {
    let mut unified = Vec::new();
    let mut pids = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            continue;
        }
        if controllers.is_empty() {
            unified.push(PathBuf::from("/sys/fs/cgroup/unified").join(rel));
            unified.push(PathBuf::from("/sys/fs/cgroup").join(rel));
        } else if controllers.split(',').any(|c| c == "pids") {
            pids.push(PathBuf::from("/sys/fs/cgroup/pids").join(rel));
        }
    }
    unified.extend(pids);
    unified
}

/// A container's cgroup, relative to each hierarchy's root (the OCI spec's `cgroupsPath`).
pub fn container_path(paths: &crate::state::Paths, id: &str) -> PathBuf {
    PathBuf::from(format!("/{}/{id}", paths.cgroup_parent()))
}

/// Removes a stopped container's cgroup from every hierarchy it is on: kills what is still
/// in it (a process that outlived the init in a shared pid namespace) and rmdirs it, retrying
/// while the killed processes exit. What libcontainer's delete does, with one read of the
/// mount table instead of two per v1 controller (those reads were most of a container's
/// deletion). `rel` must be relative to the hierarchies' roots, without `..`.
pub fn remove(rel: &Path) -> std::io::Result<()> {
    let mut first_error = None;
    for dir in kill_all(rel)? {
        if let Err(e) = rmdir_with_retry(&dir) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// SIGKILLs every process in a container's cgroup (`rel` as for [`remove`]): what Docker does
/// when the init of a container without a pid namespace of its own exits. Returns the
/// cgroup's directories (one per hierarchy it is on).
pub fn kill_all(rel: &Path) -> std::io::Result<Vec<PathBuf>> {
    let Some(rel) = plain(rel) else {
        return Err(std::io::Error::other(format!(
            "refusing to touch cgroup {}",
            rel.display()
        )));
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut dirs = Vec::new();
    for root in hierarchies(&mountinfo) {
        let dir = root.join(rel);
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            kill_members(&procs);
            dirs.push(dir);
        }
    }
    Ok(dirs)
}

/// A cgroup path made relative to the hierarchies' roots, if it names something below them
/// (not empty, no `..`).
fn plain(rel: &Path) -> Option<&Path> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let below =
        !rel.as_os_str().is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    below.then_some(rel)
}

/// SIGKILLs the pids a `cgroup.procs` lists.
fn kill_members(procs: &str) {
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Tries for about 200 ms: an emptied cgroup is busy until its last killed member is gone.
fn rmdir_with_retry(dir: &Path) -> std::io::Result<()> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..6 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {}
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(80));
    }
    std::fs::remove_dir(dir)
}

/// The cgroup mounts a mount table lists: file system type (`cgroup` or `cgroup2`), mount
/// point and super options (`rw,memory`).
fn cgroup_mounts(mountinfo: &str) -> impl Iterator<Item = (&str, PathBuf, &str)> {
    mountinfo.lines().filter_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split(' ');
        let fstype = r.next()?;
        if fstype != "cgroup" && fstype != "cgroup2" {
            return None;
        }
        let options = r.nth(1).unwrap_or("");
        let point = left.split(' ').nth(4)?;
        Some((
            fstype,
            PathBuf::from(super::rootfs::unescape(point)),
            options,
        ))
    })
}

/// The mount points of the cgroup hierarchies (v1 and v2) a mount table lists, each once.
fn hierarchies(mountinfo: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for (_, point, _) in cgroup_mounts(mountinfo) {
        if !out.contains(&point) {
            out.push(point);
        }
    }
    out
}

/// The v1 hierarchies mounted directly under `/sys/fs/cgroup`, as a container mounts them:
/// the name there and the mount options that select the hierarchy (`memory`, `cpu,cpuacct`,
/// `xattr,name=systemd`), each once.
pub fn v1_hierarchies(mountinfo: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (fstype, point, options) in cgroup_mounts(mountinfo) {
        let Ok(name) = point.strip_prefix("/sys/fs/cgroup") else {
            continue;
        };
        let name = name.to_string_lossy();
        if fstype != "cgroup" || name.is_empty() || name.contains('/') {
            continue;
        }
        let options: Vec<&str> = options
            .split(',')
            .filter(|o| *o != "rw" && *o != "ro")
            .collect();
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name.into_owned(), options.join(",")));
        }
    }
    out
}

/// Makes the cgroup `rel` (relative to the hierarchies' roots, without `..`) on every
/// hierarchy where it is not there yet; returns its directories. Cheap to call again: the
/// early shim of a `run` makes it while the CLI sets up the network, and the launcher then
/// finds it.
pub fn make(rel: &Path) -> std::io::Result<Vec<PathBuf>> {
    let Some(rel) = plain(rel) else {
        return Err(std::io::Error::other(format!(
            "refusing to make cgroup {}",
            rel.display()
        )));
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut dirs = Vec::new();
    for root in hierarchies(&mountinfo) {
        let dir = root.join(rel);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)?;
            if root.file_name() == Some(std::ffi::OsStr::new("cpuset")) {
                inherit_cpuset(&root, rel)?;
            }
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and nobody can join it
/// until it has some: each level below `root` takes its parent's where it has none.
fn inherit_cpuset(root: &Path, rel: &Path) -> std::io::Result<()> {
    let mut parent = root.to_path_buf();
    for c in rel.components() {
        let dir = parent.join(c);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if std::fs::read_to_string(dir.join(file))?.trim().is_empty() {
                let from = std::fs::read_to_string(parent.join(file))?;
                std::fs::write(dir.join(file), from.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

fn is_cgroupfs(f: &std::path::Path) -> bool {
    const CGROUP_SUPER_MAGIC: i64 = 0x27e0eb;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    nix::sys::statfs::statfs(f)
        .map(|s| {
            let t = s.filesystem_type().0;
            t == CGROUP_SUPER_MAGIC || t == CGROUP2_SUPER_MAGIC
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hierarchies_are_the_cgroup_mounts_each_once() {
        let table = "\
25 1 0:22 / /sys rw - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:15 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/pids rw master:3 - cgroup cgroup rw,pids
37 30 0:33 / /odd\\040place rw - cgroup cgroup rw,memory
38 30 0:33 / /odd\\040place rw - cgroup cgroup rw,memory
";
        assert_eq!(
            hierarchies(table),
            [
                "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/pids",
                "/odd place",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn v1_hierarchies_are_named_by_their_place_under_sys_fs_cgroup() {
        let table = "\
30 25 0:26 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:15 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/pids rw master:3 - cgroup cgroup rw,pids
37 30 0:33 / /elsewhere/memory rw - cgroup cgroup rw,memory
";
        let named = |n: &str, o: &str| (n.to_string(), o.to_string());
        assert_eq!(
            v1_hierarchies(table),
            [
                named("systemd", "xattr,name=systemd"),
                named("cpu,cpuacct", "cpu,cpuacct"),
                named("pids", "pids")
            ]
        );
    }

    #[test]
    fn only_a_plain_relative_cgroup_is_removed() {
        for bad in ["", "/", "/berth/../x", "../berth"] {
            assert!(remove(Path::new(bad)).is_err(), "{bad:?}");
            assert!(make(Path::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_cgroup2_hierarchy_comes_first_then_v1_pids() {
        let hybrid = "9:name=systemd:/\n8:pids:/user.slice\n4:memory:/x\n0::/user.slice/s\n";
        assert_eq!(
            candidates(hybrid),
            [
                "/sys/fs/cgroup/unified/user.slice/s",
                "/sys/fs/cgroup/user.slice/s",
                "/sys/fs/cgroup/pids/user.slice",
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            candidates("3:cpu,pids:/\n"),
            [PathBuf::from("/sys/fs/cgroup/pids/")]
        );
        // Nothing odd is followed out of the hierarchy.
        assert!(candidates("0::/../../etc\nbroken line\n").is_empty());
    }

    #[test]
    fn this_process_finds_its_own_cgroup_procs_file() {
        match own_procs_file() {
            Some(f) => {
                let pids = std::fs::read_to_string(&f).unwrap();
                let me = std::process::id().to_string();
                assert!(
                    pids.lines().any(|l| l == me),
                    "{} does not list us",
                    f.display()
                );
            }
            #[allow(clippy::print_stderr)]
            None => eprintln!("SKIP: no cgroup2 or v1 pids hierarchy mounted here"),
        }
    }
}
