//! The policy of a legacy iptables `FORWARD` chain, read from the kernel (`sys::xtables`)
//! instead of from `iptables-legacy -S FORWARD`, which took 1–2 ms of every `up` and `run`
//! on a host with the legacy filter table loaded (a Docker host of old). Anything unexpected
//! returns `None` and the caller runs the tool.
use crate::sys::xtables::{TableInfo, read_table};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// `NF_INET_FORWARD`.
const FORWARD: usize = 2;
/// `sizeof(struct xt_entry_target)`: the standard target's verdict follows it.
const TARGET_HEADER: usize = 32;
/// A standard target's verdict for `DROP` (`-NF_DROP - 1`) and `ACCEPT` (`-NF_ACCEPT - 1`).
const VERDICT_DROP: i32 = -1;
const VERDICT_ACCEPT: i32 = -2;

/// Whether the filter table's `FORWARD` policy is `DROP`; `None` when that cannot be read.
pub fn forward_policy_drops(family: Family) -> Option<bool> {
    let (info, entries) = read_table(family == Family::V6, "filter").ok()?;
    policy_drops(family, &info, &entries)
}

/// Where `target_offset` lies in an `ipt_entry` (after the 84-byte `ipt_ip` and `nfcache`)
/// or an `ip6t_entry` (after the 136-byte `ip6t_ip6` and `nfcache`).
fn target_offset_at(family: Family) -> usize {
    match family {
        Family::V4 => 88,
        Family::V6 => 140,
    }
}

fn policy_drops(family: Family, info: &TableInfo, entries: &[u8]) -> Option<bool> {
    if info.valid_hooks & (1 << FORWARD) == 0 {
        return None;
    }
    let entry = info.underflow[FORWARD] as usize;
    let at = entry + target_offset_at(family);
    let target = entry + u16::from_ne_bytes(entries.get(at..at + 2)?.try_into().ok()?) as usize;
    // The standard target's name is empty.
    if entries
        .get(target + 2..target + TARGET_HEADER - 1)?
        .iter()
        .any(|b| *b != 0)
    {
        return None;
    }
    let v = target + TARGET_HEADER;
    match i32::from_ne_bytes(entries.get(v..v + 4)?.try_into().ok()?) {
        VERDICT_DROP => Some(true),
        VERDICT_ACCEPT => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table whose FORWARD policy entry sits at `at` with `verdict`.
    fn table(family: Family, at: usize, verdict: i32, name: &[u8]) -> (TableInfo, Vec<u8>) {
        let target_offset: u16 = 200;
        let mut b = vec![0u8; at + target_offset as usize + TARGET_HEADER + 8];
        let off = at + target_offset_at(family);
        b[off..off + 2].copy_from_slice(&target_offset.to_ne_bytes());
        let t = at + target_offset as usize;
        b[t + 2..t + 2 + name.len()].copy_from_slice(name);
        b[t + TARGET_HEADER..t + TARGET_HEADER + 4].copy_from_slice(&verdict.to_ne_bytes());
        let mut underflow = [0; 5];
        underflow[FORWARD] = at as u32;
        let info = TableInfo {
            valid_hooks: 0b1110,
            hook_entry: [0; 5],
            underflow,
            size: b.len() as u32,
        };
        (info, b)
    }

    #[test]
    fn reads_the_verdict_of_the_forward_policy_entry() {
        for family in [Family::V4, Family::V6] {
            let (i, b) = table(family, 456, VERDICT_DROP, b"");
            assert_eq!(policy_drops(family, &i, &b), Some(true));
            let (i, b) = table(family, 0, VERDICT_ACCEPT, b"");
            assert_eq!(policy_drops(family, &i, &b), Some(false));
            // Anything else: the tool decides.
            let (i, b) = table(family, 8, 7, b"");
            assert_eq!(policy_drops(family, &i, &b), None);
            let (i, b) = table(family, 8, VERDICT_DROP, b"ERROR");
            assert_eq!(policy_drops(family, &i, &b), None);
            let (mut i, b) = table(family, 8, VERDICT_DROP, b"");
            i.underflow[FORWARD] = 1 << 20;
            assert_eq!(policy_drops(family, &i, &b), None);
            i.valid_hooks = 0;
            assert_eq!(policy_drops(family, &i, &b), None);
        }
    }

    #[test]
    #[allow(clippy::print_stderr)]
    fn agrees_with_iptables_legacy_on_this_host() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to read iptables");
            return;
        }
        for (family, tool, names) in [
            (Family::V4, "iptables-legacy", "/proc/net/ip_tables_names"),
            (Family::V6, "ip6tables-legacy", "/proc/net/ip6_tables_names"),
        ] {
            let loaded = std::fs::read_to_string(names)
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "filter"));
            let Ok(out) = std::process::Command::new(tool)
                .args(["-w", "-S", "FORWARD"])
                .output()
            else {
                eprintln!("skipped {tool}: not installed");
                continue;
            };
            if !loaded {
                eprintln!("skipped {tool}: no legacy filter table loaded");
                continue;
            }
            let listing = String::from_utf8_lossy(&out.stdout);
            let drops = listing.lines().any(|l| l.trim() == "-P FORWARD DROP");
            assert_eq!(forward_policy_drops(family), Some(drops), "{listing}");
        }
    }

    #[test]
    #[allow(clippy::print_stderr)]
    fn sees_a_drop_policy_set_in_a_network_namespace_of_its_own() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root for a network namespace");
            return;
        }
        // A thread's own network namespace: the host's tables are never touched.
        let seen = std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            let set = |policy: &str| {
                std::process::Command::new("iptables-legacy")
                    .args(["-w", "-P", "FORWARD", policy])
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !set("DROP") {
                return None;
            }
            let dropping = forward_policy_drops(Family::V4);
            set("ACCEPT");
            Some((dropping, forward_policy_drops(Family::V4)))
        })
        .join()
        .unwrap();
        match seen {
            Some(seen) => assert_eq!(seen, (Some(true), Some(false))),
            None => eprintln!("skipped: iptables-legacy not usable here"),
        }
    }
}
