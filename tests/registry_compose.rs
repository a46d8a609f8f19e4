//! Compose and registries end to end (root, Debian's docker-registry on 127.0.0.1): project
//! `push` and `pull`, `pull_policy` always/daily/never, and `up` recreating a container whose
//! re-pulled image changed.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod registry_util;
mod util;

use registry_util::Registry;
use util::Env;

fn up(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["up", "-d"];
    all.extend(args);
    let out = env.berth(&all);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    util::text(&out.stderr)
}

/// Moves the recorded pull time of every name back by `secs`.
fn age_pulls(env: &Env, secs: u64) {
    let path = env.root().join("images/refs.json");
    let mut db: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let pulled = db["pulled"]
        .as_object_mut()
        .expect("pull times are recorded");
    for v in pulled.values_mut() {
        *v = (v.as_u64().unwrap() - secs).into();
    }
    std::fs::write(&path, serde_json::to_vec(&db).unwrap()).unwrap();
}

#[test]
fn project_push_pull_and_pull_policies() {
    require_root!();
    require_registry!();
    let reg = Registry::start();
    let env = Env::new("rc");
    let app = format!("{}/rc/app:1", reg.host);
    let other = format!("{}/rc/other:1", reg.host);
    let compose = |policy: &str| {
        format!(
            "services:\n  app:\n    image: {app}\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox\n        RUN echo built-app > /v\n    command: [sh, -c, 'cat /v; sleep 1000']\n  other:\n    image: {other}\n    pull_policy: {policy}\n    command: [sh, -c, 'cat /v; sleep 1000']\n    depends_on: [app]\n"
        )
    };
    env.write("compose.yaml", &compose("always"));

    // The registry has v1 of `other`; `app` is built and pushed by the project form of push.
    std::fs::write(env.dir.join("v1"), "FROM busybox\nRUN echo v1 > /v\n").unwrap();
    env.ok(&["build", "-t", &other, "-f", "v1", "."]);
    env.ok(&["push", &other]);
    env.ok(&["build"]);
    let pushed = env.ok(&["push"]);
    assert!(pushed.contains(&app), "{pushed}");

    // Project pull brings both back after they are removed locally.
    env.ok(&["rmi", &app, &other]);
    env.ok(&["pull", "-q"]);
    env.ok(&["image", "inspect", &app, &other]);

    // pull_policy always: `up` pulls.
    let err = up(&env, &[]);
    assert!(err.contains(&format!("Image {other}  Pulling")), "{err}");
    env.wait_logs("other", "v1");
    env.wait_logs("app", "built-app");

    // The registry's `other` changes (v2 pushed, local name set back to v1): the next `up`
    // pulls v2 and recreates the container on it.
    std::fs::write(env.dir.join("v2"), "FROM busybox\nRUN echo v2 > /v\n").unwrap();
    let v1_id = {
        let v: serde_json::Value =
            serde_json::from_str(&env.ok(&["image", "inspect", &other])).unwrap();
        v[0]["Id"].as_str().unwrap().to_owned()
    };
    env.ok(&["build", "-t", &other, "-f", "v2", "."]);
    env.ok(&["push", &other]);
    env.ok(&["tag", &v1_id, &other]);
    let err = up(&env, &[]);
    assert!(
        err.contains("Recreated"),
        "the changed image recreates: {err}"
    );
    env.wait_logs("other", "v2");

    // daily: pulled within the day, no pull; a pull two days ago, pulled again.
    env.write("compose.yaml", &compose("daily"));
    let err = up(&env, &[]);
    assert!(!err.contains("Pulling"), "{err}");
    age_pulls(&env, 2 * 86_400);
    let err = up(&env, &[]);
    assert!(err.contains(&format!("Image {other}  Pulling")), "{err}");

    // never, and `up --pull never` over always: no pull, and a missing image is an error.
    env.write("compose.yaml", &compose("always"));
    let err = up(&env, &["--pull", "never"]);
    assert!(!err.contains("Pulling"), "{err}");
    env.ok(&["down", "-t", "0"]);
    env.ok(&["rmi", &other]);
    let err = env.fails(&["up", "-d", "--pull", "never"]);
    assert!(err.contains("never"), "{err}");
}

/// `berth` in the project folder of `env`, with registry settings confined to `dir`
/// (`DOCKER_CONFIG` for credentials, `BERTH_CERTS_D` for CAs) and `stdin` piped in.
fn berth_tls(env: &Env, dir: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::process::Command;
    util::output_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&env.dir)
            .env("BERTH_ROOT", env.root())
            .env("BERTH_SUBNET_POOL", &env.pool)
            .env("DOCKER_CONFIG", dir.join("docker"))
            .env("BERTH_CERTS_D", dir.join("certs.d"))
            .env_remove("COMPOSE_PROJECT_NAME"),
        stdin.as_bytes(),
    )
}

#[test]
fn project_push_and_pull_over_tls_with_basic_auth() {
    require_root!();
    require_registry!();
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: openssl is missing (apt-get install openssl)");
        return;
    }
    let (reg, tls) = Registry::start_with(true);
    let tls = tls.unwrap();
    let env = Env::new("rtls");
    let t = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| berth_tls(&env, t.path(), args, stdin);
    let ok = |args: &[&str]| {
        let out = run(args, "");
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            util::text(&out.stderr)
        );
        util::text(&out.stdout)
    };
    let app = format!("{}/rtls/app:1", reg.host);
    let base = format!("{}/rtls/base:1", reg.host);
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {app}\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox\n        RUN echo tls-app > /v\n    command: [cat, /v]\n  base:\n    image: {base}\n    command: [sleep, '1000']\n"
        ),
    );
    ok(&["build"]);
    ok(&["tag", "busybox", &base]);

    // The registry's certificate is not trusted yet: a certificate error, nothing pushed.
    let out = run(&["push"], "");
    let err = util::text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("certificate") || err.contains("Unknown"),
        "{err}"
    );
    let certs = t.path().join("certs.d").join(&reg.host);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&tls.ca, certs.join("ca.crt")).unwrap();

    // Trusted, but anonymous: refused.
    let out = run(&["push"], "");
    assert!(!out.status.success(), "an anonymous push was accepted");

    // Logged in: the project's images go up and come back down.
    let out = run(
        &["login", "-u", &tls.user, "--password-stdin", &reg.host],
        &format!("{}\n", tls.password),
    );
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let pushed = ok(&["push"]);
    assert!(pushed.contains(&app) && pushed.contains(&base), "{pushed}");
    ok(&["rmi", "-f", &app, &base]);
    ok(&["pull", "-q"]);
    ok(&["image", "inspect", &app, &base]);
    let out = ok(&["run", "--rm", "app"]);
    assert!(out.contains("tls-app"), "{out}");

    // Logged out: a pull is refused again.
    ok(&["logout", &reg.host]);
    ok(&["rmi", "-f", &base]);
    let out = run(&["pull", "base"], "");
    assert!(!out.status.success(), "an anonymous pull was accepted");
}
