//! The container's root filesystem: an overlay of the image layers (read-only, shared between
//! containers) under a per-container upper directory.
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot mount the root filesystem at {}: {source}", path.display())]
    Mount { path: PathBuf, source: nix::Error },
    #[error("cannot unmount {}: {source}", path.display())]
    Unmount { path: PathBuf, source: nix::Error },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Paths of a container's overlay, all under its state directory.
pub struct Overlay {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

impl Overlay {
    pub fn new(dir: &Path) -> Overlay {
        Overlay {
            dir: dir.to_path_buf(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("rootfs"),
        }
    }

    /// Mounts the overlay unless it is mounted already. `layers` are lowest first.
    ///
    /// `volatile` is for a writable layer that is never mounted again (the container is
    /// removed when it exits): overlayfs then skips syncing the host filesystem, which every
    /// unmount does otherwise (a sync of the whole filesystem the state root is on). Kernels
    /// before 5.10 lack the option; the mount is then made without it.
    pub fn mount(&self, layers: &[PathBuf], volatile: bool) -> Result<(), RootfsError> {
        if is_mountpoint(&self.merged) {
            return Ok(());
        }
        // The upper directory is the container's `/`: made 0755 as Docker's, whatever the
        // umask (at 077 no user but root could have read anything in the container).
        crate::sys::fsat::create_dirs_with_mode(&self.upper, 0o755).map_err(|source| {
            RootfsError::Io {
                path: self.upper.clone(),
                source,
            }
        })?;
        for d in [&self.work, &self.merged] {
            std::fs::create_dir_all(d).map_err(|source| RootfsError::Io {
                path: d.clone(),
                source,
            })?;
        }
        // The directories are given relative to the container's own (the mount is made from
        // there): overlayfs shows them as given, and every `/proc/*/mountinfo` read (the
        // container runtime makes dozens per container start, each holding the kernel's
        // global mount lock while it formats) then formats a third of the text. It also keeps
        // an image of many layers within the one page mount options may take.
        // Resolved first, so that a symlink on the way cannot send `..` elsewhere.
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let base = real(&self.dir);
        // Each layer by a short link to it (as Docker's overlay2 `l/` directory), when one
        // can be had: a layer's own name is its 64-digit digest.
        let lower: Vec<String> = lowerdirs(layers)
            .iter()
            .map(|l| {
                let l = real(l);
                let by = short_link(&l).unwrap_or(l);
                relative_to(&base, &by).to_string_lossy().into_owned()
            })
            .collect();
        let opts = format!("lowerdir={},upperdir=upper,workdir=work", lower.join(":"));
        let mount_with = |opts: &str| {
            mount(
                Some("overlay"),
                "rootfs",
                Some("overlay"),
                MsFlags::empty(),
                Some(opts),
            )
        };
        let dir = self.dir.clone();
        let done = std::thread::scope(|scope| {
            scope
                .spawn(|| -> nix::Result<()> {
                    // A working directory of this thread's own: other threads' stay as they are.
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
                    nix::unistd::chdir(&dir)?;
                    if volatile {
                        mount_with(&format!("{opts},volatile")).or_else(|_| mount_with(&opts))
                    } else {
                        mount_with(&opts)
                    }
                })
                .join()
                .unwrap_or(Err(nix::Error::EIO))
        });
        done.map_err(|source| RootfsError::Mount {
            path: self.merged.clone(),
            source,
        })
    }

    /// Unmounts the overlay; a no-op when it is not mounted.
    pub fn unmount(&self) -> Result<(), RootfsError> {
        unmount_if_mounted(&self.merged)
    }
}

/// Mounts the host-side `/dev/shm` of a shareable container at `path` (a tmpfs with Docker's
/// options) unless it is mounted already.
pub fn mount_shm(path: &Path, size: u64) -> Result<(), RootfsError> {
    if is_mountpoint(path) {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(|source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
        Some(format!("mode=1777,size={size}").as_str()),
    )
    .map_err(|source| RootfsError::Mount {
        path: path.to_path_buf(),
        source,
    })
}

/// Unmounts `path` (detached: containers that bound it keep it) if it is a mount point.
pub fn unmount_if_mounted(path: &Path) -> Result<(), RootfsError> {
    if !is_mountpoint(path) {
        return Ok(());
    }
    umount2(path, MntFlags::MNT_DETACH).map_err(|source| RootfsError::Unmount {
        path: path.to_path_buf(),
        source,
    })
}

/// Gives the bind mounts of a created container (its init waits to be started) the
/// propagation their options ask for, `rprivate` unless said otherwise, as Docker's are.
///
/// libcontainer 0.7 binds with `open_tree(OPEN_TREE_CLONE)` and never applies propagation
/// options, so a bind of a source on a shared mount (a systemd host's `/`) would stay a peer
/// of the host's: host mounts would appear in the container, and a privileged container's
/// mounts on the host. A thread of ours takes a private `fs` (`unshare(CLONE_FS)`, allowed in
/// a multi-threaded process where `setns` of a mount namespace alone is not), enters the
/// container's mount namespace and sets each one; the thread then ends, and with it its view.
pub fn set_bind_propagation(
    pid: i32,
    spec: &libcontainer::oci_spec::runtime::Spec,
) -> Result<(), RootfsError> {
    let mut todo: Vec<(PathBuf, MsFlags)> = Vec::new();
    for m in spec.mounts().iter().flatten() {
        if m.typ().as_deref() != Some("bind") {
            continue;
        }
        let options = m.options().clone().unwrap_or_default();
        let flags = options
            .iter()
            .rev()
            .find_map(|o| propagation_flags(o))
            .unwrap_or(MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        todo.push((m.destination().clone(), flags));
    }
    if todo.is_empty() {
        return Ok(());
    }
    let ns = PathBuf::from(format!("/proc/{pid}/ns/mnt"));
    std::thread::spawn(move || -> Result<(), RootfsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source: nix::Error| RootfsError::Mount { path, source }
        };
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(io(&ns))?;
        let f = std::fs::File::open(&ns).map_err(|source| RootfsError::Io {
            path: ns.clone(),
            source,
        })?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNS).map_err(io(&ns))?;
        for (dest, flags) in &todo {
            mount(None::<&str>, dest, None::<&str>, *flags, None::<&str>).map_err(io(dest))?;
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| {
        Err(RootfsError::Io {
            path: PathBuf::from(format!("/proc/{pid}")),
            source: std::io::Error::other("the propagation thread panicked"),
        })
    })
}

/// The `mount(2)` flags of a propagation option.
fn propagation_flags(option: &str) -> Option<MsFlags> {
    let r = MsFlags::MS_REC;
    Some(match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | r,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | r,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | r,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | r,
        _ => return None,
    })
}

/// Whether `path` is a mount point: `statx`'s mount-root attribute, else (an old kernel) an
/// exact path match in `/proc/self/mountinfo`.
pub fn is_mountpoint(path: &Path) -> bool {
    if let Some(yes) = crate::sys::fsat::is_mount_root(path) {
        return yes;
    }
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want)
}

/// overlayfs's `lowerdir` order (topmost first) of `layers` (lowest first). A layer directory
/// met twice (two layers of identical content, e.g. two RUN steps that changed the same
/// nothing-but-a-stub) is kept at its topmost place only: overlayfs refuses overlapping lower
/// directories (ELOOP), and the lower copy is wholly covered by the upper one anyway.
/// How long a layer's short link name is: 16 hex digits of its 64.
const SHORT_LINK: usize = 16;

/// A short name for the layer directory `layer` (canonical): `l/<16 digits>` next to the
/// directory holding it, a symlink to it made on first use. overlayfs follows it when it
/// mounts and shows the name as given, so each mount's `lowerdir` shrinks by about 60 bytes a
/// layer in every `/proc/*/mountinfo` read. `None` (the long name is used) for a name that is
/// not long enough to gain, or a link that cannot be made or points elsewhere.
pub fn short_link(layer: &Path) -> Option<PathBuf> {
    let name = layer.file_name()?.to_str()?;
    if name.len() <= SHORT_LINK + 4 || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let store = layer.parent()?;
    let links = store.parent()?.join("l");
    let link = links.join(&name[..SHORT_LINK]);
    let target = Path::new("..").join(store.file_name()?).join(name);
    let points_here = |link: &Path| std::fs::read_link(link).is_ok_and(|t| t == target);
    if points_here(&link) {
        return Some(link);
    }
    let _ = std::fs::create_dir(&links);
    match std::os::unix::fs::symlink(&target, &link) {
        Ok(()) => Some(link),
        // Made meanwhile by a concurrent start, or (a prefix shared by two digests) taken.
        Err(_) => points_here(&link).then_some(link),
    }
}

/// Removes the short links of [`short_link`] under `links` whose layer is gone.
pub fn prune_short_links(links: &Path) {
    let Ok(entries) = std::fs::read_dir(links) else {
        return;
    };
    for e in entries.flatten() {
        // `exists` follows the link: false for one whose layer was removed.
        if e.file_type().is_ok_and(|t| t.is_symlink()) && !e.path().exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Docker's init layer: the mount points every container has (`/proc`, `/sys`, `/dev/pts`,
/// `/dev/shm`, the three `/etc` files berth binds over, `/etc/mtab`), in one read-only layer
/// that every container's root filesystem has above its image's. Without it the runtime
/// makes them in each container's upper directory (with a careful walk each) of an image that
/// lacks them, and every removal deletes them again. They stay out of `commit` as they do out
/// of `docker commit`. Made once, under a temporary name then renamed, so that a concurrent
/// start sees it whole or not at all.
pub fn init_layer(dir: &Path) -> Result<PathBuf, RootfsError> {
    if dir.is_dir() {
        return Ok(dir.to_path_buf());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RootfsError::Io { path, source }
    };
    // Unique: the containers of one `up` start in parallel.
    let tmp = dir.with_extension(format!("tmp-{}", crate::state::new_id()));
    // Modes set explicitly: an image's directory shows the mode of the highest layer that
    // has it, and a umask of 077 must not make `/etc` unreadable to a container's users.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    for d in ["dev/pts", "dev/shm", "proc", "sys", "etc"] {
        std::fs::create_dir_all(tmp.join(d)).map_err(io(&tmp.join(d)))?;
    }
    for d in ["", "dev", "dev/pts", "dev/shm", "proc", "sys", "etc"] {
        mode(&tmp.join(d), 0o755).map_err(io(&tmp.join(d)))?;
    }
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        std::fs::write(tmp.join(f), b"").map_err(io(&tmp.join(f)))?;
        mode(&tmp.join(f), 0o644).map_err(io(&tmp.join(f)))?;
    }
    std::os::unix::fs::symlink("/proc/mounts", tmp.join("etc/mtab"))
        .map_err(io(&tmp.join("etc/mtab")))?;
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(dir.to_path_buf()),
        // Made meanwhile by another start.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir.to_path_buf())
        }
        Err(source) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(RootfsError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
}

fn lowerdirs(layers: &[PathBuf]) -> Vec<&PathBuf> {
    let mut seen = std::collections::HashSet::new();
    layers.iter().rev().filter(|l| seen.insert(*l)).collect()
}

/// `target` as a path relative to the directory `base` (both absolute, without `..`), or
/// `target` itself when they share nothing but `/`.
fn relative_to(base: &Path, target: &Path) -> PathBuf {
    let b: Vec<_> = base.components().collect();
    let t: Vec<_> = target.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    if common <= 1 {
        return target.to_path_buf();
    }
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    if rel.as_os_str().is_empty() {
        rel.push(".");
    }
    rel
}

/// Every mount point at or below `root` (for leak checks and cleanup).
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| PathBuf::from(unescape(mp)))
        .filter(|p| p.starts_with(root))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_layers_are_kept_at_their_topmost_place() {
        let (a, b, c) = (
            PathBuf::from("/a"),
            PathBuf::from("/b"),
            PathBuf::from("/c"),
        );
        let layers = [a.clone(), b.clone(), a.clone(), c.clone(), b.clone()];
        assert_eq!(lowerdirs(&layers), [&b, &c, &a]);
    }

    #[test]
    fn layers_are_named_from_the_container_directory() {
        let dir = Path::new("/s/data/containers/abc");
        assert_eq!(
            relative_to(dir, Path::new("/s/data/images/layers/l1")),
            Path::new("../../images/layers/l1")
        );
        assert_eq!(
            relative_to(dir, Path::new("/s/data/containers/abc/x")),
            Path::new("x")
        );
        assert_eq!(relative_to(dir, dir), Path::new("."));
        assert_eq!(
            relative_to(dir, Path::new("/other/l")),
            Path::new("/other/l")
        );
    }

    #[test]
    fn layers_are_mounted_by_short_links() {
        let t = tempfile::tempdir().unwrap();
        let store = t.path().join("images/layers");
        let long = "a".repeat(64);
        let other = format!("{}b", "a".repeat(63));
        std::fs::create_dir_all(store.join(&long)).unwrap();
        std::fs::create_dir_all(store.join(&other)).unwrap();
        let link = short_link(&store.join(&long)).unwrap();
        assert_eq!(link, t.path().join("images/l").join("a".repeat(16)));
        assert_eq!(
            std::fs::canonicalize(&link).unwrap(),
            std::fs::canonicalize(store.join(&long)).unwrap()
        );
        // Again: the same link; a digest sharing the prefix keeps its long name.
        assert_eq!(short_link(&store.join(&long)), Some(link.clone()));
        assert_eq!(short_link(&store.join(&other)), None);
        // Short names stay as they are.
        std::fs::create_dir_all(store.join("short")).unwrap();
        assert_eq!(short_link(&store.join("short")), None);
        // A removed layer's link goes with the next prune; a live one stays.
        std::fs::remove_dir(store.join(&long)).unwrap();
        std::fs::create_dir_all(store.join("c".repeat(64))).unwrap();
        let live = short_link(&store.join("c".repeat(64))).unwrap();
        prune_short_links(&t.path().join("images/l"));
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert!(live.exists());
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
