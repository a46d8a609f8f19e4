//! `include` of a git repository: a bare repository served by `git daemon` on 127.0.0.1, the
//! real `berth config` including it by tag, by default branch and by commit id (in the fragment
//! and the query spelling), with the checkout cached under the state root.
#![allow(clippy::print_stderr)] // skip reasons
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `git` isolated from the host's configuration.
fn git(dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `git daemon` serving `base` on 127.0.0.1; killed (by its pid) when dropped.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // `git-daemon` itself: `git daemon` would run it as a child that outlives a kill.
        let exec_path = git(base, base, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg(format!("--base-path={}", base.display()))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "git daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon { child, port }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    tmp: tempfile::TempDir,
    daemon: Option<Daemon>,
    v1: String,
}

impl Setup {
    /// A repository `lib.git` whose tag `v1` has `sub/compose.yaml` with its own `.env` and an
    /// env file, and whose default branch has moved on (another `.env`).
    fn new() -> Option<Setup> {
        if Command::new("git").arg("--version").output().is_err() {
            eprintln!("skipped: no git binary");
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let work = tmp.path().join("work");
        let repos = tmp.path().join("repos");
        for d in [&home, &work.join("sub"), &repos] {
            std::fs::create_dir_all(d).unwrap();
        }
        git(&repos, &home, &["init", "-q", "--bare", "lib.git"]);
        git(&work, &home, &["init", "-q", "-b", "main"]);
        std::fs::write(
            work.join("sub/compose.yaml"),
            "services:\n  cache:\n    image: redis:${REDIS_TAG}\n    env_file: [cache.env]\n",
        )
        .unwrap();
        std::fs::write(work.join("sub/.env"), "REDIS_TAG=7\n").unwrap();
        std::fs::write(work.join("sub/cache.env"), "FROM_ENV_FILE=yes\n").unwrap();
        git(&work, &home, &["add", "-A"]);
        git(&work, &home, &["commit", "-q", "-m", "one"]);
        git(&work, &home, &["tag", "v1"]);
        let v1 = git(&work, &home, &["rev-parse", "HEAD"]);
        std::fs::write(work.join("sub/.env"), "REDIS_TAG=8\n").unwrap();
        git(&work, &home, &["commit", "-q", "-am", "two"]);
        let bare = repos.join("lib.git");
        let bare = bare.to_str().unwrap();
        git(&work, &home, &["push", "-q", bare, "main", "v1"]);
        git(
            &repos.join("lib.git"),
            &home,
            &["symbolic-ref", "HEAD", "refs/heads/main"],
        );
        let daemon = Some(Daemon::start(&repos));
        Some(Setup { tmp, daemon, v1 })
    }

    fn url(&self, fragment: &str) -> String {
        let port = self.daemon.as_ref().map_or(1, |d| d.port);
        format!("git://127.0.0.1:{port}/lib.git{fragment}")
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    /// `berth config --format json` of a project including `include`.
    fn config(&self, include: &str) -> Output {
        self.run(
            &format!(
                "include:\n  - {include}\nservices:\n  web:\n    image: nginx\n    depends_on: [cache]\n"
            ),
            &["config", "--format", "json"],
        )
    }

    /// `berth ARGS` in the folder `demo` holding `compose.yaml` with `yaml`.
    fn run(&self, yaml: &str, args: &[&str]) -> Output {
        let dir = self.tmp.path().join("demo");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), yaml).unwrap();
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&dir)
            .env("BERTH_ROOT", self.root())
            .env("HOME", self.tmp.path().join("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("XDG_CACHE_HOME")
            .output()
            .unwrap()
    }

    fn loads(&self, include: &str) -> serde_json::Value {
        let out = self.config(include);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn fails(&self, include: &str) -> String {
        let out = self.config(include);
        assert!(!out.status.success(), "including {include} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

#[test]
fn git_include_by_tag_branch_and_commit() {
    let Some(mut s) = Setup::new() else { return };

    // By tag, with a subdirectory: the included file reads its own `.env` and env file.
    let v = s.loads(&s.url("#v1:sub"));
    let cache = &v["services"]["cache"];
    assert_eq!(cache["image"], "redis:7", "{v}");
    assert_eq!(cache["environment"]["FROM_ENV_FILE"], "yes", "{v}");
    assert_eq!(
        v["services"]["web"]["depends_on"]["cache"]["condition"],
        "service_started"
    );
    let checkout = s.root().join("cache/git").join(&s.v1);
    assert!(
        checkout.join("sub/compose.yaml").is_file(),
        "no checkout at {checkout:?}"
    );
    // (FROM_ENV_FILE comes from sub/cache.env, which exists only in the checkout; `config`
    // leaves the resolved env_file out of its output, as docker compose does.)
    assert!(cache.get("env_file").is_none(), "{v}");

    // Without a ref: the default branch, which has moved on.
    assert_eq!(
        s.loads(&s.url("#:sub"))["services"]["cache"]["image"],
        "redis:8"
    );

    // BuildKit's query spelling, which docker compose accepts too: `?tag=` is refs/tags/...,
    // `?branch=` refs/heads/..., `?ref=` either; `subdir=` the folder. The query is not part of
    // the URL given to git.
    for (query, image) in [
        ("?tag=v1&subdir=sub", "redis:7"),
        ("?ref=v1&subdir=sub", "redis:7"),
        ("?branch=main&subdir=sub", "redis:8"),
        ("?ref=v1#v1:sub", "redis:7"),
    ] {
        let v = s.loads(&s.url(query));
        assert_eq!(v["services"]["cache"]["image"], image, "{query}: {v}");
    }
    let err = s.fails(&s.url("?depth=1#v1:sub"));
    assert!(err.contains("unexpected query \"depth\""), "{err}");

    // An unknown ref is a clear error that points at the include.
    let err = s.fails(&s.url("#nope:sub"));
    assert!(err.contains("has no ref \"nope\""), "{err}");
    assert!(err.contains("include[0]"), "{err}");
    // A folder without a compose file.
    let err = s.fails(&s.url("#v1:missing"));
    assert!(err.contains("\"missing\" does not exist"), "{err}");

    // A commit id is served from the cache: no network needed any more.
    let v1 = s.v1.clone();
    let pinned = s.url(&format!("#{v1}:sub"));
    s.daemon = None;
    assert_eq!(s.loads(&pinned)["services"]["cache"]["image"], "redis:7");
    // A branch needs the remote, which is gone.
    let err = s.fails(&pinned.replace(&v1, "main"));
    assert!(err.contains("failed to access repository"), "{err}");
    // No temporary checkout is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(s.root().join("cache/git"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn oci_include_is_refused_with_a_hint() {
    let Some(s) = Setup::new() else { return };
    let err = s.fails("oci://registry.example/stack:1");
    assert!(err.contains("not supported"), "{err}");
    assert!(err.contains("compose.yaml:2:"), "{err}");
}

/// docker compose's remote loaders also serve `-f` and `extends.file`: the file comes from a
/// checkout, and a remote `-f` makes the checkout folder the project directory.
#[test]
fn git_compose_file_and_extends_file() {
    let Some(s) = Setup::new() else { return };
    let json = |out: Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let url = s.url("?tag=v1&subdir=sub");
    let v = json(s.run("", &["-f", &url, "config", "--format", "json"]));
    let cache = &v["services"]["cache"];
    // The checkout's `.env` is the project's: REDIS_TAG=7 at v1.
    assert_eq!(cache["image"], "redis:7", "{v}");
    assert_eq!(cache["environment"]["FROM_ENV_FILE"], "yes", "{v}");
    assert_eq!(v["name"], "sub", "{v}");
    let v = json(s.run(
        "",
        &[
            "-f",
            &url,
            "config",
            "--format",
            "json",
            "--no-env-resolution",
        ],
    ));
    let checkout = s.root().join("cache/git").join(&s.v1);
    let env_file = v["services"]["cache"]["env_file"][0]["path"]
        .as_str()
        .unwrap();
    assert!(Path::new(env_file).starts_with(&checkout), "{v}");

    // extends.file: the service starts from the remote one; the local file's `.env` rules.
    let yaml = format!(
        "services:\n  mine:\n    extends:\n      file: {}\n      service: cache\n    environment:\n      LOCAL: 'yes'\n",
        s.url("#v1:sub/compose.yaml")
    );
    std::fs::create_dir_all(s.tmp.path().join("demo")).unwrap();
    std::fs::write(s.tmp.path().join("demo/.env"), "REDIS_TAG=6\n").unwrap();
    let v = json(s.run(&yaml, &["config", "--format", "json"]));
    let mine = &v["services"]["mine"];
    assert_eq!(mine["image"], "redis:6", "{v}");
    assert_eq!(mine["environment"]["FROM_ENV_FILE"], "yes", "{v}");
    assert_eq!(mine["environment"]["LOCAL"], "yes", "{v}");

    // A bad reference points at the extends.
    let yaml = yaml.replace("#v1:", "#nope:");
    let out = s.run(&yaml, &["config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("services.mine.extends.file") && err.contains("has no ref \"nope\""),
        "{err}"
    );
}
