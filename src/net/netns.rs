//! Named network namespaces: a new netns bind-mounted onto a file we choose.
//!
//! Entering or creating a namespace changes the *calling thread*, so every such step runs on a
//! dedicated OS thread that exits afterwards; a tokio worker never changes namespace.
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::statfs::{NSFS_MAGIC, statfs};

use super::NetError;
use super::link;

fn netns_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> NetError {
    let path = path.to_path_buf();
    move |source| NetError::Netns { path, op, source }
}

/// Whether a network namespace is mounted at `path`.
pub fn is_netns_mount(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Creates a new network namespace, keeps it alive by bind-mounting it onto `path`, and brings
/// its `lo` up. A namespace already mounted at `path` is kept as it is (idempotent).
pub fn create_netns(path: &Path) -> Result<(), NetError> {
    if is_netns_mount(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(NetError::io(dir))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(netns_err(path, "create mount point"))?;
    let target = path.to_path_buf();
    let result = std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || new_netns_on_this_thread(&target))
        .map_err(netns_err(path, "spawn thread"))?
        .join()
        .unwrap_or_else(|_| {
            Err(NetError::Netns {
                path: path.to_path_buf(),
                op: "create",
                source: io::Error::other("namespace thread panicked"),
            })
        });
    if result.is_err() {
        let _ = remove_netns(path);
    }
    result
}

/// Makes `path` another name of the namespace at `source` (a container's netns file, or
/// `/proc/self/ns/net` for the host's), for compose `network_mode: service:…|container:…|host`.
/// The container then joins `path` as usual. Idempotent like [`create_netns`].
pub fn share_netns(path: &Path, source: &Path) -> Result<(), NetError> {
    if is_netns_mount(path) {
        return Ok(());
    }
    if !is_netns_mount(source) && !source.starts_with("/proc") {
        return Err(netns_err(path, "share")(io::Error::other(format!(
            "{} is not a network namespace",
            source.display()
        ))));
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(NetError::io(dir))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(netns_err(path, "create mount point"))?;
    nix::mount::mount(
        Some(source),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| netns_err(path, "bind mount")(e.into()))
}

/// Runs on a thread of its own, which ends in the new namespace and then exits.
fn new_netns_on_this_thread(path: &Path) -> Result<(), NetError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| netns_err(path, "unshare")(e.into()))?;
    nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| netns_err(path, "bind mount")(e.into()))?;
    block_on_here(path, async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(netns_err(path, "netlink"))?;
        tokio::spawn(conn);
        link::set_up(&handle, "lo").await
    })
}

fn block_on_here<T>(
    path: &Path,
    fut: impl Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(netns_err(path, "start runtime"))?;
    rt.block_on(fut)
}

/// Unmounts (lazily) and removes the namespace file. Missing or already unmounted is fine.
pub fn remove_netns(path: &Path) -> Result<(), NetError> {
    if is_netns_mount(path) {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(netns_err(path, "unmount")(e.into())),
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(netns_err(path, "remove")(e)),
    }
}

/// Runs `work` with a netlink handle opened inside the namespace at `path`, on a dedicated
/// thread that enters the namespace and exits when done.
pub(crate) async fn with_netns_handle<T, F, Fut>(path: &Path, work: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetError>>,
{
    let ns = File::open(path).map_err(netns_err(path, "open"))?;
    let owned: PathBuf = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            let result = (|| {
                nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| netns_err(&owned, "enter")(e.into()))?;
                block_on_here(&owned, async {
                    let (conn, handle, _) =
                        rtnetlink::new_connection().map_err(netns_err(&owned, "netlink"))?;
                    tokio::spawn(conn);
                    work(handle).await
                })
            })();
            let _ = tx.send(result);
        })
        .map_err(netns_err(path, "spawn thread"))?;
    rx.await.unwrap_or_else(|_| {
        Err(NetError::Netns {
            path: path.to_path_buf(),
            op: "enter",
            source: io::Error::other("namespace thread panicked"),
        })
    })
}
