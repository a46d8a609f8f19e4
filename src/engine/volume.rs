//! Named volumes: `<data>/volumes/<name>/_data`, with `volume.json` beside it for labels and
//! the local driver's options.
//!
//! A volume with options (`volume create -o`, compose `driver_opts`: `type`, `device`, `o`) is
//! a filesystem mounted on its `_data` while containers use it, as Docker's local driver does:
//! each shim mounts it (if nobody did yet) before creating its container and lets go of it
//! once the container stopped; the last one to let go unmounts it ([`acquire`], [`release`]).
//! Who holds it is kept in `<run>/volumes/<name>.json` under `<run>/locks/volume-mount-<name>.lock`;
//! a holder whose shim and container are both gone (a kill -9) counts for nothing.
use crate::state::{Lock, Paths, StateError, io_err, read_json, write_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeRecord {
    pub name: String,
    pub created: String,
    pub labels: BTreeMap<String, String>,
    /// The local driver's options (`type`, `device`, `o`), as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "invalid volume name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    Name(String),
    #[error("volume {name}: {reason}")]
    Options { name: String, reason: String },
    #[error("volume {name}: refusing to remove it, mounts remain under it ({})", mounts.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(", "))]
    MountsRemain { name: String, mounts: Vec<PathBuf> },
}

fn check_name(name: &str) -> Result<(), VolumeError> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(VolumeError::Name(name.into()))
    }
}

/// Creates the volume if it does not exist; returns the directory to mount.
pub fn ensure(
    paths: &Paths,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(PathBuf, bool), VolumeError> {
    ensure_with_options(paths, name, labels, &BTreeMap::new())
}

/// [`ensure`] for a volume with the local driver's `options` (checked first; an existing
/// volume keeps its own, as Docker's does).
pub fn ensure_with_options(
    paths: &Paths,
    name: &str,
    labels: &BTreeMap<String, String>,
    options: &BTreeMap<String, String>,
) -> Result<(PathBuf, bool), VolumeError> {
    check_name(name)?;
    check_options(name, options)?;
    let dir = paths.volumes().join(name);
    let data = dir.join("_data");
    let meta = dir.join("volume.json");
    let created = read_json::<VolumeRecord>(&meta)?.is_none();
    if created {
        crate::sys::fsat::create_dirs_with_mode(&data, 0o755).map_err(io_err(&data))?;
        write_json(
            &meta,
            &VolumeRecord {
                name: name.into(),
                created: super::logs::now(),
                labels: labels.clone(),
                options: options.clone(),
            },
        )?;
    }
    Ok((data, created))
}

/// Removes the volume. A filesystem of its options still mounted on it (its last user was
/// killed) is unmounted first; if any mount is left below the volume's directory nothing is
/// removed, so the content of a bound host directory is never deleted through it.
pub fn remove(paths: &Paths, name: &str) -> Result<bool, VolumeError> {
    check_name(name)?;
    let dir = paths.volumes().join(name);
    let data = dir.join("_data");
    unmount_all(&data);
    let _ = std::fs::remove_file(holders_file(paths, name));
    let real = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    let mut left = super::rootfs::mounts_under(&real);
    if left.is_empty() && super::rootfs::is_mountpoint(&data) {
        left.push(data);
    }
    if !left.is_empty() {
        return Err(VolumeError::MountsRemain {
            name: name.into(),
            mounts: left,
        });
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StateError::Io {
            path: dir,
            source: e,
        }
        .into()),
    }
}

pub fn list(paths: &Paths) -> Result<Vec<VolumeRecord>, VolumeError> {
    let dir = paths.volumes();
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if let Some(v) = read_json::<VolumeRecord>(&e.path().join("volume.json"))? {
                out.push(v);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The record of volume `name`, if it exists.
pub fn load(paths: &Paths, name: &str) -> Result<Option<VolumeRecord>, VolumeError> {
    check_name(name)?;
    Ok(read_json::<VolumeRecord>(
        &paths.volumes().join(name).join("volume.json"),
    )?)
}

/// The directory a volume's content lives in (its `Mountpoint`).
pub fn data_dir(paths: &Paths, name: &str) -> PathBuf {
    paths.volumes().join(name).join("_data")
}

/// The ids of the containers (in any state) that mount each volume, by volume name.
pub fn users(paths: &Paths) -> Result<BTreeMap<String, Vec<String>>, VolumeError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in super::container::list(paths)? {
        for v in c.mounts.iter().filter_map(|m| m.volume.as_ref()) {
            let ids = out.entry(v.clone()).or_default();
            if !ids.contains(&c.id) {
                ids.push(c.id.clone());
            }
        }
    }
    Ok(out)
}

/// The options of Docker's local driver that berth takes.
const OPTION_KEYS: [&str; 3] = ["type", "device", "o"];

/// Checks the local driver's options as Docker does when a volume is created: only `type`,
/// `device` and `o`; `type` and `o` need a `device`; `o` must parse ([`MountOptions`]).
pub fn check_options(name: &str, options: &BTreeMap<String, String>) -> Result<(), VolumeError> {
    let bad = |reason: String| VolumeError::Options {
        name: name.into(),
        reason,
    };
    for key in options.keys() {
        if key == "size" {
            return Err(bad(
                "option \"size\" needs a filesystem with quotas, which berth does not manage (hint: a tmpfs takes o: size=...)".into(),
            ));
        }
        if !OPTION_KEYS.contains(&key.as_str()) {
            return Err(bad(format!(
                "invalid option: {key:?} (the local driver takes type, device and o)"
            )));
        }
    }
    if options.is_empty() {
        return Ok(());
    }
    match options.get("device").map(String::as_str) {
        None => {
            return Err(bad(
                "missing required option: \"device\" (type and o need one)".into(),
            ));
        }
        Some("") => return Err(bad("option \"device\" is empty".into())),
        Some(_) => {}
    }
    MountOptions::parse(options.get("o").map_or("", String::as_str)).map_err(bad)?;
    Ok(())
}

/// An `o` option split as mount(8) does: the flags `mount(2)` takes, the propagation to set
/// after, and the rest, passed to the filesystem as its data (`size=64m,uid=1000`).
#[derive(Debug, PartialEq)]
pub struct MountOptions {
    pub flags: nix::mount::MsFlags,
    pub propagation: nix::mount::MsFlags,
    pub data: String,
}

impl MountOptions {
    pub fn parse(o: &str) -> Result<MountOptions, String> {
        use nix::mount::MsFlags as F;
        let mut flags = F::empty();
        let mut propagation = F::empty();
        let mut data = Vec::new();
        for opt in o.split(',').filter(|s| !s.is_empty()) {
            // (clear, flag), as mount(8) and Docker's local driver read them.
            let (clear, flag) = match opt {
                "defaults" => (false, F::empty()),
                "ro" => (false, F::MS_RDONLY),
                "rw" => (true, F::MS_RDONLY),
                "suid" => (true, F::MS_NOSUID),
                "nosuid" => (false, F::MS_NOSUID),
                "dev" => (true, F::MS_NODEV),
                "nodev" => (false, F::MS_NODEV),
                "exec" => (true, F::MS_NOEXEC),
                "noexec" => (false, F::MS_NOEXEC),
                "sync" => (false, F::MS_SYNCHRONOUS),
                "async" => (true, F::MS_SYNCHRONOUS),
                "dirsync" => (false, F::MS_DIRSYNC),
                "atime" => (true, F::MS_NOATIME),
                "noatime" => (false, F::MS_NOATIME),
                "diratime" => (true, F::MS_NODIRATIME),
                "nodiratime" => (false, F::MS_NODIRATIME),
                "relatime" => (false, F::MS_RELATIME),
                "norelatime" => (true, F::MS_RELATIME),
                "strictatime" => (false, F::MS_STRICTATIME),
                "nostrictatime" => (true, F::MS_STRICTATIME),
                "bind" => (false, F::MS_BIND),
                "rbind" => (false, F::MS_BIND | F::MS_REC),
                "remount" | "move" => {
                    return Err(format!(
                        "mount option {opt:?} cannot make a volume's filesystem"
                    ));
                }
                p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                | "unbindable" | "runbindable") => {
                    propagation = match p.trim_start_matches('r') {
                        "private" => F::MS_PRIVATE,
                        "shared" => F::MS_SHARED,
                        "slave" => F::MS_SLAVE,
                        _ => F::MS_UNBINDABLE,
                    };
                    if p.starts_with('r') {
                        propagation |= F::MS_REC;
                    }
                    continue;
                }
                other => {
                    data.push(other);
                    continue;
                }
            };
            if clear {
                flags.remove(flag);
            } else {
                flags.insert(flag);
            }
        }
        Ok(MountOptions {
            flags,
            propagation,
            data: data.join(","),
        })
    }
}

/// Mounts the filesystem a volume's options describe on `target` (its `_data`), as Docker's
/// local driver: `mount(device, target, type, flags, data)`, then the propagation asked for,
/// then read-only again for a read-only bind (which `mount(2)` ignores on the first call).
fn mount_options(
    options: &BTreeMap<String, String>,
    target: &std::path::Path,
) -> Result<(), String> {
    use nix::mount::MsFlags;
    let device = options.get("device").map_or("", String::as_str);
    let fstype = options
        .get("type")
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    let o = MountOptions::parse(options.get("o").map_or("", String::as_str))?;
    // Never through a symlink planted at the mount point.
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {}
        _ => return Err(format!("{} is not a directory", target.display())),
    }
    let fail = |what: &str, e: nix::errno::Errno| {
        format!(
            "{what} {device} on {} (type {}, options {:?}): {}",
            target.display(),
            fstype.unwrap_or("none"),
            options.get("o").map_or("", String::as_str),
            e.desc()
        )
    };
    nix::mount::mount(
        Some(device),
        target,
        fstype,
        o.flags,
        (!o.data.is_empty()).then_some(o.data.as_str()),
    )
    .map_err(|e| fail("mounting", e))?;
    let mut again = Vec::new();
    if !o.propagation.is_empty() {
        again.push(o.propagation);
    }
    if o.flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY) {
        again.push(o.flags | MsFlags::MS_REMOUNT);
    }
    for flags in again {
        if let Err(e) = nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
            unmount_all(target);
            return Err(fail("setting the options of", e));
        }
    }
    Ok(())
}

/// Unmounts everything mounted on `path` (a volume's `_data`), never following a symlink.
fn unmount_all(path: &std::path::Path) {
    use nix::mount::MntFlags;
    for _ in 0..16 {
        if !super::rootfs::is_mountpoint(path) {
            break;
        }
        if nix::mount::umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_err() {
            break;
        }
    }
}

/// One user of a volume's mounted filesystem: a container (by its shim), or a CLI copying the
/// image's content into it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Holder {
    id: String,
    pid: i32,
    start: Option<u64>,
}

fn holders_file(paths: &Paths, name: &str) -> PathBuf {
    paths.run.join("volumes").join(format!("{name}.json"))
}

/// Whether a holder still counts: its process lives, or (a shim killed while its container
/// runs on) the container's init does.
fn live(paths: &Paths, h: &Holder) -> bool {
    crate::sys::proc::alive(Some(h.pid), h.start)
        || super::container::load_state(paths, &h.id)
            .is_ok_and(|s| crate::sys::proc::alive(s.pid, s.pid_start))
}

/// Makes `holder_id` (this process) a user of volume `name`'s filesystem, mounting it on the
/// volume's `_data` if nobody has. A volume without options needs nothing.
pub fn acquire(paths: &Paths, name: &str, holder_id: &str) -> Result<(), VolumeError> {
    let Some(rec) = load(paths, name)? else {
        return Ok(());
    };
    if rec.options.is_empty() {
        return Ok(());
    }
    let _lock = Lock::acquire(&paths.locks().join(format!("volume-mount-{name}.lock")))?;
    let file = holders_file(paths, name);
    let mut holders: Vec<Holder> = read_json(&file)?.unwrap_or_default();
    holders.retain(|h| h.id != holder_id && live(paths, h));
    let data = data_dir(paths, name);
    if !super::rootfs::is_mountpoint(&data) {
        mount_options(&rec.options, &data).map_err(|reason| VolumeError::Options {
            name: name.into(),
            reason,
        })?;
    }
    let pid = std::process::id() as i32;
    holders.push(Holder {
        id: holder_id.into(),
        pid,
        start: crate::sys::proc::start_time(pid),
    });
    write_json(&file, &holders)?;
    Ok(())
}

/// `holder_id` lets go of volume `name`'s filesystem; the last user unmounts it.
pub fn release(paths: &Paths, name: &str, holder_id: &str) {
    let file = holders_file(paths, name);
    if !file.exists() {
        return;
    }
    let Ok(_lock) = Lock::acquire(&paths.locks().join(format!("volume-mount-{name}.lock"))) else {
        return;
    };
    let mut holders: Vec<Holder> = read_json(&file).ok().flatten().unwrap_or_default();
    holders.retain(|h| h.id != holder_id && live(paths, h));
    if holders.is_empty() {
        unmount_all(&data_dir(paths, name));
        let _ = std::fs::remove_file(&file);
    } else {
        let _ = write_json(&file, &holders);
    }
}

/// Before a container is created (each start): mounts the filesystems of the volumes it uses
/// that have options, its own and those of its `volumes_from` donors.
pub fn acquire_for(
    paths: &Paths,
    rec: &super::container::ContainerRecord,
) -> Result<(), VolumeError> {
    let mut names: Vec<String> = rec.mounts.iter().filter_map(|m| m.volume.clone()).collect();
    for from in &rec.host.volumes_from {
        let who = match from.rsplit_once(':') {
            Some((w, "ro" | "rw")) => w,
            _ => from.as_str(),
        };
        if let Ok(donor) = super::container::mounts_donor(paths, rec, who) {
            names.extend(donor.mounts.into_iter().filter_map(|m| m.volume));
        }
    }
    names.sort();
    names.dedup();
    for name in names {
        if let Err(e) = acquire(paths, &name, &rec.id) {
            release_for(paths, &rec.id);
            return Err(e);
        }
    }
    Ok(())
}

/// Once container `id` stopped (or was removed): lets go of every volume filesystem it held.
pub fn release_for(paths: &Paths, id: &str) {
    let Ok(entries) = std::fs::read_dir(paths.run.join("volumes")) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.path();
        let Some(name) = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let holds = read_json::<Vec<Holder>>(&file)
            .ok()
            .flatten()
            .is_some_and(|hs| hs.iter().any(|h| h.id == id));
        if holds && check_name(name).is_ok() {
            release(paths, name, id);
        }
    }
}

/// Held by a command that is about to make containers mount volumes (`up`, `create`, `run`),
/// shared, from ensuring the volumes until the records of those containers are saved (from
/// then on they count as users); `volume rm` and `prune` take it exclusively to look for users
/// and remove. So a volume is never removed between being ensured and being used.
pub struct UsersLock(#[allow(dead_code)] std::fs::File);

fn users_lock(paths: &Paths, shared: bool) -> Result<UsersLock, VolumeError> {
    let dir = paths.locks();
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join("volumes.lock");
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    if shared {
        f.lock_shared().map_err(io_err(&path))?;
    } else {
        f.lock().map_err(io_err(&path))?;
    }
    Ok(UsersLock(f))
}

/// The shared [`UsersLock`] of a command that will mount volumes.
pub fn lock_for_use(paths: &Paths) -> Result<UsersLock, VolumeError> {
    users_lock(paths, true)
}

/// The exclusive [`UsersLock`] of a command that removes volumes nobody uses.
pub fn lock_for_removal(paths: &Paths) -> Result<UsersLock, VolumeError> {
    users_lock(paths, false)
}

/// Docker's copy-up: a named volume that is still empty gets the image's content at the
/// mount's target (files, owners, modes, links; the target directory's own owner and mode go
/// to the volume's root), unless the mount says `nocopy`. `rootfs` is the container's mounted
/// overlay, which shows only the image then. Paths in it resolve inside it (`openat2`), and
/// nothing is followed while copying ([`super::copy`]).
pub fn copy_up(
    rootfs: &std::path::Path,
    m: &super::container::Mount,
) -> Result<(), super::copy::CopyError> {
    use nix::fcntl::OFlag;
    if m.volume.is_none() || m.nocopy {
        return Ok(());
    }
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |e: nix::errno::Errno| super::copy::CopyError::Io {
            path: path.clone(),
            source: e.into(),
        }
    };
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    // Replicas made at once may share the volume: one fills it, under the volume's lock.
    let _lock = m
        .source
        .parent()
        .and_then(|dir| crate::state::Lock::acquire(&dir.join("copy-up.lock")).ok());
    let empty = std::fs::read_dir(&m.source)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Ok(());
    }
    let root = crate::sys::fsat::open(rootfs, dir_flags).map_err(io(rootfs))?;
    let target = std::path::Path::new(&m.target);
    match crate::sys::fsat::open_in_root(root.as_fd(), target, dir_flags) {
        Ok(_) => {}
        // Nothing (or no directory) there in the image: nothing to copy.
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(io(target)(e)),
    }
    let volume = crate::sys::fsat::open(&m.source, dir_flags).map_err(io(&m.source))?;
    super::copy::copy(
        root.as_fd(),
        &format!("{}/.", m.target.trim_end_matches('/')),
        volume.as_fd(),
        "/",
        super::copy::Owner::Keep,
        false,
    )
}

/// What a `volume.subpath` may be: a relative path without `..`.
pub fn check_subpath(sub: &str) -> Result<(), String> {
    use std::path::Component;
    let ok = !sub.is_empty()
        && std::path::Path::new(sub)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "subpath {sub:?} must be a relative path inside the volume, without \"..\""
        ))
    }
}

/// Where a container's `subpath` mounts are staged while it is created: `<dir>/subpaths/N`.
pub fn subpaths_dir(container_dir: &std::path::Path) -> PathBuf {
    container_dir.join("subpaths")
}

/// Makes `sub` of the volume at `volume` available at `staging` without ever resolving it by
/// path again: it is opened below the volume with `openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS)` (it must exist; any symlink on the way is refused, so a container
/// cannot point the mount outside the volume by planting one), and that very file is
/// bind-mounted on `staging` through `/proc/self/fd/N`. The container's bind is then made from
/// `staging`, a path in berth's own state that no container can change, so swapping a link in
/// after the check changes nothing. `staging` is replaced if left over (a crashed start); it
/// is unmounted by [`release_subpaths`] once the container is created.
pub fn stage_subpath(
    volume: &std::path::Path,
    sub: &str,
    staging: &std::path::Path,
) -> Result<PathBuf, String> {
    use nix::fcntl::OFlag;
    use nix::mount::MsFlags;
    check_subpath(sub)?;
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    let root = crate::sys::fsat::open(volume, flags | OFlag::O_DIRECTORY)
        .map_err(|e| format!("{}: {e}", volume.display()))?;
    let fd =
        crate::sys::fsat::open_beneath_no_symlinks(root.as_fd(), std::path::Path::new(sub), flags)
            .map_err(|e| match e {
                nix::errno::Errno::ELOOP => format!(
                    "subpath {sub:?} goes through a symbolic link; name the directory it leads to"
                ),
                nix::errno::Errno::EXDEV => format!("subpath {sub:?} leaves the volume"),
                e => format!("subpath {sub:?} of the volume: {e}"),
            })?;
    let is_dir = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map_err(|e| format!("subpath {sub:?}: {e}"))?;
    let io = |e: std::io::Error| format!("staging subpath {sub:?} at {}: {e}", staging.display());
    // A leftover of a crashed start: unmounted, and removed without recursing.
    unmount_staged(staging);
    match std::fs::symlink_metadata(staging) {
        Ok(m) if m.is_dir() => std::fs::remove_dir(staging).map_err(io)?,
        Ok(_) => std::fs::remove_file(staging).map_err(io)?,
        Err(_) => {}
    }
    if let Some(parent) = staging.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    if is_dir {
        std::fs::create_dir(staging).map_err(io)?;
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(staging)
            .map_err(io)?;
    }
    let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    // mount(2) follows the magic link to the file the descriptor holds, not to a path.
    nix::mount::mount(
        Some(source.as_str()),
        staging,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| io(e.into()))?;
    // Private: nothing mounted later in the volume or at the staging place spreads to it.
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        staging,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        unmount_staged(staging);
        return Err(io(e.into()));
    }
    Ok(staging.to_path_buf())
}

/// Unmounts and removes every staged `subpath` of a container (see [`stage_subpath`]); the
/// container's own binds, made from them, stay. Returns what could not be removed (so that
/// nobody deletes the container's directory recursively through a mount still there).
pub fn release_subpaths(container_dir: &std::path::Path) -> Vec<PathBuf> {
    let mut left = Vec::new();
    let Ok(entries) = std::fs::read_dir(subpaths_dir(container_dir)) else {
        return left;
    };
    for e in entries.flatten() {
        let path = e.path();
        unmount_staged(&path);
        // Never recursive: a mount point still there is EBUSY, not emptied.
        let gone = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir(&path),
            _ => std::fs::remove_file(&path),
        };
        if gone.is_err() {
            left.push(path);
        }
    }
    left
}

/// Unmounts whatever is mounted at `path` (by path, not through `/proc/self/mountinfo`, so a
/// state root reached through a symlink is no different), never following a symlink there.
fn unmount_staged(path: &std::path::Path) {
    use nix::mount::MntFlags;
    // Mounts stacked by repeated crashes come off one by one; EINVAL once none is left.
    for _ in 0..16 {
        if nix::mount::umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_is_idempotent_and_names_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = Paths::new(Some(d.path()));
        let (data, created) = ensure(&p, "proj_site", &BTreeMap::new()).unwrap();
        assert!(created && data.is_dir());
        std::fs::write(data.join("f"), "x").unwrap();
        assert!(!ensure(&p, "proj_site", &BTreeMap::new()).unwrap().1);
        assert!(data.join("f").exists());
        assert!(ensure(&p, "../x", &BTreeMap::new()).is_err());
        assert_eq!(list(&p).unwrap().len(), 1);
        assert!(remove(&p, "proj_site").unwrap());
    }

    #[test]
    fn options_are_checked_and_o_is_split_as_mount_does() {
        use nix::mount::MsFlags as F;
        let opts = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(check_options("v", &opts(&[])).is_ok());
        let ok = opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m,uid=5"),
        ]);
        assert!(check_options("v", &ok).is_ok());
        for (bad, want) in [
            (opts(&[("colour", "red")]), "invalid option: \"colour\""),
            (
                opts(&[("type", "tmpfs")]),
                "missing required option: \"device\"",
            ),
            (opts(&[("device", "")]), "empty"),
            (opts(&[("device", "x"), ("size", "1g")]), "\"size\""),
            (opts(&[("device", "x"), ("o", "remount")]), "remount"),
        ] {
            let e = check_options("vol1", &bad).unwrap_err().to_string();
            assert!(e.starts_with("volume vol1: ") && e.contains(want), "{e}");
        }
        let o = MountOptions::parse("bind,ro,nosuid,rshared,size=1m,uid=5").unwrap();
        assert_eq!(o.flags, F::MS_BIND | F::MS_RDONLY | F::MS_NOSUID);
        assert_eq!(o.propagation, F::MS_SHARED | F::MS_REC);
        assert_eq!(o.data, "size=1m,uid=5");
        let o = MountOptions::parse("ro,rw,noexec,exec,addr=10.0.0.1").unwrap();
        assert_eq!(o.flags, F::empty());
        assert_eq!(o.data, "addr=10.0.0.1");
    }

    #[test]
    #[allow(clippy::print_stderr)]
    fn subpaths_are_staged_by_descriptor_and_never_through_a_symlink() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting a staged subpath needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let vol = d.path().join("_data");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(vol.join("real/inner")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(vol.join("real/file"), "f").unwrap();
        std::os::unix::fs::symlink("real", vol.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("out")).unwrap();
        let ctr = d.path().join("ctr");
        let at = |n: &str| subpaths_dir(&ctr).join(n);
        for bad in ["link", "link/inner", "out", "real/../link"] {
            let err = stage_subpath(&vol, bad, &at("1")).unwrap_err();
            assert!(
                err.contains("symbolic link") || err.contains(".."),
                "{bad}: {err}"
            );
        }
        assert!(stage_subpath(&vol, "real/missing", &at("1")).is_err());
        // A directory and a file, each mounted from its descriptor.
        let staged = stage_subpath(&vol, "real/inner", &at("1")).unwrap();
        std::fs::write(staged.join("written"), "x").unwrap();
        assert!(vol.join("real/inner/written").is_file());
        let file = stage_subpath(&vol, "real/file", &at("2")).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "f");
        // Staging again over a leftover replaces it.
        stage_subpath(&vol, "real", &at("1")).unwrap();
        assert!(at("1").join("inner/written").is_file());
        assert_eq!(
            super::super::rootfs::mounts_under(&subpaths_dir(&ctr)).len(),
            2
        );
        assert!(release_subpaths(&ctr).is_empty());
        assert!(super::super::rootfs::mounts_under(&subpaths_dir(&ctr)).is_empty());
        assert!(
            std::fs::read_dir(subpaths_dir(&ctr))
                .unwrap()
                .next()
                .is_none()
        );
        assert!(
            vol.join("real/inner/written").is_file(),
            "the volume is left alone"
        );
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    }
}
