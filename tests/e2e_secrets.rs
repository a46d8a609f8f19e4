//! Service `secrets` and `configs` as docker compose provides them: files bind-mounted
//! read-only, `environment` and `content` as files with the reference's uid, gid and mode.
mod util;
use util::Env;

#[test]
fn secrets_and_configs_reach_the_container_with_their_owner_and_mode() {
    require_root!();
    let env = Env::new("secrets");
    env.write("tok.txt", "from-a-file\n");
    env.write("app.conf", "conf-from-a-file\n");
    env.write(".env", "MY_TOKEN=from-the-environment\n");
    env.write(
        "compose.yaml",
        r#"secrets:
  filetok:
    file: ./tok.txt
  envtok:
    environment: MY_TOKEN
configs:
  cfg:
    content: hello config
  filecfg:
    file: ./app.conf
services:
  app:
    image: busybox
    read_only: true
    command: [sleep, "1000"]
    secrets:
      - filetok
      - source: envtok
        target: renamed
        uid: "1000"
        gid: "1001"
        mode: "0400"
    configs:
      - source: cfg
        target: /etc/app/cfg.txt
        mode: "0440"
      - filecfg
"#,
    );
    env.ok(&["up", "-d"]);
    let sh = |cmd: &str| env.ok(&["exec", "-T", "app", "sh", "-c", cmd]);
    assert_eq!(sh("cat /run/secrets/filetok"), "from-a-file\n");
    assert_eq!(sh("cat /run/secrets/renamed"), "from-the-environment");
    assert_eq!(
        sh("stat -c '%u %g %a' /run/secrets/renamed"),
        "1000 1001 400\n"
    );
    assert_eq!(sh("cat /etc/app/cfg.txt"), "hello config");
    assert_eq!(sh("stat -c '%u %g %a' /etc/app/cfg.txt"), "0 0 440\n");
    assert_eq!(sh("cat /filecfg"), "conf-from-a-file\n");
    // Read-only, all of them.
    let out = env.berth(&[
        "exec",
        "-T",
        "app",
        "sh",
        "-c",
        "echo x > /run/secrets/filetok",
    ]);
    assert!(!out.status.success());
    // On the host the written ones are private to root.
    let files = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("files"))
        .find(|p| p.is_dir())
        .expect("no files dir");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&files).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn a_secret_from_an_unset_variable_or_a_missing_file_is_an_error() {
    require_root!();
    let env = Env::new("secretsbad");
    env.write(
        "compose.yaml",
        "secrets:\n  tok:\n    environment: BERTH_TEST_SURELY_UNSET\nservices:\n  app:\n    image: busybox\n    secrets: [tok]\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("BERTH_TEST_SURELY_UNSET") && err.contains("not set"),
        "{err}"
    );
    env.write(
        "compose.yaml",
        "secrets:\n  tok:\n    file: ./nope.txt\nservices:\n  app:\n    image: busybox\n    secrets: [tok]\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("nope.txt") && err.contains("does not exist"),
        "{err}"
    );
}
