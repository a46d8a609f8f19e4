//! The nftables side: one `inet` table per state root, driven by `nft -f -` text scripts.
//!
//! Layout (see `research/networking.md` §7.1): sets of our bridges, `bridge . bridge` pairs,
//! internal bridges and subnets; maps of published ports (`pf_any` without a host address,
//! `pf_ip` with one). Rules refer only to these sets, so they are the same for every state of
//! the world and are rewritten whole (chain flush + add in one transaction) by every
//! `ensure_network`; networks and ports are set and map elements. Script builders are pure
//! functions and unit-tested; [`run_nft`] is the only place that executes anything.
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use super::{BridgeNetwork, NetError, NetHost, PortMapping};

/// Chains and their hooks. The `output` nat chain needs a numeric priority in nft 1.0.6.
const CHAINS: &[(&str, &str)] = &[
    (
        "raw_prerouting",
        "type filter hook prerouting priority raw; policy accept;",
    ),
    (
        "prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
    ),
    (
        "output",
        "type nat hook output priority -100; policy accept;",
    ),
    ("hostports", ""),
    (
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
    ),
    (
        "forward",
        "type filter hook forward priority filter; policy accept;",
    ),
];

const RULES: &[(&str, &str)] = &[
    // CVE-2020-8558: route_localnet=1 on our bridges must not let containers reach the host's
    // 127.0.0.1 services. Scoped to packets arriving on our bridges only.
    (
        "raw_prerouting",
        "iifname @bridges ip daddr 127.0.0.0/8 drop",
    ),
    ("prerouting", "fib daddr type local jump hostports"),
    ("output", "fib daddr type local jump hostports"),
    (
        "hostports",
        "dnat ip to ip daddr . meta l4proto . th dport map @pf_ip",
    ),
    (
        "hostports",
        "dnat ip to meta l4proto . th dport map @pf_any",
    ),
    // host → 127.0.0.1:port: the container must answer the gateway, not 127.0.0.1.
    (
        "postrouting",
        "oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade",
    ),
    // hairpin: a container reaching a published port of its own or another of our networks.
    (
        "postrouting",
        "ct status dnat iifname @bridges oifname @bridges ip saddr @subnets masquerade",
    ),
    // outbound traffic of non-internal networks.
    (
        "postrouting",
        "ip saddr @subnets oifname != @bridges masquerade",
    ),
    (
        "postrouting",
        "ip6 saddr @subnets6 oifname != @bridges masquerade",
    ),
    ("forward", "iifname @bridges ct state invalid drop"),
    ("forward", "oifname @bridges ct state invalid drop"),
    ("forward", "iifname . oifname @same_bridge accept"),
    ("forward", "iifname @internal drop"),
    ("forward", "oifname @internal drop"),
    // another network's published port, reached through a host address.
    (
        "forward",
        "iifname @bridges oifname @bridges ct status dnat accept",
    ),
    // isolation between networks.
    ("forward", "iifname @bridges oifname @bridges drop"),
    (
        "forward",
        "oifname @bridges ct state established,related accept",
    ),
    ("forward", "oifname @bridges ct status dnat accept"),
    ("forward", "iifname @bridges accept"),
    ("forward", "oifname @bridges drop"),
];

/// Table names reach `nft` unquoted: allow only `[A-Za-z0-9_]`, starting with a letter.
pub fn check_table(name: &str) -> Result<(), NetError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(NetError::InvalidTableName {
            name: name.to_string(),
        })
    }
}

/// The whole table: sets and chains created if missing (`add` is idempotent), every chain's
/// rules replaced. Set and map elements survive.
pub fn base_script(table: &str) -> String {
    let t = format!("inet {table}");
    let mut s = format!("add table {t}\n");
    for (name, ty) in [
        ("bridges", "type ifname;"),
        ("internal", "type ifname;"),
        ("same_bridge", "type ifname . ifname;"),
        ("subnets", "type ipv4_addr; flags interval;"),
        ("subnets6", "type ipv6_addr; flags interval;"),
    ] {
        let _ = writeln!(s, "add set {t} {name} {{ {ty} }}");
    }
    let _ = writeln!(
        s,
        "add map {t} pf_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}"
    );
    let _ = writeln!(
        s,
        "add map {t} pf_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}"
    );
    for (chain, hook) in CHAINS {
        if hook.is_empty() {
            let _ = writeln!(s, "add chain {t} {chain}");
        } else {
            let _ = writeln!(s, "add chain {t} {chain} {{ {hook} }}");
        }
        let _ = writeln!(s, "flush chain {t} {chain}");
    }
    for (chain, rule) in RULES {
        let _ = writeln!(s, "add rule {t} {chain} {rule}");
    }
    let _ = writeln!(s, "add chain {t} {}", version_chain());
    s
}

/// An empty chain named after this build's rules (a hash of [`CHAINS`] and [`RULES`]): its
/// presence says the table's rules are the ones this binary writes.
fn version_chain() -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for (chain, hook) in CHAINS.iter().chain(RULES) {
        h.update(chain.as_bytes());
        h.update([0]);
        h.update(hook.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    format!("v_{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
}

/// Whether the ruleset (`nft -j list ruleset`) already holds everything
/// [`ensure_network_script`] would write for `n`: the table at this build's rules (its version
/// chain, each chain with its number of rules) and the network's set elements. Anything
/// missing or unreadable says no, and the caller rewrites it all.
pub fn network_in_place(ruleset: &serde_json::Value, table: &str, n: &BridgeNetwork) -> bool {
    let ours = |o: &&serde_json::Value| o["family"] == "inet" && o["table"] == table;
    let chains: Vec<&str> = ruleset_objects(ruleset, "chain")
        .filter(ours)
        .map(|c| str_of(c, "name"))
        .collect();
    let version = version_chain();
    if !chains.contains(&version.as_str()) {
        return false;
    }
    let rules: Vec<&str> = ruleset_objects(ruleset, "rule")
        .filter(ours)
        .map(|r| str_of(r, "chain"))
        .collect();
    for (chain, _) in CHAINS {
        let want = RULES.iter().filter(|(c, _)| c == chain).count();
        if !chains.contains(chain) || rules.iter().filter(|c| *c == chain).count() != want {
            return false;
        }
    }
    let has = |set: &str, want: &serde_json::Value| {
        ruleset_objects(ruleset, "set")
            .filter(ours)
            .filter(|o| o["name"] == set)
            .any(|o| match &o["elem"] {
                serde_json::Value::Array(items) => items.contains(want),
                one => one == want,
            })
    };
    let b = serde_json::Value::from(n.bridge.as_str());
    let prefix =
        |addr: String, len: u8| serde_json::json!({ "prefix": { "addr": addr, "len": len } });
    let net = n.subnet.trunc();
    has("bridges", &b)
        && has("same_bridge", &serde_json::json!({ "concat": [b, b] }))
        && has("subnets", &prefix(net.addr().to_string(), net.prefix_len()))
        && n.subnet6.is_none_or(|s| {
            let s = s.trunc();
            has("subnets6", &prefix(s.addr().to_string(), s.prefix_len()))
        })
        && (!n.internal || has("internal", &b))
}

fn network_elements(table: &str, n: &BridgeNetwork, verb: &str) -> String {
    let (t, b) = (format!("inet {table}"), &n.bridge);
    let mut s = String::new();
    let _ = writeln!(s, "{verb} element {t} bridges {{ \"{b}\" }}");
    let _ = writeln!(s, "{verb} element {t} same_bridge {{ \"{b}\" . \"{b}\" }}");
    let _ = writeln!(s, "{verb} element {t} subnets {{ {} }}", n.subnet.trunc());
    if let Some(net6) = n.subnet6 {
        let _ = writeln!(s, "{verb} element {t} subnets6 {{ {} }}", net6.trunc());
    }
    if n.internal {
        let _ = writeln!(s, "{verb} element {t} internal {{ \"{b}\" }}");
    }
    s
}

/// Base table plus the network's elements.
pub fn ensure_network_script(table: &str, n: &BridgeNetwork) -> String {
    base_script(table) + &network_elements(table, n, "add")
}

/// Removes the network's elements; adding them first makes the deletes succeed when they are
/// already gone (nft 1.0.6 has no `destroy`), so the script is idempotent.
pub fn remove_network_script(table: &str, n: &BridgeNetwork) -> String {
    // An internal network's `internal` element is deleted whatever `n.internal` says now.
    let mut all = n.clone();
    all.internal = true;
    network_elements(table, &all, "add") + &network_elements(table, &all, "delete")
}

fn port_key(p: &PortMapping) -> (Option<Ipv4Addr>, String) {
    let host_ip = p.host_ip.filter(|ip| !ip.is_unspecified());
    (host_ip, format!("{} . {}", p.protocol, p.host_port))
}

fn port_element(table: &str, p: &PortMapping, verb: &str, with_data: bool) -> String {
    let (host_ip, key) = port_key(p);
    let (map, key) = match host_ip {
        Some(ip) => ("pf_ip", format!("{ip} . {key}")),
        None => ("pf_any", key),
    };
    let data = if with_data {
        format!(" : {} . {}", p.container_ip, p.container_port)
    } else {
        String::new()
    };
    format!("{verb} element inet {table} {map} {{ {key}{data} }}\n")
}

/// Adds one map element per mapping.
pub fn publish_script(table: &str, ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|p| port_element(table, p, "add", true))
        .collect()
}

/// Deletes the mappings' elements (add-then-delete, so missing elements are fine). An element
/// whose host port now points elsewhere makes the `add` fail: it is someone else's, keep it.
pub fn unpublish_script(table: &str, ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|p| port_element(table, p, "add", true) + &port_element(table, p, "delete", false))
        .collect()
}

/// Runs `nft -f -` with `script` as one transaction.
pub fn run_nft(op: &str, script: &str) -> Result<String, NetError> {
    nft(op, &["-f", "-"], Some(script))
}

fn nft(op: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::NftExec { source })?;
    if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(script.as_bytes())
            .map_err(|source| NetError::NftExec { source })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| NetError::NftExec { source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Nft {
            op: op.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether `nft list` of this object succeeds (the object exists).
fn nft_list(args: &[&str]) -> Option<String> {
    let mut full = vec!["list"];
    full.extend_from_slice(args);
    nft("list", &full, None).ok()
}

/// A chain of someone else's where berth must accept its bridges' traffic: a base chain on
/// the forward hook whose policy is drop (Docker's `ip filter FORWARD`, a firewall's, an
/// admin's), or the `DOCKER-USER` chain that Docker's `FORWARD` jumps to first.
///
/// Every base chain on a hook sees every packet and an accept in one does not stop a drop in
/// another (`research/networking.md` §6.2): our own table cannot overrule them, so berth puts
/// a pair of accepts for each of its bridges at the top of each such chain. Isolation between
/// our networks stays in our table, whose forward chain runs as well.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignChain {
    pub family: String,
    pub table: String,
    pub chain: String,
}

fn ruleset_objects<'a>(
    ruleset: &'a serde_json::Value,
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    ruleset["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |o| o.get(kind))
}

fn str_of<'a>(o: &'a serde_json::Value, key: &str) -> &'a str {
    o[key].as_str().unwrap_or_default()
}

/// The chains, in an `nft -j -a list ruleset` document, that would drop our bridges' forwarded
/// traffic. Tables named `berth…` are berth's own (this or another state root): never touched.
pub fn forward_drop_chains(ruleset: &serde_json::Value) -> Vec<ForeignChain> {
    let chains: Vec<&serde_json::Value> = ruleset_objects(ruleset, "chain").collect();
    let mut out: Vec<ForeignChain> = chains
        .iter()
        .filter(|c| {
            matches!(str_of(c, "family"), "ip" | "ip6" | "inet")
                && str_of(c, "hook") == "forward"
                && str_of(c, "policy") == "drop"
                && !str_of(c, "table").starts_with("berth")
        })
        .map(|c| {
            let (family, table) = (str_of(c, "family"), str_of(c, "table"));
            // Docker rewrites FORWARD when it restarts but leaves DOCKER-USER to the user.
            let docker_user = chains.iter().any(|d| {
                str_of(d, "family") == family
                    && str_of(d, "table") == table
                    && str_of(d, "name") == "DOCKER-USER"
            });
            ForeignChain {
                family: family.into(),
                table: table.into(),
                chain: if docker_user {
                    "DOCKER-USER".into()
                } else {
                    str_of(c, "name").into()
                },
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn berth_comment(bridge: &str) -> String {
    format!("berth:{bridge}")
}

/// Our accept rules for `bridge` in other tables, with their handles.
pub fn foreign_rules(ruleset: &serde_json::Value, bridge: &str) -> Vec<(ForeignChain, u64)> {
    let comment = berth_comment(bridge);
    ruleset_objects(ruleset, "rule")
        .filter(|r| str_of(r, "comment") == comment && !str_of(r, "table").starts_with("berth"))
        .filter_map(|r| {
            Some((
                ForeignChain {
                    family: str_of(r, "family").into(),
                    table: str_of(r, "table").into(),
                    chain: str_of(r, "chain").into(),
                },
                r["handle"].as_u64()?,
            ))
        })
        .collect()
}

/// `nft -j` commands inserting `iifname BR accept` and `oifname BR accept` at the top of `c`.
/// JSON rather than nft's language: chain names such as `fwd` are keywords there and nft
/// 1.0.6 cannot quote them.
pub fn foreign_accepts(c: &ForeignChain, bridge: &str) -> Vec<serde_json::Value> {
    ["oifname", "iifname"]
        .iter()
        .map(|key| {
            serde_json::json!({"insert": {"rule": {
                "family": c.family, "table": c.table, "chain": c.chain,
                "expr": [
                    {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": bridge}},
                    {"counter": null},
                    {"accept": null}
                ],
                "comment": berth_comment(bridge)
            }}})
        })
        .collect()
}

/// `nft -j` commands deleting rules by handle.
pub fn foreign_deletes(rules: &[(ForeignChain, u64)]) -> Vec<serde_json::Value> {
    rules
        .iter()
        .map(|(c, handle)| {
            serde_json::json!({"delete": {"rule": {
                "family": c.family, "table": c.table, "chain": c.chain, "handle": handle
            }}})
        })
        .collect()
}

/// The commands that make every drop chain of `ruleset` accept `bridge` exactly once: chains
/// with both accepts are left alone, others get a fresh pair.
pub fn coexistence_commands(ruleset: &serde_json::Value, bridge: &str) -> Vec<serde_json::Value> {
    let ours = foreign_rules(ruleset, bridge);
    let mut cmds = Vec::new();
    for c in forward_drop_chains(ruleset) {
        let here: Vec<(ForeignChain, u64)> =
            ours.iter().filter(|(o, _)| *o == c).cloned().collect();
        if here.len() != 2 {
            cmds.extend(foreign_deletes(&here));
            cmds.extend(foreign_accepts(&c, bridge));
        }
    }
    cmds
}

fn run_nft_json(op: &str, cmds: Vec<serde_json::Value>) -> Result<(), NetError> {
    let doc = serde_json::json!({ "nftables": cmds });
    nft(op, &["-j", "-f", "-"], Some(&doc.to_string())).map(drop)
}

fn nft_ruleset() -> Option<serde_json::Value> {
    let text = nft("list ruleset", &["-j", "-a", "list", "ruleset"], None).ok()?;
    serde_json::from_str(&text).ok()
}

/// The legacy (x_tables) side of coexistence: `iptables-legacy`'s `FORWARD` with a drop
/// policy lives outside nftables. Only looked at when the kernel already has that table:
/// asking `iptables-legacy` would create it otherwise.
mod legacy {
    use super::super::iptsock::Family;
    use std::process::Command;

    const TOOLS: [(&str, &str); 2] = [
        ("iptables-legacy", "/proc/net/ip_tables_names"),
        ("ip6tables-legacy", "/proc/net/ip6_tables_names"),
    ];

    fn loaded(names: &str) -> bool {
        std::fs::read_to_string(names).is_ok_and(|t| t.lines().any(|l| l.trim() == "filter"))
    }

    fn run(tool: &str, args: &[&str]) -> Option<String> {
        let out = Command::new(tool).arg("-w").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The arguments of our two rules for `bridge` (after `-I/-C/-D CHAIN`).
    pub fn rule_args(bridge: &str) -> [Vec<String>; 2] {
        ["-o", "-i"].map(|dir| {
            [dir, bridge, "-m", "comment", "--comment"]
                .iter()
                .map(|s| s.to_string())
                .chain([super::berth_comment(bridge), "-j".into(), "ACCEPT".into()])
                .collect()
        })
    }

    /// Whether `iptables -S FORWARD` output shows a drop policy.
    pub fn drops(listing: &str) -> bool {
        listing.lines().any(|l| l.trim() == "-P FORWARD DROP")
    }

    /// Accepts `bridge` where a legacy FORWARD drops; `before_insert` runs before the first
    /// rule is inserted. Returns whether any rule of ours is there now.
    pub fn accept(bridge: &str, before_insert: &dyn Fn()) -> bool {
        let mut present = false;
        for (i, (tool, names)) in TOOLS.into_iter().enumerate() {
            if !loaded(names) {
                continue;
            }
            // The kernel's own answer first (no process); the tool when it cannot say.
            let family = if i == 0 { Family::V4 } else { Family::V6 };
            let drop = match super::super::iptsock::forward_policy_drops(family) {
                Some(d) => d,
                None => run(tool, &["-S", "FORWARD"]).is_some_and(|l| drops(&l)),
            };
            if !drop {
                continue;
            }
            let chain = if run(tool, &["-S", "DOCKER-USER"]).is_some() {
                "DOCKER-USER"
            } else {
                "FORWARD"
            };
            for args in rule_args(bridge) {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let check = [&["-C", chain][..], &args].concat();
                present = true;
                if run(tool, &check).is_none() {
                    before_insert();
                    let insert = [&["-I", chain][..], &args].concat();
                    if run(tool, &insert).is_none() {
                        tracing::warn!("{tool}: could not accept {bridge} in {chain}");
                    }
                }
            }
        }
        present
    }

    pub fn remove(bridge: &str) {
        for (tool, names) in TOOLS {
            // One listing of the filter table says whether any of our rules is there at all
            // (usually none: they are only inserted where FORWARD drops).
            let ours = super::berth_comment(bridge);
            if !loaded(names) || !run(tool, &["-S"]).is_some_and(|l| l.contains(&ours)) {
                continue;
            }
            for chain in ["DOCKER-USER", "FORWARD"] {
                for args in rule_args(bridge) {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let delete = [&["-D", chain][..], &args].concat();
                    // Bounded: a rule inserted twice by racing runs goes too.
                    for _ in 0..4 {
                        if run(tool, &delete).is_none() {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Group commit of port scripts: the threads of an `up` or `down` publish and unpublish their
/// containers' ports at about the same time, and one `nft` run per container was most of a
/// port-heavy project's firewall time. A caller queues its script and takes the flush lock;
/// whoever holds it sends everything queued so far as one transaction, so a caller returns
/// only after a transaction holding its script is done. When a shared transaction fails, each
/// of its callers is told so and redoes its own script alone, which gives it its own error.
#[derive(Debug, Default)]
pub struct Batch {
    queue: Mutex<Queue>,
    flush: Mutex<()>,
}

#[derive(Debug, Default)]
struct Queue {
    next: u64,
    pending: Vec<(u64, String)>,
    /// Outcomes of flushed scripts whose callers have not looked yet.
    done: std::collections::HashMap<u64, bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Batch {
    /// Sends `script` in a transaction with whatever else is queued; whether it applied.
    fn submit(&self, op: &str, script: String) -> bool {
        let ticket = {
            let mut q = lock(&self.queue);
            q.next += 1;
            let t = q.next;
            q.pending.push((t, script));
            t
        };
        let _flush = lock(&self.flush);
        let taken = {
            let mut q = lock(&self.queue);
            if let Some(ok) = q.done.remove(&ticket) {
                return ok;
            }
            std::mem::take(&mut q.pending)
        };
        let all: String = taken.iter().map(|(_, s)| s.as_str()).collect();
        let ok = run_nft(op, &all).is_ok();
        let mut q = lock(&self.queue);
        for (t, _) in taken {
            if t != ticket {
                q.done.insert(t, ok);
            }
        }
        ok
    }
}

/// Whether a bridge may have rules of ours outside our table: accepts in other tables' forward
/// chains that drop, or in legacy iptables. Kept per bridge under the run dir; written
/// `Some` before any such rule is inserted and `None` only after a listing found none, so
/// removing a network lists the whole ruleset only when there may be something to take out.
/// No record (a network from an older berth) counts as `Some`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coexist {
    None,
    Some,
}

impl Coexist {
    fn as_str(self) -> &'static str {
        match self {
            Coexist::None => "none",
            Coexist::Some => "some",
        }
    }
}

fn is_file_exists(e: &NetError) -> bool {
    matches!(e, NetError::Nft { stderr, .. } if stderr.contains("File exists"))
}

impl NetHost {
    fn table_exists(&self) -> bool {
        nft_list(&["table", "inet", &self.table]).is_some()
    }

    /// Base table, network elements, and Docker coexistence accepts. Caller holds the lock.
    pub(crate) fn apply_network_firewall(&self, n: &BridgeNetwork) -> Result<(), NetError> {
        check_table(&self.table)?;
        // Nothing has changed in nftables since this network's rules were last found complete:
        // only the legacy side, which nftables' generation does not cover, is looked at.
        let generation = super::nftgen::current();
        let record = self.verified_record(n);
        let verified = |g: u32| format!("{} {g}\n", self.verified_key(n));
        let mark = |v: Coexist| self.set_coexist(&n.bridge, v);
        if let Some(g) = generation
            && std::fs::read_to_string(&record).is_ok_and(|r| r == verified(g))
        {
            // A rule found there was recorded by the listing that verified the network.
            legacy::accept(&n.bridge, &|| mark(Coexist::Some));
            return Ok(());
        }
        // One listing serves both: whether our part is in place (the usual case when the
        // network exists: no write), and the foreign chains to coexist with.
        let ruleset = nft_ruleset();
        let in_place = ruleset
            .as_ref()
            .is_some_and(|r| network_in_place(r, &self.table, n));
        if !in_place {
            run_nft(
                &format!("add network {}", n.name),
                &ensure_network_script(&self.table, n),
            )?;
        }
        let foreign = ruleset
            .as_ref()
            .map(|r| !foreign_rules(r, &n.bridge).is_empty());
        let cmds = ruleset.as_ref().map(|r| coexistence_commands(r, &n.bridge));
        let untouched = in_place && cmds.as_ref().is_some_and(Vec::is_empty);
        let inserted = self.coexist(&n.bridge, cmds)?;
        match foreign {
            Some(false) if !inserted => mark(Coexist::None),
            _ => mark(Coexist::Some),
        }
        // Recorded only when this call wrote nothing: the generation read before the listing
        // then names a ruleset the listing has shown complete (a later commit moves it on).
        match generation {
            Some(g) if untouched => {
                let _ = std::fs::create_dir_all(record.parent().unwrap_or(&self.run_dir));
                let _ = std::fs::write(&record, verified(g));
            }
            _ => {
                let _ = std::fs::remove_file(&record);
            }
        }
        Ok(())
    }

    /// Where the nftables generation at which `n`'s rules were last found complete is kept.
    fn verified_record(&self, n: &BridgeNetwork) -> std::path::PathBuf {
        self.run_dir.join("firewall-verified").join(&n.bridge)
    }

    /// What the record must say besides the generation: the table, this build's rules and
    /// the network's definition.
    fn verified_key(&self, n: &BridgeNetwork) -> String {
        let def = crate::state::short_hash(format!("{n:?}").as_bytes(), 8);
        format!("{} {} {def}", self.table, version_chain())
    }

    /// Makes every foreign forward chain with a drop policy accept our bridge's traffic (see
    /// [`ForeignChain`]) by running `cmds` ([`coexistence_commands`] of the latest listing).
    /// Re-run by every `ensure_network`, so a firewall (re)started after berth is caught up
    /// with at the next operation. Returns whether it inserted or found a
    /// rule of ours outside our table (recorded first, see [`Coexist`]).
    fn coexist(
        &self,
        bridge: &str,
        cmds: Option<Vec<serde_json::Value>>,
    ) -> Result<bool, NetError> {
        let mut ours = false;
        if let Some(cmds) = cmds.filter(|c| !c.is_empty()) {
            self.set_coexist(bridge, Coexist::Some);
            ours = true;
            run_nft_json(&format!("accept {bridge} in forward drop chains"), cmds)?;
        }
        ours |= legacy::accept(bridge, &|| self.set_coexist(bridge, Coexist::Some));
        Ok(ours)
    }

    fn coexist_record(&self, bridge: &str) -> std::path::PathBuf {
        self.run_dir.join("firewall-coexist").join(bridge)
    }

    /// Records whether rules of ours for `bridge` may be in other tables or in legacy
    /// iptables (written before any is inserted).
    fn set_coexist(&self, bridge: &str, v: Coexist) {
        let path = self.coexist_record(bridge);
        let _ = std::fs::create_dir_all(path.parent().unwrap_or(&self.run_dir));
        let _ = std::fs::write(&path, v.as_str());
    }

    fn coexist_of(&self, bridge: &str) -> Coexist {
        match std::fs::read_to_string(self.coexist_record(bridge)).as_deref() {
            Ok("none") => Coexist::None,
            _ => Coexist::Some,
        }
    }

    /// Coexistence accepts first, then the network's elements. Caller holds the lock.
    pub(crate) fn remove_network_firewall(
        &self,
        n: &BridgeNetwork,
        drop_table: bool,
    ) -> Result<(), NetError> {
        check_table(&self.table)?;
        let _ = std::fs::remove_file(self.verified_record(n));
        // Nothing of ours outside our table (the usual case): no listing to look for it.
        if self.coexist_of(&n.bridge) == Coexist::None {
            let _ = std::fs::remove_file(self.coexist_record(&n.bridge));
            if drop_table {
                return self.remove_table();
            }
            if !self.table_exists() {
                return Ok(());
            }
            return run_nft(
                &format!("remove network {}", n.name),
                &remove_network_script(&self.table, n),
            )
            .map(drop);
        }
        legacy::remove(&n.bridge);
        // Whether our table exists, from the last listing (asked separately if none worked).
        let mut present = None;
        for attempt in 0..2 {
            let Some(ruleset) = nft_ruleset() else { break };
            present = Some(
                ruleset_objects(&ruleset, "table")
                    .any(|t| t["family"] == "inet" && t["name"] == self.table.as_str()),
            );
            let ours = foreign_rules(&ruleset, &n.bridge);
            if ours.is_empty() {
                break;
            }
            // A foreign table changing under us can make a handle vanish: list again once.
            match run_nft_json(
                &format!("remove accepts of {}", n.bridge),
                foreign_deletes(&ours),
            ) {
                Ok(()) => break,
                Err(e) if attempt == 1 => return Err(e),
                Err(_) => {}
            }
        }
        if !present.unwrap_or_else(|| self.table_exists()) {
            return Ok(());
        }
        if drop_table {
            return self.remove_table();
        }
        run_nft(
            &format!("remove network {}", n.name),
            &remove_network_script(&self.table, n),
        )
        .map(drop)
    }

    /// Publishes ports: one transaction adding one map element each.
    pub fn publish(&self, ports: &[PortMapping]) -> Result<(), NetError> {
        check_table(&self.table)?;
        if ports.is_empty() {
            return Ok(());
        }
        // Straight over netlink; `nft` (below) only for what that refuses, for its message.
        match super::nftset::add_port_elements(&self.table, ports) {
            Ok(()) => return Ok(()),
            Err(super::nftset::Refused(why)) => tracing::debug!("publishing with nft: {why}"),
        }
        let script = publish_script(&self.table, ports);
        if self.ports.submit("publish ports", script.clone()) {
            return Ok(());
        }
        run_nft("publish ports", &script).map(drop)
    }

    /// Unpublishes ports. Missing elements and a missing table are fine; an element whose host
    /// port has meanwhile been published for another container is left alone.
    pub fn unpublish(&self, ports: &[PortMapping]) -> Result<(), NetError> {
        check_table(&self.table)?;
        if ports.is_empty() {
            return Ok(());
        }
        // The common case in one shared transaction; a missing table, or an element that
        // now belongs to another container, fails it and is sorted out below, alone.
        if self
            .ports
            .submit("unpublish ports", unpublish_script(&self.table, ports))
        {
            return Ok(());
        }
        if !self.table_exists() {
            return Ok(());
        }
        match run_nft("unpublish ports", &unpublish_script(&self.table, ports)) {
            Ok(_) => Ok(()),
            Err(e) if is_file_exists(&e) => {
                for p in ports {
                    match run_nft("unpublish port", &unpublish_script(&self.table, &[*p])) {
                        Ok(_) => {}
                        Err(e) if is_file_exists(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the whole table (when the last network of the state root is gone). Idempotent.
    pub fn remove_table(&self) -> Result<(), NetError> {
        check_table(&self.table)?;
        let t = &self.table;
        run_nft(
            "remove table",
            &format!("add table inet {t}\ndelete table inet {t}\n"),
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Protocol;

    fn net(internal: bool) -> BridgeNetwork {
        BridgeNetwork {
            name: "hello_default".into(),
            bridge: "br-0123456789ab".into(),
            subnet: "10.213.7.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 213, 7, 1),
            internal,
            mtu: None,
            ip_range: None,
            subnet6: None,
            gateway6: None,
        }
    }

    /// What `nft -j list ruleset` shows after `ensure_network_script("t", n)`.
    fn listed(n: &BridgeNetwork) -> serde_json::Value {
        use serde_json::json;
        let mut v = vec![json!({"metainfo": {"json_schema_version": 1}})];
        v.push(json!({"table": {"family": "inet", "name": "t"}}));
        let b = &n.bridge;
        let net = n.subnet.trunc();
        let mut sets = vec![
            ("bridges", json!([b])),
            ("same_bridge", json!([{"concat": [b, b]}])),
            (
                "subnets",
                json!([{"prefix": {"addr": net.addr().to_string(), "len": net.prefix_len()}}]),
            ),
        ];
        if n.internal {
            sets.push(("internal", json!(b)));
        }
        for (name, elem) in sets {
            v.push(json!({"set": {"family": "inet", "table": "t", "name": name, "elem": elem}}));
        }
        for (chain, _) in CHAINS {
            v.push(json!({"chain": {"family": "inet", "table": "t", "name": chain}}));
        }
        v.push(json!({"chain": {"family": "inet", "table": "t", "name": version_chain()}}));
        for (chain, _) in RULES {
            v.push(json!({"rule": {"family": "inet", "table": "t", "chain": chain}}));
        }
        json!({ "nftables": v })
    }

    #[test]
    fn a_network_in_place_is_recognised_and_anything_missing_is_not() {
        for internal in [false, true] {
            let n = net(internal);
            assert!(network_in_place(&listed(&n), "t", &n));
            assert!(!network_in_place(&listed(&n), "other", &n));
        }
        let n = net(true);
        let without = |pred: &dyn Fn(&serde_json::Value) -> bool| {
            let mut r = listed(&n);
            r["nftables"].as_array_mut().unwrap().retain(|o| !pred(o));
            network_in_place(&r, "t", &n)
        };
        assert!(!without(&|o| o["chain"]["name"] == version_chain()));
        assert!(!without(&|o| o["chain"]["name"] == "forward"));
        assert!(!without(&|o| o["set"]["name"] == "internal"));
        assert!(!without(&|o| o["set"]["name"] == "subnets"));
        // One rule of a chain gone (a flushed chain, an older berth's rules).
        let mut r = listed(&n);
        let items = r["nftables"].as_array_mut().unwrap();
        let i = items
            .iter()
            .position(|o| o["rule"]["chain"] == "forward")
            .unwrap();
        items.remove(i);
        assert!(!network_in_place(&r, "t", &n));
        // Another network's elements are not ours.
        let mut other = net(false);
        other.bridge = "br-ffffffffffff".into();
        assert!(!network_in_place(&listed(&n), "t", &other));
        other = net(false);
        other.subnet = "10.213.8.0/24".parse().unwrap();
        assert!(!network_in_place(&listed(&n), "t", &other));
    }

    #[test]
    fn table_names_are_checked() {
        assert!(check_table("berth").is_ok());
        assert!(check_table("berth_t1a2b").is_ok());
        for bad in ["", "1berth", "berth;flush ruleset", "a b", "berth-x"] {
            assert!(check_table(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base_script_is_idempotent_by_construction() {
        let s = base_script("berth");
        assert!(s.starts_with("add table inet berth\n"));
        // Every chain is flushed before its rules are added, in the same transaction.
        for (chain, _) in CHAINS {
            let flush = s
                .find(&format!("flush chain inet berth {chain}\n"))
                .unwrap();
            let first_rule = s.find(&format!("add rule inet berth {chain} ")).unwrap();
            assert!(flush < first_rule, "{chain}");
        }
        assert!(!s.contains("flush ruleset"));
        assert!(!s.contains("insert"));
        assert!(s.contains(
            "add chain inet berth output { type nat hook output priority -100; policy accept; }"
        ));
    }

    #[test]
    fn loopback_drop_is_scoped_to_our_bridges() {
        let s = base_script("berth");
        let drops: Vec<_> = s
            .lines()
            .filter(|l| l.contains("127.0.0.0/8 drop"))
            .collect();
        assert_eq!(
            drops,
            ["add rule inet berth raw_prerouting iifname @bridges ip daddr 127.0.0.0/8 drop"]
        );
        // Every drop in the table names one of our sets.
        for l in s.lines().filter(|l| l.ends_with(" drop")) {
            assert!(l.contains("@bridges") || l.contains("@internal"), "{l}");
        }
    }

    #[test]
    fn network_elements() {
        let s = ensure_network_script("berth", &net(false));
        assert!(s.contains("add element inet berth bridges { \"br-0123456789ab\" }\n"));
        assert!(s.contains(
            "add element inet berth same_bridge { \"br-0123456789ab\" . \"br-0123456789ab\" }\n"
        ));
        assert!(s.contains("add element inet berth subnets { 10.213.7.0/24 }\n"));
        assert!(!s.contains("internal { \""));
        assert!(!s.contains("element inet berth subnets6"));
        let s = ensure_network_script("berth", &net(true));
        assert!(s.contains("add element inet berth internal { \"br-0123456789ab\" }\n"));
        let mut v6 = net(false);
        v6.subnet6 = Some("fd12:3456:789a:1::/64".parse().unwrap());
        let s = ensure_network_script("berth", &v6);
        assert!(s.contains("add element inet berth subnets6 { fd12:3456:789a:1::/64 }\n"));
    }

    #[test]
    fn remove_network_adds_then_deletes_everything() {
        let s = remove_network_script("berth", &net(false));
        let lines: Vec<_> = s.lines().collect();
        assert_eq!(lines.len(), 8);
        assert!(lines[..4].iter().all(|l| l.starts_with("add element")));
        assert!(lines[4..].iter().all(|l| l.starts_with("delete element")));
        assert!(s.contains("delete element inet berth internal { \"br-0123456789ab\" }"));
    }

    #[test]
    fn port_elements() {
        let any = PortMapping {
            host_ip: None,
            host_port: 8080,
            protocol: Protocol::Tcp,
            container_ip: Ipv4Addr::new(10, 213, 7, 2),
            container_port: 80,
        };
        let local = PortMapping {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            protocol: Protocol::Udp,
            host_port: 5353,
            container_port: 53,
            ..any
        };
        let unspecified = PortMapping {
            host_ip: Some(Ipv4Addr::UNSPECIFIED),
            ..any
        };
        assert_eq!(
            publish_script("berth", &[any, local, unspecified]),
            "add element inet berth pf_any { tcp . 8080 : 10.213.7.2 . 80 }\n\
             add element inet berth pf_ip { 127.0.0.1 . udp . 5353 : 10.213.7.2 . 53 }\n\
             add element inet berth pf_any { tcp . 8080 : 10.213.7.2 . 80 }\n"
        );
        assert_eq!(
            unpublish_script("berth", &[local]),
            "add element inet berth pf_ip { 127.0.0.1 . udp . 5353 : 10.213.7.2 . 53 }\n\
             delete element inet berth pf_ip { 127.0.0.1 . udp . 5353 }\n"
        );
    }

    fn ruleset(extra: &str) -> serde_json::Value {
        let doc = format!(
            r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6"}}}},
            {{"table": {{"family": "ip", "name": "filter", "handle": 1}}}},
            {{"chain": {{"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}}},
            {{"chain": {{"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 2}}}},
            {{"chain": {{"family": "inet", "table": "fw", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": 10, "policy": "drop"}}}},
            {{"chain": {{"family": "inet", "table": "fw", "name": "in", "handle": 2, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}}},
            {{"chain": {{"family": "inet", "table": "open", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}}},
            {{"chain": {{"family": "inet", "table": "berth_x", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}}}
            {extra}]}}"#
        );
        serde_json::from_str(&doc).unwrap()
    }

    fn chain(family: &str, table: &str, chain: &str) -> ForeignChain {
        ForeignChain {
            family: family.into(),
            table: table.into(),
            chain: chain.into(),
        }
    }

    #[test]
    fn drop_chains_are_found_in_every_family_but_ours() {
        assert_eq!(
            forward_drop_chains(&ruleset("")),
            [
                chain("inet", "fw", "fwd"),
                chain("ip", "filter", "DOCKER-USER")
            ]
        );
        let none: serde_json::Value = serde_json::from_str(r#"{"nftables": []}"#).unwrap();
        assert!(forward_drop_chains(&none).is_empty());
        assert!(coexistence_commands(&none, "br-x").is_empty());
    }

    #[test]
    fn accepts_are_inserted_once_per_chain() {
        let cmds = coexistence_commands(&ruleset(""), "br-0123456789ab");
        assert_eq!(cmds.len(), 4);
        let first = &cmds[0]["insert"]["rule"];
        assert_eq!(first["table"], "fw");
        assert_eq!(first["chain"], "fwd");
        assert_eq!(first["comment"], "berth:br-0123456789ab");
        assert_eq!(first["expr"][0]["match"]["right"], "br-0123456789ab");
        assert_eq!(first["expr"][0]["match"]["left"]["meta"]["key"], "oifname");
        assert_eq!(
            cmds[1]["insert"]["rule"]["expr"][0]["match"]["left"]["meta"]["key"],
            "iifname"
        );
        assert_eq!(cmds[3]["insert"]["rule"]["chain"], "DOCKER-USER");

        // Both rules there: nothing to do. One of two (someone deleted one): a fresh pair.
        let rule = |chain: &str, h: u64, br: &str| {
            format!(
                r#",{{"rule": {{"family": "inet", "table": "fw", "chain": "{chain}", "handle": {h}, "comment": "berth:{br}", "expr": []}}}}"#
            )
        };
        let both = rule("fwd", 7, "br-a") + &rule("fwd", 8, "br-a");
        let both_docker = both.replace(
            "\"inet\", \"table\": \"fw\", \"chain\": \"fwd\"",
            "\"ip\", \"table\": \"filter\", \"chain\": \"DOCKER-USER\"",
        );
        assert!(coexistence_commands(&ruleset(&(both.clone() + &both_docker)), "br-a").is_empty());
        let cmds = coexistence_commands(&ruleset(&(rule("fwd", 7, "br-a") + &both_docker)), "br-a");
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0]["delete"]["rule"]["handle"], 7);
        // Another bridge's rules do not count.
        assert_eq!(
            foreign_rules(&ruleset(&both), "br-b"),
            Vec::<(ForeignChain, u64)>::new()
        );
        assert_eq!(
            foreign_rules(&ruleset(&both), "br-a"),
            [
                (chain("inet", "fw", "fwd"), 7),
                (chain("inet", "fw", "fwd"), 8)
            ]
        );
    }

    #[test]
    fn legacy_rules() {
        assert!(legacy::drops(
            "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n"
        ));
        assert!(!legacy::drops("-P FORWARD ACCEPT\n"));
        let [out, inn] = legacy::rule_args("br-a");
        assert_eq!(
            inn.join(" "),
            "-i br-a -m comment --comment berth:br-a -j ACCEPT"
        );
        assert!(out.join(" ").starts_with("-o br-a "));
    }
}
