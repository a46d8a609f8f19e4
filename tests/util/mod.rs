//! Test harness for end-to-end tests: a temporary state root and project folder, the real
//! `berth` binary, a busybox image built from Debian's busybox-static, and cleanup that runs
//! even when the test fails.
#![allow(dead_code, clippy::print_stdout, clippy::print_stderr)]
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

pub mod terminal;

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// Why this machine cannot run root end-to-end tests, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    for (tool, pkg) in [
        ("/bin/busybox", "busybox-static"),
        ("/usr/sbin/nft", "nftables"),
    ] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} is missing (apt-get install {pkg})"));
        }
    }
    if !std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("overlay")) {
        return Some("the kernel has no overlayfs".into());
    }
    None
}

#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(reason) = util::skip_reason() {
            eprintln!("SKIPPED {}: {reason}", module_path!());
            return;
        }
    };
}

/// The busybox OCI archive, built once and shared by every test binary: it lives in cargo's
/// tmp dir for integration tests (under `target/`, so nothing is left in /tmp), named by the
/// content of the script that makes it, and is written beside and renamed into place.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mkimage-busybox");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&script).unwrap().hash(&mut h);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(dir).unwrap();
        let tar = dir.join(format!("busybox-{:016x}.tar", h.finish()));
        if !tar.exists() {
            let part = dir.join(format!("busybox-{}.tar.part", std::process::id()));
            let out = Command::new(&script).arg(&part).output().unwrap();
            assert!(
                out.status.success(),
                "mkimage-busybox failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::rename(&part, &tar).unwrap();
        }
        tar
    })
}

/// Runs `cmd` with `stdin` written to its standard input; stdout and stderr are captured.
pub fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// A state root plus a project folder; `down -v` runs on drop.
pub struct Env {
    pub root: tempfile::TempDir,
    pub dir: PathBuf,
    pub project: String,
    pub pool: String,
    _proj: tempfile::TempDir,
}

impl Env {
    /// Polls `berth logs --no-log-prefix SERVICE` until it contains `want` (20 s).
    pub fn wait_logs(&self, service: &str, want: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.ok(&["logs", "--no-log-prefix", service]);
            if out.contains(want) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{service} never printed {want:?}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `berth ps -a --format json` until `pred` holds for the service's container (20 s);
    /// `what` names the awaited state in the failure message.
    pub fn wait_ps(
        &self,
        service: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.ok(&["ps", "-a", "--format", "json"]);
            if let Some(v) = out
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["Service"] == service)
                && pred(&v)
            {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{service} never became {what}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new root with the busybox image loaded and a project folder named `project`.
    pub fn new(project: &str) -> Env {
        let root = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .unwrap();
        let proj = tempfile::tempdir().unwrap();
        let dir = proj.path().join(project);
        std::fs::create_dir_all(&dir).unwrap();
        // A random /20 of 10.213.0.0/16 per test; within it berth skips every /24 another test
        // already routes, so concurrent tests do not share a subnet.
        let pool = format!("10.213.{}.0/20", (rand::random::<u8>() % 16) * 16);
        let env = Env {
            root,
            dir,
            project: project.into(),
            pool,
            _proj: proj,
        };
        let out = env.berth(&["image", "load", "-i", busybox_tar().to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        env
    }

    pub fn write(&self, name: &str, content: &str) {
        std::fs::write(self.dir.join(name), content).unwrap();
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The command `berth` runs, to add to (environment variables, stdin).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BERTH);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("BERTH_ROOT", self.root.path())
            .env("BERTH_SUBNET_POOL", &self.pool)
            .env_remove("COMPOSE_PROJECT_NAME");
        cmd
    }

    /// Runs berth and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs berth and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(!out.status.success(), "berth {args:?} should have failed");
        text(&out.stderr)
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.berth(&[
            "-p",
            &self.project.clone(),
            "down",
            "-v",
            "-t",
            "0",
            "--remove-orphans",
        ]);
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A free TCP port on the host (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` over HTTP/1.0; retries for up to `wait`, returns the body.
pub fn http_get(addr: &str, wait: Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Ok(mut s) =
            TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut buf = String::new();
            if s.read_to_string(&mut buf).is_ok()
                && let Some((_, body)) = buf.split_once("\r\n\r\n")
                && buf.starts_with("HTTP/1.")
                && buf.contains(" 200 ")
            {
                return Some(body.to_string());
            }
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A global IPv4 address of the host that is not on one of berth's bridges.
pub fn host_address() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    text(&out.stdout).lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let ifname = f.get(1)?;
        if ifname.starts_with("br-") || ifname.starts_with("docker") {
            return None;
        }
        Some(f.get(3)?.split('/').next()?.to_string())
    })
}

/// Everything this root could have left on the host.
pub fn leftovers(root: &Path, bridges: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in info.lines() {
        if let Some(mp) = l.split(' ').nth(4)
            && Path::new(mp).starts_with(root)
        {
            left.push(format!("mount {mp}"));
        }
    }
    let links = text(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    );
    for b in bridges {
        if links.contains(&format!(" {b}:")) || links.contains(&format!(" {b}@")) {
            left.push(format!("link {b}"));
        }
    }
    let tag = berth_tag(root);
    let tables = text(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap()
            .stdout,
    );
    if tables.contains(&format!("berth_{tag}")) {
        left.push(format!("nft table berth_{tag}"));
    }
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let d = e.path().join(format!("berth-{tag}"));
            if d.exists() {
                left.push(format!("cgroup {}", d.display()));
            }
        }
    }
    for sub in ["run/netns", "containers"] {
        if let Ok(entries) = std::fs::read_dir(root.join(sub)) {
            for e in entries.flatten() {
                left.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    let procs = text(
        &Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap()
            .stdout,
    );
    for l in procs.lines() {
        if l.contains("__shim") && l.contains(&root.to_string_lossy().to_string()) {
            left.push(format!("process {l}"));
        }
    }
    left
}

/// The tag berth derives from a state root (mirrors `Paths::tag`).
pub fn berth_tag(root: &Path) -> String {
    berth::state::Paths::new(Some(root)).tag()
}

/// Host-side veth names recorded in this root's container records.
pub fn veths(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("containers")) {
        for e in entries.flatten() {
            if let Ok(rec) = std::fs::read_to_string(e.path().join("container.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&rec)
                && let Some(nets) = v["networks"].as_array()
            {
                out.extend(
                    nets.iter()
                        .filter_map(|n| n["host_ifname"].as_str().map(String::from)),
                );
            }
        }
    }
    out
}

/// Bridge names recorded for this root's networks.
pub fn bridges(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("networks")) {
        for e in entries.flatten() {
            if let Ok(rec) = std::fs::read_to_string(e.path())
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&rec)
                && let Some(b) = v.pointer("/network/bridge").and_then(|b| b.as_str())
            {
                out.push(b.to_string());
            }
        }
    }
    out
}

/// Brings the project up, waits for `service` to exit and returns its output, without the
/// `name | ` prefixes.
pub fn output_of(env: &Env, service: &str) -> String {
    env.ok(&["up", "-d"]);
    let logs = env.ok(&["logs", "-f", service]);
    logs.lines()
        .map(|l| l.split_once(" | ").map_or(l, |(_, rest)| rest))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value after `key` on the first line of `out` that starts with it.
pub fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}
