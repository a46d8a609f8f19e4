//! The default seccomp profile, kept as reviewed data in `seccomp/default.json`, and its
//! translation into the OCI `linux.seccomp` object for one container.
//!
//! The one decision to know: like Docker, the profile is filtered by the container's
//! capabilities when the spec is built (a container with `CAP_SYS_ADMIN` may `mount`), so a
//! `cap_add` widens the filter too. Unknown syscalls fail with EPERM, as in Docker.
//!
//! Format of `default.json`: `default_errno` (errno of every syscall no rule allows) and
//! `rules`, each `{names, errno?, args?, caps?, not_caps?, arches?, not_arches?, min_kernel?}`.
//! A rule without `errno` allows its syscalls. It applies when the container holds every
//! capability in `caps` and none in `not_caps`, the host architecture (Rust's names) is in
//! `arches` and not in `not_arches`, and the running kernel is at least `min_kernel`. `args`
//! are ANDed; `masked_eq` matches `(arg & mask) == value`.
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;
use std::collections::HashSet;

pub mod bpf;

const DEFAULT_PROFILE: &str = include_str!("seccomp/default.json");

#[derive(Debug, Deserialize)]
struct Profile {
    default_errno: u32,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    names: Vec<String>,
    #[serde(default)]
    errno: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    not_caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    not_arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arg {
    index: usize,
    op: Op,
    value: u64,
    #[serde(default)]
    mask: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    MaskedEq,
}

/// What the profile is filtered against.
pub struct Target<'a> {
    /// The container's bounding set, `CAP_*` names.
    pub caps: &'a HashSet<String>,
    /// `std::env::consts::ARCH`.
    pub arch: &'a str,
    /// `(major, minor)` of the running kernel.
    pub kernel: (u32, u32),
}

impl Target<'_> {
    fn wants(&self, r: &Rule) -> bool {
        r.caps.iter().all(|c| self.caps.contains(c))
            && !r.not_caps.iter().any(|c| self.caps.contains(c))
            && (r.arches.is_empty() || r.arches.iter().any(|a| a == self.arch))
            && !r.not_arches.iter().any(|a| a == self.arch)
            && r.min_kernel
                .as_deref()
                .and_then(parse_kernel)
                .is_none_or(|min| self.kernel >= min)
    }
}

/// The default profile, filtered for `target`.
pub fn default_profile(target: &Target) -> LinuxSeccomp {
    // The profile is compiled in and checked by a unit test, so it always parses.
    let profile: Profile =
        serde_json::from_str(DEFAULT_PROFILE).expect("seccomp/default.json is valid");
    let syscalls: Vec<LinuxSyscall> = profile
        .rules
        .iter()
        .filter(|r| target.wants(r))
        .map(syscall)
        .collect();
    let mut b = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(profile.default_errno)
        .syscalls(syscalls);
    if let Some(arches) = architectures(target.arch) {
        b = b.architectures(arches);
    }
    // Every field above is set; the builder cannot fail.
    b.build().expect("complete seccomp spec")
}

fn syscall(r: &Rule) -> LinuxSyscall {
    let (action, errno) = match r.errno {
        Some(e) => (LinuxSeccompAction::ScmpActErrno, Some(e)),
        None => (LinuxSeccompAction::ScmpActAllow, None),
    };
    let args = r
        .args
        .iter()
        .map(|a| {
            let b = LinuxSeccompArgBuilder::default().index(a.index);
            let b = match a.op {
                // libcontainer 0.7 compiles MASKED_EQ as `(arg & valueTwo) == value`, the
                // reverse of runc's (and the runtime-spec's) `(arg & value) == valueTwo`.
                // Written its way; `tests/security_defaults.rs` checks that fork still works.
                Op::MaskedEq => b
                    .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                    .value(a.value)
                    .value_two(a.mask.unwrap_or(u64::MAX)),
                op => b.op(operator(op)).value(a.value),
            };
            b.build().expect("complete seccomp arg")
        })
        .collect::<Vec<_>>();
    let mut b = LinuxSyscallBuilder::default()
        .names(r.names.clone())
        .action(action);
    if let Some(e) = errno {
        b = b.errno_ret(e);
    }
    if !args.is_empty() {
        b = b.args(args);
    }
    b.build().expect("complete syscall rule")
}

fn operator(op: Op) -> LinuxSeccompOperator {
    match op {
        Op::Eq => LinuxSeccompOperator::ScmpCmpEq,
        Op::Ne => LinuxSeccompOperator::ScmpCmpNe,
        Op::Lt => LinuxSeccompOperator::ScmpCmpLt,
        Op::Le => LinuxSeccompOperator::ScmpCmpLe,
        Op::Gt => LinuxSeccompOperator::ScmpCmpGt,
        Op::Ge => LinuxSeccompOperator::ScmpCmpGe,
        Op::MaskedEq => LinuxSeccompOperator::ScmpCmpMaskedEq,
    }
}

/// The ABIs a process on this architecture can use (Docker's `archMap`).
fn architectures(arch: &str) -> Option<Vec<Arch>> {
    Some(match arch {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "x86" => vec![Arch::ScmpArchX86],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "arm" => vec![Arch::ScmpArchArm],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        _ => return None,
    })
}

fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The running kernel's `(major, minor)`, `(0, 0)` if unknown.
pub fn running_kernel() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| parse_kernel(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &LinuxSeccomp, action: LinuxSeccompAction) -> HashSet<String> {
        s.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|r| r.action() == action && r.args().is_none())
            .flat_map(|r| r.names().iter().cloned())
            .collect()
    }

    fn target(caps: &HashSet<String>) -> Target<'_> {
        Target {
            caps,
            arch: "x86_64",
            kernel: (6, 1),
        }
    }

    fn default_caps() -> HashSet<String> {
        crate::engine::spec::DEFAULT_CAPS
            .iter()
            .map(|c| crate::engine::spec::cap_name(*c))
            .collect()
    }

    #[test]
    fn the_profile_parses_and_matches_dockers_shape() {
        let p: Profile = serde_json::from_str(DEFAULT_PROFILE).unwrap();
        assert_eq!(p.default_errno, 1);
        assert_eq!(
            p.rules[0].names.len(),
            361,
            "Docker's unconditional allow list"
        );
        for forbidden in [
            "keyctl",
            "add_key",
            "userfaultfd",
            "io_uring_setup",
            "kexec_load",
        ] {
            assert!(
                p.rules
                    .iter()
                    .all(|r| !r.names.iter().any(|n| n == forbidden)),
                "{forbidden} must never be allowed"
            );
        }
    }

    #[test]
    fn default_caps_get_no_admin_syscalls() {
        let caps = default_caps();
        let s = default_profile(&target(&caps));
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        let allowed = names(&s, LinuxSeccompAction::ScmpActAllow);
        for n in [
            "read",
            "execve",
            "capset",
            "setresuid",
            "chroot",
            "ptrace",
            "arch_prctl",
        ] {
            assert!(allowed.contains(n), "{n} should be allowed");
        }
        for n in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "reboot",
            "init_module",
            "syslog",
        ] {
            assert!(!allowed.contains(n), "{n} should be denied");
        }
        // clone3 says ENOSYS, so libcs fall back to clone.
        let clone3 = s
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.names().iter().any(|n| n == "clone3"))
            .unwrap();
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3.errno_ret(), Some(38));
        // clone without namespace flags, written the way libcontainer 0.7 compiles it.
        let clone = s
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.names() == &["clone".to_string()])
            .unwrap();
        let arg = &clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!((arg.value(), arg.value_two()), (0, Some(0x7E02_0000)));
    }

    #[test]
    fn cap_add_widens_the_filter() {
        let mut caps = default_caps();
        caps.insert("CAP_SYS_ADMIN".into());
        caps.insert("CAP_SYS_TIME".into());
        let s = default_profile(&target(&caps));
        let allowed = names(&s, LinuxSeccompAction::ScmpActAllow);
        for n in ["mount", "unshare", "clone3", "settimeofday"] {
            assert!(allowed.contains(n), "{n} should be allowed with the cap");
        }
        assert!(
            s.syscalls()
                .as_ref()
                .unwrap()
                .iter()
                .all(|r| r.errno_ret() != Some(38)),
            "no ENOSYS clone3 rule with CAP_SYS_ADMIN"
        );
    }

    #[test]
    fn arch_and_kernel_conditions() {
        let caps = default_caps();
        let old = Target {
            caps: &caps,
            arch: "aarch64",
            kernel: (4, 4),
        };
        let allowed = names(&default_profile(&old), LinuxSeccompAction::ScmpActAllow);
        assert!(!allowed.contains("arch_prctl"));
        assert!(allowed.contains("arm_fadvise64_64"));
        assert!(!allowed.contains("ptrace"), "ptrace needs kernel 4.8");
        assert_eq!(parse_kernel("6.18.44-fc-v669"), Some((6, 18)));
    }
}
