//! berth's own launcher (`engine::launch`) against libcontainer, end to end (root only): a
//! container looks the same from inside whichever started it, and the launcher keeps
//! Docker's read-only cgroup filesystem.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use util::Env;

/// What a process sees of its container: identity, capabilities, seccomp, limits, devices,
/// the mount table (points and options), what is masked, and its environment.
const PROBE: &str = r#"
grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/self/status
echo umask=$(umask) id=$(id) pwd=$(pwd) hostname=$(hostname | sed 's/^[0-9a-f]\{12\}$/ID/') domain=$(cat /proc/sys/kernel/domainname)
echo nofile=$(ulimit -n) oom=$(cat /proc/self/oom_score_adj) ip_unpriv=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)
ls -ln /dev | awk '{print $1, $3, $4, $5, $6, $NF}' | sort
sort /sys/fs/cgroup/devices/devices.list
cd /sys/fs/cgroup && for f in memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes memory/memory.soft_limit_in_bytes cpu/cpu.shares cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpuset/cpuset.cpus pids/pids.max; do echo "$f=$(cat $f 2>/dev/null)"; done; cd /
awk '$5 !~ /^\/sys\/fs\/cgroup/ {print $5, $6}' /proc/self/mountinfo | sort
ls /sys/fs/cgroup
for p in /proc/kcore /proc/keys /proc/timer_list /sys/firmware /proc/acpi; do
  if [ -d $p ]; then c=$(ls -A $p 2>/dev/null); else c=$(head -c1 $p 2>/dev/null); fi
  [ -n "$c" ] && echo "$p readable" || echo "$p hidden"
done
touch /proc/sys/kernel/x 2>/dev/null && echo proc-sys-writable || echo proc-sys-ro
env | grep -v '^HOSTNAME=' | sort
"#;

fn compose() -> String {
    format!(
        r#"services:
  plain:
    image: busybox
    command: [sh, -c, {probe:?}]
  tuned:
    image: busybox
    hostname: tuned-host
    domainname: example.test
    user: "1000:1000"
    group_add: ["10"]
    cap_drop: [CHOWN]
    cap_add: [NET_ADMIN]
    read_only: true
    tmpfs: [/tmp]
    ulimits:
      nofile: {{soft: 1000, hard: 2000}}
    oom_score_adj: 100
    mem_limit: 96m
    mem_reservation: 32m
    cpus: 0.5
    cpu_shares: 512
    cpuset: "0"
    pids_limit: 64
    sysctls:
      net.ipv4.ip_unprivileged_port_start: "80"
    security_opt: [no-new-privileges]
    environment:
      GREETING: hello
    volumes:
      - ./data.txt:/data/file:ro
    command: [sh, -c, {probe:?}]
  privileged:
    image: busybox
    privileged: true
    command: [sh, -c, {probe:?}]
"#,
        // `$$`: compose would interpolate `$p`.
        probe = PROBE.replace('$', "$$")
    )
}

/// The launcher runs on cgroup v1 hosts (legacy or hybrid); on cgroup v2 every container goes
/// through libcontainer and there is nothing of the launcher's to compare.
fn launcher_host() -> bool {
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    if !v1 {
        eprintln!("SKIPPED: not a cgroup v1 host, where berth's launcher runs");
    }
    v1
}

/// The probe's output from a one-off container of `service`, `libcontainer` or not.
fn probe(env: &Env, service: &str, libcontainer: bool) -> String {
    let mut cmd = env.command(&["run", "--rm", "--no-deps", service]);
    if libcontainer {
        cmd.env("BERTH_RUNTIME", "libcontainer");
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{service}: {}",
        util::text(&out.stderr)
    );
    util::text(&out.stdout)
}

#[test]
fn a_container_looks_the_same_whichever_runtime_started_it() {
    require_root!();
    if !launcher_host() {
        return;
    }
    let env = Env::new("launch");
    env.write("compose.yaml", &compose());
    env.write("data.txt", "x");
    for service in ["plain", "tuned", "privileged"] {
        // Docker gives a user without a passwd entry HOME=/; libcontainer gives none. The
        // directories of nested device nodes (`/dev/net/tun`): libcontainer makes them 0777,
        // the launcher 0755 as runc does. Lines are compared as sorted sets.
        let normal = |s: String| -> Vec<String> {
            let mut v: Vec<String> = s
                .lines()
                .filter(|l| !l.starts_with("HOME="))
                .map(|l| l.replace("drwxrwxrwx 0 0 ", "drwxr-xr-x 0 0 "))
                .collect();
            v.sort();
            v
        };
        let ours = normal(probe(&env, service, false));
        let theirs = normal(probe(&env, service, true));
        // libcontainer mounts the v1 hierarchies it finds; the launcher mounts the same ones.
        assert_eq!(
            ours, theirs,
            "{service}: launcher (left) and libcontainer differ"
        );
        assert!(
            ours.iter().any(|l| l == "Seccomp:\t2") || service == "privileged",
            "{ours:?}"
        );
    }
    let tuned = probe(&env, "tuned", false);
    for want in [
        "uid=1000 gid=1000 groups=10",
        "hostname=tuned-host",
        "domain=example.test",
        "nofile=1000",
        "oom=100",
        "ip_unpriv=80",
        "NoNewPrivs:\t1",
        "GREETING=hello",
        "HOME=/\n",
        "/proc/keys hidden",
        "memory/memory.limit_in_bytes=100663296",
        "cpu/cpu.cfs_quota_us=50000",
        "cpu/cpu.shares=512",
        "cpuset/cpuset.cpus=0",
        "pids/pids.max=64",
        "/proc/kcore hidden",
        "proc-sys-ro",
    ] {
        assert!(tuned.contains(want), "{want} missing from:\n{tuned}");
    }
}

#[test]
fn the_cgroup_filesystem_is_read_only_as_dockers() {
    require_root!();
    if !launcher_host() {
        return;
    }
    let env = Env::new("launchcg");
    env.write(
        "compose.yaml",
        "services:\n  b:\n    image: busybox\n    mem_limit: 64m\n",
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "b",
        "sh",
        "-c",
        "mkdir /sys/fs/cgroup/memory/sub 2>&1 || true; cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("67108864"), "{out}");
}

/// A command that is not there fails the start with Docker's message, and a `--rm` one-off
/// that could not start leaves no container, mount or namespace behind.
#[test]
fn a_one_off_that_cannot_start_says_why_and_rm_leaves_nothing() {
    require_root!();
    let env = Env::new("launchfail");
    env.write("compose.yaml", "services:\n  a:\n    image: busybox\n");
    for (cmd, why) in [
        (
            "nosuchcmd",
            "exec: \"nosuchcmd\": executable file not found in $PATH",
        ),
        ("/no/such", "exec: \"/no/such\": stat /no/such"),
    ] {
        let out = env.berth(&["run", "--rm", "a", cmd]);
        assert_ne!(out.status.code(), Some(0));
        let err = util::text(&out.stderr);
        assert!(err.contains(why), "{cmd}: {err}");
        assert_eq!(
            env.ok(&["ps", "-a", "-q"]),
            "",
            "{cmd}: a container is left"
        );
        let left: Vec<String> = util::leftovers(env.root(), &[])
            .into_iter()
            .filter(|l| {
                l.starts_with("mount") || l.starts_with("run/netns") || l.starts_with("containers")
            })
            .collect();
        assert!(left.is_empty(), "{cmd}: {left:?}");
    }
}

/// A shim with other threads (the `[::1]` proxy of a published port, spawned just before the
/// clone) clones the init: the init's user switch must not wait for threads that only its
/// parent has. glibc's setxid broadcast did when a thread was still starting at the clone,
/// and the init hung before its exec; this start-up race is what the test gives a chance.
#[test]
fn a_shim_with_threads_starts_its_container() {
    require_root!();
    let env = Env::new("launchthreads");
    let mut compose = String::from("services:\n");
    for i in 0..8 {
        compose.push_str(&format!(
            "  s{i}:\n    image: busybox\n    user: \"1000:1000\"\n    ports: ['{}:80']\n    command: [sleep, '1000']\n",
            util::free_port()
        ));
    }
    env.write("compose.yaml", &compose);
    let mut up = env.command(&["up", "-d"]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = up.kill();
            let _ = up.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "up hung or failed: {status:?}"
    );
    let running = env.ok(&["ps", "--status", "running", "-q"]);
    assert_eq!(running.lines().count(), 8, "{running}");
}
