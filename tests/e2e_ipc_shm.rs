//! `ipc: service:NAME` / `container:NAME` of a shareable container share its `/dev/shm` too,
//! as Docker's do: the donor's `/dev/shm` is a tmpfs on the host that both bind.
mod util;
use util::Env;

#[test]
fn joining_a_shareable_ipc_namespace_shares_dev_shm() {
    require_root!();
    let env = Env::new("ipcshm");
    env.write(
        "compose.yaml",
        r#"services:
  a:
    image: busybox
    ipc: shareable
    shm_size: 8m
    command: [sh, -c, "echo written-by-a > /dev/shm/from-a; exec sleep 1000"]
  b:
    image: busybox
    ipc: service:a
    command: [sleep, "1001"]
  c:
    image: busybox
    command: [sh, -c, "echo written-by-c > /dev/shm/from-c; exec sleep 1002"]
  d:
    image: busybox
    ipc: service:c
    command: [sleep, "1003"]
  alone:
    image: busybox
    command: [sh, -c, "echo mine > /dev/shm/alone; exec sleep 1004"]
"#,
    );
    env.ok(&["up", "-d"]);
    let cat =
        |svc: &str, file: &str| env.berth(&["exec", "-T", svc, "cat", &format!("/dev/shm/{file}")]);
    // a writes its file as it starts: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cat("a", "from-a").status.success() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = cat("b", "from-a");
    assert_eq!(util::text(&out.stdout), "written-by-a\n", "{out:?}");
    // Both ways, and the donor's size.
    env.ok(&[
        "exec",
        "-T",
        "b",
        "sh",
        "-c",
        "echo written-by-b > /dev/shm/from-b",
    ]);
    assert_eq!(util::text(&cat("a", "from-b").stdout), "written-by-b\n");
    let df = env.ok(&["exec", "-T", "b", "df", "-k", "/dev/shm"]);
    assert!(
        df.contains(" 8192 "),
        "b's /dev/shm is not a's 8m one: {df}"
    );
    // A service named by another's `ipc: service:` is shareable without saying so.
    while !cat("c", "from-c").status.success() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(util::text(&cat("d", "from-c").stdout), "written-by-c\n");
    // Others keep their own.
    assert!(!cat("alone", "from-a").status.success());
    assert!(!cat("a", "alone").status.success());
    assert!(!cat("a", "from-c").status.success());

    let inspect = env.ok(&["inspect", "a"]);
    assert!(inspect.contains("\"IpcMode\": \"shareable\""), "{inspect}");

    // Nothing of it stays mounted once the project is gone.
    env.ok(&["down", "-t", "0"]);
    let left: Vec<String> = util::leftovers(env.root(), &[])
        .into_iter()
        .filter(|l| l.starts_with("mount"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
