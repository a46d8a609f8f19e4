//! The build network: where `RUN --network=default` steps live, as Docker's build steps live on
//! a bridge with outbound NAT. One ordinary berth bridge network per state root, named
//! [`NAME`], with a subnet from the pool (`BERTH_SUBNET_POOL`) and the usual firewall
//! (masquerade out, no published ports). Each step's namespace gets a veth on it with an
//! address from its allocator and a default route via the bridge; the address is released and
//! the veth deleted when the step ends, whatever happened.
//!
//! Steps hold a shared lock on `locks/build-network.lock` from ensuring the network until
//! their veth is gone; the network (and the firewall table, if it was the root's last network)
//! is removed at the end of a build by whoever gets that lock exclusively, so no build network
//! outlives the builds of the root and concurrent builds never lose it under a running step.
use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;

use crate::project::network;
use crate::state::{Paths, short_hash};

/// The build network's name (also shown by `network ls` while a build runs).
pub const NAME: &str = "berth_build";
/// The label marking the network as berth's own build network.
const LABEL: &str = "berth.build.network";

fn users_lock(paths: &Paths) -> Result<File, String> {
    let dir = paths.locks();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("build-network.lock");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `fut` on a runtime of its own thread: a build may run inside an async runtime
/// (compose `up`), which must not be nested.
fn block_on<T: Send + 'static>(
    fut: impl Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the async runtime: {e}"))?
            .block_on(fut)
    })
    .join()
    .map_err(|_| "the build network thread panicked".to_string())?
}

/// The state roots (by tag) whose build network this process ensured (bridge, firewall) and
/// nobody removed since: later steps skip the ensuring, which costs a firewall transaction.
/// Only changed under the users lock (shared to add, exclusive to remove), so a root in here
/// has its network while a step holds the shared lock.
static ENSURED: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The build network, if this process ensured it already and its bridge is still there.
fn ensured(paths: &Paths) -> Result<Option<crate::net::BridgeNetwork>, String> {
    let known = ENSURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&paths.tag());
    if !known {
        return Ok(None);
    }
    let rec = network::load(paths, NAME).map_err(|e| e.to_string())?;
    Ok(rec.map(|r| r.network).filter(|n| {
        std::path::Path::new("/sys/class/net")
            .join(&n.bridge)
            .exists()
    }))
}

/// A step's place on the build network; dropping it deletes the veth and releases the address.
pub struct Attachment {
    paths: Paths,
    owner: String,
    host_ifname: String,
    network: crate::net::BridgeNetwork,
    /// Shared: the network stays while this is held.
    _users: File,
}

/// Ensures the build network and connects the namespace at `netns` of step `owner` to it as
/// `eth0`. Returns the attachment and the step's `/etc/resolv.conf`.
pub fn attach(
    paths: &Paths,
    owner: &str,
    netns: &std::path::Path,
) -> Result<(Attachment, String), String> {
    let users = users_lock(paths)?;
    users
        .lock_shared()
        .map_err(|e| format!("locking the build network: {e}"))?;
    if let Some(r) = network::load(paths, NAME).map_err(|e| e.to_string())?
        && !r.labels.contains_key(LABEL)
    {
        return Err(format!(
            "network {NAME} exists and is not berth's build network (hint: remove it, or use RUN --network=host|none)"
        ));
    }
    let host = crate::project::net_host(paths);
    let net = match ensured(paths)? {
        Some(net) => net,
        None => {
            let labels = BTreeMap::from([(LABEL.to_string(), "true".to_string())]);
            let (p, h) = (paths.clone(), host.clone());
            let (net, _) = block_on(async move {
                network::ensure(&p, &h, NAME, &network::NetworkSpec::default(), &labels)
                    .await
                    .map_err(|e| format!("the build network: {e}"))
            })?;
            ENSURED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(paths.tag());
            net
        }
    };
    let alloc = network::allocator(paths, &net);
    let ip = alloc
        .allocate(owner)
        .map_err(|e| format!("an address on the build network: {e}"))?;
    let att = Attachment {
        paths: paths.clone(),
        owner: owner.to_string(),
        host_ifname: format!("vb{}", short_hash(format!("{owner}{NAME}").as_bytes(), 11)),
        network: net.clone(),
        _users: users,
    };
    let (ns, n, hif) = (netns.to_owned(), net, att.host_ifname.clone());
    // On failure `att` is dropped: the veth (if any) goes, the address is released.
    block_on(async move {
        host.attach(&ns, &n, ip, &hif, "eth0")
            .await
            .map_err(|e| format!("connecting the step to the build network: {e}"))
    })?;
    Ok((att, resolv_conf()))
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let host = crate::project::net_host(&self.paths);
        let hif = self.host_ifname.clone();
        let _ = block_on(async move { host.detach(&hif).await.map_err(|e| e.to_string()) });
        let _ = network::allocator(&self.paths, &self.network).release(&self.owner);
    }
}

/// Removes the build network when no step of any build of the root is on it. Best effort:
/// called at the end of every build.
pub fn remove_if_unused(paths: &Paths) {
    let Ok(Some(r)) = network::load(paths, NAME) else {
        return;
    };
    if !r.labels.contains_key(LABEL) {
        return;
    }
    let Ok(users) = users_lock(paths) else {
        return;
    };
    if users.try_lock().is_err() {
        return; // a step of another build is on it; that build removes it
    }
    // A container the user connected to it keeps it.
    let used = crate::engine::container::list(paths).is_ok_and(|cs| {
        cs.iter()
            .any(|c| c.networks.iter().any(|a| a.network == NAME))
    });
    if used {
        return;
    }
    ENSURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&paths.tag());
    let (p, host) = (paths.clone(), crate::project::net_host(paths));
    let _ = block_on(async move {
        network::remove(&p, &host, &r.network)
            .await
            .map_err(|e| e.to_string())
    });
    drop(users);
}

/// A step's `/etc/resolv.conf`: the host's (`BERTH_RESOLV_CONF` names another file), without
/// loopback nameservers, which do not answer in the step's namespace. When only loopback ones
/// are left and systemd-resolved's upstream list exists, that list, as Docker does.
pub fn resolv_conf() -> String {
    let host = crate::project::up::host_resolv_conf();
    let text = without_loopback(&host);
    if crate::net::dns::nameservers(&text).is_empty()
        && !crate::net::dns::nameservers(&host).is_empty()
        && std::env::var_os("BERTH_RESOLV_CONF").is_none()
        && let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
    {
        return without_loopback(&upstream);
    }
    text
}

fn without_loopback(conf: &str) -> String {
    conf.lines()
        .filter(|l| {
            !crate::net::dns::nameservers(l)
                .first()
                .is_some_and(|a| a.ip().is_loopback())
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_nameservers_are_dropped() {
        let conf =
            "search example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.1\noptions edns0\n";
        assert_eq!(
            without_loopback(conf),
            "search example.org\nnameserver 192.0.2.1\noptions edns0\n"
        );
    }
}
