//! Container configuration keys, checked from inside real containers (root only): read-only
//! root, tmpfs, shm_size, sysctls, ulimits, user and groups, hostname, oom_score_adj, host
//! namespaces, devices and cgroup v1 limits.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use util::{Env, field, output_of};

/// One busybox service `c` running the shell `script`, plus extra keys (indented 4).
fn compose(script: &str, extra: &str) -> String {
    let body: String = script
        .trim()
        .lines()
        .map(|l| format!("        {}\n", l.replace('$', "$$")))
        .collect();
    format!(
        "services:\n  c:\n    image: busybox\n    command:\n      - sh\n      - -c\n      - |\n{body}{extra}"
    )
}

fn v1_memory_cgroup() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

#[test]
fn filesystem_keys() {
    require_root!();
    let env = Env::new("cfgfs");
    env.write(
        "compose.yaml",
        &compose(
            r#"
touch /x 2>/dev/null && echo root=writable || echo root=readonly
touch /run/x && echo run=writable
echo runmode=$(stat -c %a /run)
echo runsize=$(df -k /run | tail -1 | awk '{print $2}')
echo cachesize=$(df -k /cache | tail -1 | awk '{print $2}')
grep " /tmp " /proc/mounts | grep -q noexec && echo tmp=noexec
echo shm=$(df -k /dev/shm | tail -1 | awk '{print $2}')
echo hostsfile=$(touch /etc/hosts 2>/dev/null && echo writable || echo readonly)
"#,
            "    read_only: true\n    tmpfs: [\"/run:size=1m,mode=1777\", /tmp]\n    shm_size: 128m\n    volumes:\n      - type: tmpfs\n        target: /cache\n        tmpfs: {size: 2m}\n",
        ),
    );
    let out = output_of(&env, "c");
    println!("{out}");
    assert_eq!(field(&out, "root="), "readonly");
    assert_eq!(field(&out, "run="), "writable");
    assert_eq!(field(&out, "runmode="), "1777");
    assert_eq!(field(&out, "runsize="), "1024");
    assert_eq!(field(&out, "cachesize="), "2048");
    assert_eq!(field(&out, "tmp="), "noexec");
    assert_eq!(field(&out, "shm="), "131072");
    assert_eq!(field(&out, "hostsfile="), "readonly");
}

#[test]
fn process_keys() {
    require_root!();
    let env = Env::new("cfgproc");
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
    env.write(
        "compose.yaml",
        &compose(
            r#"
echo id=$(id)
echo cwd=$(pwd)
echo hostname=$(hostname)
echo domain=$(cat /proc/sys/kernel/domainname)
echo nofile=$(ulimit -n) $(ulimit -Hn)
echo oom=$(cat /proc/self/oom_score_adj)
echo somaxconn=$(cat /proc/sys/net/core/somaxconn)
echo kmsg=$(stat -c "%t:%T" /dev/mykmsg)
"#,
            "    user: \"www-data\"\n    group_add: [staff, \"7\"]\n    working_dir: /etc\n    hostname: box\n    domainname: example.test\n    ulimits: {nofile: {soft: 100, hard: 200}}\n    oom_score_adj: 500\n    sysctls: {net.core.somaxconn: \"77\"}\n    devices: [\"/dev/kmsg:/dev/mykmsg:r\"]\n    stop_signal: SIGUSR1\n    stop_grace_period: 3s\n    init: true\n    labels: {com.example.team: sec}\n",
        ),
    );
    let out = output_of(&env, "c");
    println!("{out}");
    assert_eq!(
        field(&out, "id="),
        "uid=33(www-data) gid=33(www-data) groups=7,33(www-data),50(staff)"
    );
    assert_eq!(field(&out, "cwd="), "/etc");
    assert_eq!(field(&out, "hostname="), "box");
    assert_eq!(field(&out, "domain="), "example.test");
    assert_eq!(field(&out, "nofile="), "100 200");
    assert_eq!(field(&out, "oom="), "500");
    assert_eq!(field(&out, "somaxconn="), "77");
    // /dev/kmsg is 1:11 (hex in stat's %t:%T).
    assert_eq!(field(&out, "kmsg="), "1:b");
    // The host's values are untouched.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap(),
        host_somaxconn
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward
    );
    // What the stop code and `init` need is on the record.
    let rec = record(&env);
    assert_eq!(rec["host"]["stop_signal"], "SIGUSR1");
    assert_eq!(rec["host"]["stop_grace_period_ms"], 3000);
    assert_eq!(rec["host"]["init"], true);
    assert_eq!(rec["labels"]["com.example.team"], "sec");
}

fn record(env: &Env) -> serde_json::Value {
    let dir = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    serde_json::from_str(&std::fs::read_to_string(dir.join("container.json")).unwrap()).unwrap()
}

#[test]
fn host_namespaces() {
    require_root!();
    let env = Env::new("cfgns");
    env.write(
        "compose.yaml",
        &compose(
            r#"
echo pidns=$(readlink /proc/self/ns/pid)
echo ipcns=$(readlink /proc/self/ns/ipc)
echo utsns=$(readlink /proc/self/ns/uts)
"#,
            "    pid: host\n    ipc: host\n",
        ),
    );
    let out = output_of(&env, "c");
    let own = |ns: &str| {
        std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .unwrap()
            .display()
            .to_string()
    };
    assert_eq!(field(&out, "pidns="), own("pid"));
    assert_eq!(field(&out, "ipcns="), own("ipc"));
    assert_ne!(field(&out, "utsns="), own("uts"), "uts stays private");
}

#[test]
fn cgroup_v1_limits_are_visible_inside() {
    require_root!();
    if !v1_memory_cgroup() {
        eprintln!("SKIPPED cgroup_v1_limits_are_visible_inside: no cgroup v1 memory controller");
        return;
    }
    let env = Env::new("cfgcg");
    env.write(
        "compose.yaml",
        &compose(
            r#"
echo memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
echo memsw=$(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo none)
echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)
echo shares=$(cat /sys/fs/cgroup/cpu/cpu.shares)
echo cpuset=$(cat /sys/fs/cgroup/cpuset/cpuset.cpus)
echo pids=$(cat /sys/fs/cgroup/pids/pids.max)
"#,
            "    mem_limit: 64m\n    cpus: 0.5\n    cpu_shares: 512\n    cpuset: \"0\"\n    deploy:\n      resources:\n        limits: {pids: 50}\n",
        ),
    );
    let out = output_of(&env, "c");
    println!("{out}");
    assert_eq!(field(&out, "memory="), (64u64 << 20).to_string());
    let memsw = field(&out, "memsw=");
    if memsw != "none" {
        assert_eq!(memsw, (128u64 << 20).to_string(), "swap defaults to 2x");
    }
    assert_eq!(field(&out, "quota="), "50000 100000");
    assert_eq!(field(&out, "shares="), "512");
    assert_eq!(field(&out, "cpuset="), "0");
    assert_eq!(field(&out, "pids="), "50");
}

#[test]
fn cgroup_v2_limits_are_visible_inside() {
    require_root!();
    let v2_only = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("cgroup2 /sys/fs/cgroup "));
    if !v2_only {
        eprintln!(
            "SKIPPED cgroup_v2_limits_are_visible_inside: this host is not cgroup v2 unified \
             (the v2 mapping is unit-tested against a fixture in src/engine/resources.rs)"
        );
        return;
    }
    let env = Env::new("cfgcg2");
    env.write(
        "compose.yaml",
        &compose(
            r#"
echo memory=$(cat /sys/fs/cgroup/memory.max)
echo cpu=$(cat /sys/fs/cgroup/cpu.max)
echo pids=$(cat /sys/fs/cgroup/pids.max)
"#,
            "    mem_limit: 64m\n    cpus: 0.5\n    pids_limit: 50\n",
        ),
    );
    let out = output_of(&env, "c");
    assert_eq!(field(&out, "memory="), (64u64 << 20).to_string());
    assert_eq!(field(&out, "cpu="), "50000 100000");
    assert_eq!(field(&out, "pids="), "50");
}
