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
    s
}

fn network_elements(table: &str, n: &BridgeNetwork, verb: &str) -> String {
    let (t, b) = (format!("inet {table}"), &n.bridge);
    let mut s = String::new();
    let _ = writeln!(s, "{verb} element {t} bridges {{ \"{b}\" }}");
    let _ = writeln!(s, "{verb} element {t} same_bridge {{ \"{b}\" . \"{b}\" }}");
    let _ = writeln!(s, "{verb} element {t} subnets {{ {} }}", n.subnet.trunc());
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

/// Where berth must add accepts so that an iptables `FORWARD` drop policy (Docker) does not drop
/// our bridges' traffic (`research/networking.md` §6.2). `forward` is `nft list chain ip filter
/// FORWARD`'s output (None: no such chain); `has_docker_user` whether `DOCKER-USER` exists.
pub fn coexistence_chain(forward: Option<&str>, has_docker_user: bool) -> Option<&'static str> {
    let drops = forward?
        .lines()
        .any(|l| l.contains("hook forward") && l.contains("policy drop"));
    match (drops, has_docker_user) {
        (false, _) => None,
        (true, true) => Some("DOCKER-USER"),
        (true, false) => Some("FORWARD"),
    }
}

fn berth_comment(bridge: &str) -> String {
    format!("comment \"berth:{bridge}\"")
}

/// Accepts for our bridge, inserted at the top of `ip filter <chain>`. Our own table still does
/// the isolation; these only keep the iptables policy from overriding it.
pub fn coexistence_script(chain: &str, bridge: &str) -> String {
    let c = berth_comment(bridge);
    format!(
        "insert rule ip filter {chain} oifname \"{bridge}\" counter accept {c}\n\
         insert rule ip filter {chain} iifname \"{bridge}\" counter accept {c}\n"
    )
}

/// Handles of our rules for `bridge` in an `nft -a list chain` listing.
pub fn berth_rule_handles(listing: &str, bridge: &str) -> Vec<u64> {
    let c = berth_comment(bridge);
    listing
        .lines()
        .filter(|l| l.contains(&c))
        .filter_map(|l| l.rsplit_once("# handle ")?.1.trim().parse().ok())
        .collect()
}

/// Deletes rules by handle from `ip filter <chain>`.
pub fn delete_handles_script(chain: &str, handles: &[u64]) -> String {
    handles
        .iter()
        .map(|h| format!("delete rule ip filter {chain} handle {h}\n"))
        .collect()
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
        run_nft(
            &format!("add network {}", n.name),
            &ensure_network_script(&self.table, n),
        )?;
        let forward = nft_list(&["chain", "ip", "filter", "FORWARD"]);
        let docker_user = nft_list(&["-a", "chain", "ip", "filter", "DOCKER-USER"]);
        if let Some(chain) = coexistence_chain(forward.as_deref(), docker_user.is_some()) {
            let listing = if chain == "DOCKER-USER" {
                docker_user
            } else {
                nft_list(&["-a", "chain", "ip", "filter", chain])
            };
            if berth_rule_handles(listing.as_deref().unwrap_or(""), &n.bridge).len() < 2 {
                run_nft(
                    &format!("accept {} in ip filter {chain}", n.bridge),
                    &coexistence_script(chain, &n.bridge),
                )?;
            }
        }
        Ok(())
    }

    /// Coexistence accepts first, then the network's elements. Caller holds the lock.
    pub(crate) fn remove_network_firewall(&self, n: &BridgeNetwork) -> Result<(), NetError> {
        check_table(&self.table)?;
        for chain in ["DOCKER-USER", "FORWARD"] {
            if let Some(listing) = nft_list(&["-a", "chain", "ip", "filter", chain]) {
                let handles = berth_rule_handles(&listing, &n.bridge);
                if !handles.is_empty() {
                    run_nft(
                        &format!("remove accepts of {} from ip filter {chain}", n.bridge),
                        &delete_handles_script(chain, &handles),
                    )?;
                }
            }
        }
        if !self.table_exists() {
            return Ok(());
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
        run_nft("publish ports", &publish_script(&self.table, ports)).map(drop)
    }

    /// Unpublishes ports. Missing elements and a missing table are fine; an element whose host
    /// port has meanwhile been published for another container is left alone.
    pub fn unpublish(&self, ports: &[PortMapping]) -> Result<(), NetError> {
        check_table(&self.table)?;
        if ports.is_empty() || !self.table_exists() {
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
        }
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
        let s = ensure_network_script("berth", &net(true));
        assert!(s.contains("add element inet berth internal { \"br-0123456789ab\" }\n"));
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

    const FORWARD_DROP: &str = "table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tcounter packets 0 bytes 0 jump DOCKER-USER\n\t}\n}\n";

    #[test]
    fn coexistence_only_with_a_drop_policy() {
        assert_eq!(coexistence_chain(None, true), None);
        let accept = FORWARD_DROP.replace("policy drop", "policy accept");
        assert_eq!(coexistence_chain(Some(&accept), true), None);
        assert_eq!(
            coexistence_chain(Some(FORWARD_DROP), true),
            Some("DOCKER-USER")
        );
        assert_eq!(
            coexistence_chain(Some(FORWARD_DROP), false),
            Some("FORWARD")
        );
    }

    #[test]
    fn coexistence_rules_are_found_again_by_comment() {
        let s = coexistence_script("DOCKER-USER", "br-0123456789ab");
        assert_eq!(
            s,
            "insert rule ip filter DOCKER-USER oifname \"br-0123456789ab\" counter accept comment \"berth:br-0123456789ab\"\n\
             insert rule ip filter DOCKER-USER iifname \"br-0123456789ab\" counter accept comment \"berth:br-0123456789ab\"\n"
        );
        let listing = "table ip filter {\n\tchain DOCKER-USER {\n\
            \t\tiifname \"br-0123456789ab\" counter packets 3 bytes 180 accept comment \"berth:br-0123456789ab\" # handle 17\n\
            \t\toifname \"br-0123456789ab\" counter packets 0 bytes 0 accept comment \"berth:br-0123456789ab\" # handle 16\n\
            \t\tiifname \"br-0123456789abc\" counter packets 0 bytes 0 accept comment \"berth:br-0123456789abc\" # handle 15\n\
            \t\tcounter packets 9 bytes 900 return # handle 3\n\t}\n}\n";
        let handles = berth_rule_handles(listing, "br-0123456789ab");
        assert_eq!(handles, [17, 16]);
        assert_eq!(
            delete_handles_script("DOCKER-USER", &handles),
            "delete rule ip filter DOCKER-USER handle 17\ndelete rule ip filter DOCKER-USER handle 16\n"
        );
    }
}
