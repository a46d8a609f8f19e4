//! Docker's security defaults, checked from inside real containers (root only): capabilities,
//! seccomp, no_new_privs, masked and read-only paths, devices, namespaces, and the options
//! that change them (`cap_add`, `cap_drop`, `privileged`, `security_opt`).
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use util::{Env, field, output_of};

/// A compose file with one busybox service `c` running the shell `script`, plus extra keys.
pub fn compose(script: &str, extra: &str) -> String {
    let body: String = script
        .trim()
        .lines()
        .map(|l| format!("        {}\n", l.replace('$', "$$")))
        .collect();
    format!(
        "services:\n  c:\n    image: busybox\n    command:\n      - sh\n      - -c\n      - |\n{body}{extra}"
    )
}

#[test]
fn default_container_is_confined_like_docker() {
    require_root!();
    let env = Env::new("secdefaults");
    env.write(
        "compose.yaml",
        &compose(
            r#"
grep -E "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|Seccomp|NoNewPrivs):" /proc/self/status
echo forked=$(echo yes)
unshare -m true 2>/dev/null && echo unshare=allowed || echo unshare=denied
mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>/dev/null && echo mount=allowed || echo mount=denied
cat /proc/kcore >/dev/null 2>&1 && echo kcore=readable || echo kcore=masked
echo kcoresize=$(stat -c %s /proc/kcore 2>/dev/null)
echo keys=$(cat /proc/keys 2>/dev/null | wc -c)
echo timer_list=$(cat /proc/timer_list 2>/dev/null | wc -c)
echo interrupts=$(cat /proc/interrupts 2>/dev/null | wc -c)
echo firmware=$(ls /sys/firmware 2>/dev/null | wc -l)
echo 1 > /proc/sys/kernel/panic_on_oops 2>/dev/null && echo procsys=written || echo procsys=readonly
echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq=written || echo sysrq=readonly
touch /sys/kernel/x 2>/dev/null && echo sys=writable || echo sys=readonly
echo pids=$(ls -d /proc/[0-9]* | wc -l)
echo pid1=$(cat /proc/1/comm)
echo dev=$(ls /dev | tr "\n" " ")
head -c1 /dev/zero >/dev/null && echo zero=ok
mknod /tmp/sda b 8 0 && (head -c1 /tmp/sda >/dev/null 2>&1 && echo sda=readable || echo sda=denied)
echo shm=$(df -k /dev/shm | tail -1 | awk "{print \$2}")
echo unpriv_port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)
"#,
            "",
        ),
    );
    let out = output_of(&env, "c");
    println!("{out}");
    // security.md §1.2: CapBnd = CapEff = 00000000a80425fb, CapInh = 0.
    assert_eq!(field(&out, "CapEff:"), "00000000a80425fb");
    assert_eq!(field(&out, "CapBnd:"), "00000000a80425fb");
    assert_eq!(field(&out, "CapPrm:"), "00000000a80425fb");
    assert_eq!(field(&out, "CapInh:"), "0000000000000000");
    assert_eq!(field(&out, "CapAmb:"), "0000000000000000");
    assert_eq!(field(&out, "Seccomp:"), "2");
    assert_eq!(field(&out, "NoNewPrivs:"), "0");
    // The profile lets processes fork (clone without namespace flags).
    assert_eq!(field(&out, "forked="), "yes");
    assert_eq!(field(&out, "unshare="), "denied");
    assert_eq!(field(&out, "mount="), "denied");
    // Masked paths: /dev/null over files, an empty read-only tmpfs over directories.
    assert_eq!(field(&out, "kcore="), "masked");
    assert_eq!(field(&out, "keys="), "0");
    assert_eq!(field(&out, "timer_list="), "0");
    assert_eq!(field(&out, "interrupts="), "0");
    assert_eq!(field(&out, "firmware="), "0");
    // Nothing reaches the host through /proc or /sys.
    assert_eq!(field(&out, "procsys="), "readonly");
    assert_eq!(field(&out, "sysrq="), "readonly");
    assert_eq!(field(&out, "sys="), "readonly");
    // A private pid namespace: only the shell and the pipeline counting (sh, subshell, ls, wc).
    assert_eq!(field(&out, "pid1="), "sh");
    let pids: usize = field(&out, "pids=").parse().unwrap();
    assert!(pids <= 5, "host processes visible: {pids}");
    // Docker's /dev (security.md §1.5).
    let dev: Vec<&str> = field(&out, "dev=").split_whitespace().collect();
    for d in [
        "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero",
    ] {
        assert!(dev.contains(&d), "/dev/{d} missing: {dev:?}");
    }
    assert!(!dev.contains(&"sda") && !dev.contains(&"kmsg"), "{dev:?}");
    assert_eq!(field(&out, "zero="), "ok");
    // CAP_MKNOD makes the node, the device cgroup refuses to open it.
    assert_eq!(field(&out, "sda="), "denied");
    assert_eq!(field(&out, "shm="), "65536");
    assert_eq!(field(&out, "unpriv_port="), "0");
}

#[test]
fn cap_add_cap_drop_and_security_opt() {
    require_root!();
    let env = Env::new("secopts");
    env.write(
        "compose.yaml",
        &compose(
            r#"
grep -E "^(CapEff|Seccomp|NoNewPrivs):" /proc/self/status
unshare -m true 2>/dev/null && echo unshare=allowed || echo unshare=denied
"#,
            "    cap_add: [SYS_ADMIN]\n    cap_drop: [NET_RAW, CHOWN]\n    security_opt: [\"no-new-privileges:true\"]\n",
        ),
    );
    let out = output_of(&env, "c");
    // a80425fb + SYS_ADMIN (bit 21) - NET_RAW (13) - CHOWN (0).
    let want = 0xa804_25fbu64 | (1 << 21);
    let want = want & !(1 << 13) & !1;
    assert_eq!(field(&out, "CapEff:"), format!("{want:016x}"));
    assert_eq!(field(&out, "NoNewPrivs:"), "1");
    assert_eq!(field(&out, "Seccomp:"), "2");
    // The profile follows the capabilities: with CAP_SYS_ADMIN, unshare is allowed.
    assert_eq!(field(&out, "unshare="), "allowed");
}

#[test]
fn seccomp_unconfined_and_profile_file() {
    require_root!();
    let env = Env::new("secfile");
    // A profile that only refuses mkdir, with ENOTDIR so the refusal is recognisable.
    env.write(
        "deny-mkdir.json",
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 20}]}"#,
    );
    env.write(
        "compose.yaml",
        "services:\n  free:\n    image: busybox\n    command: [\"grep\", \"Seccomp:\", \"/proc/self/status\"]\n    security_opt: [\"seccomp=unconfined\"]\n  custom:\n    image: busybox\n    command: [\"sh\", \"-c\", \"grep Seccomp: /proc/self/status; mkdir /x 2>&1 | grep -q 'Not a directory' && echo mkdir=refused\"]\n    security_opt: [\"seccomp=deny-mkdir.json\"]\n",
    );
    assert_eq!(field(&output_of(&env, "free"), "Seccomp:"), "0");
    let custom = output_of(&env, "custom");
    assert_eq!(field(&custom, "Seccomp:"), "2");
    assert_eq!(field(&custom, "mkdir="), "refused");
}

#[test]
fn privileged_lifts_the_defaults() {
    require_root!();
    let env = Env::new("secpriv");
    env.write(
        "compose.yaml",
        &compose(
            r#"
grep -E "^(CapEff|Seccomp):" /proc/self/status
echo interrupts=$(cat /proc/interrupts | wc -c)
mkdir -p /tmp/m; mount -t tmpfs none /tmp/m && echo mount=allowed
ls /dev/null /dev/kmsg >/dev/null && echo devices=host
"#,
            "    privileged: true\n",
        ),
    );
    let out = output_of(&env, "c");
    // Every capability berth itself holds (this host may withhold some from root).
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(field(&out, "CapEff:"), field(&own, "CapBnd:"));
    assert_eq!(field(&out, "Seccomp:"), "0");
    assert_ne!(field(&out, "interrupts="), "0");
    assert_eq!(field(&out, "mount="), "allowed");
    assert_eq!(field(&out, "devices="), "host");
}
