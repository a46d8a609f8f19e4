//! Convergence of `up` (root only): anonymous volumes kept across a recreate and renewed with
//! `-V`, the `scale` command, networks and volumes whose definition changed, and orphans at
//! `down`.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use util::Env;

const LOOP: &str = r#"[sh, -c, 'trap "exit 0" TERM; while true; do sleep 1 & wait $$!; done']"#;

fn names(env: &Env) -> Vec<String> {
    env.ok(&["ps", "-a", "--format", "json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["Name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The id of a container, by name.
fn id(env: &Env, name: &str) -> String {
    env.ok(&["ps", "-a", "--format", "json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["Name"] == name)
        .map(|v| v["ID"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// The volumes of the state root, by name.
fn volumes(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.root().join("volumes"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn anonymous_volumes_survive_a_recreate_and_are_renewed_with_v() {
    require_root!();
    let env = Env::new("anon");
    let file = |extra: &str| {
        format!(
            "services:\n  app:\n    image: busybox\n    command: {LOOP}\n    volumes:\n      - /data\n      - keep:/named\n{extra}volumes:\n  keep: {{}}\n"
        )
    };
    env.write("compose.yaml", &file(""));
    env.ok(&["up", "-d"]);
    env.ok(&[
        "exec",
        "app",
        "sh",
        "-c",
        "echo one > /data/f; echo two > /named/f",
    ]);
    let first = volumes(&env);
    assert_eq!(first.len(), 2, "{first:?}");

    // A recreate (forced, or because the configuration changed) hands the anonymous volume to
    // the new container.
    let out = env.berth(&["up", "-d", "--force-recreate"]);
    let err = util::text(&out.stderr);
    assert!(
        err.contains("Container anon-app-1  Recreate\n")
            && err.contains("Container anon-app-1  Recreated"),
        "docker compose's words: {err}"
    );
    assert_eq!(env.ok(&["exec", "app", "cat", "/data/f"]), "one\n");
    env.write(
        "compose.yaml",
        &file("    environment:\n      X: changed\n"),
    );
    env.ok(&["up", "-d"]);
    assert_eq!(env.ok(&["exec", "app", "cat", "/data/f"]), "one\n");
    assert_eq!(volumes(&env), first);

    // -V: a new, empty anonymous volume (the old one is removed); named volumes are kept.
    let err = env.fails(&["up", "-d", "-V", "--no-recreate"]);
    assert!(
        err.contains("--no-recreate and --renew-anon-volumes are incompatible"),
        "{err}"
    );
    env.ok(&["up", "-d", "--renew-anon-volumes"]);
    let out = env.berth(&["exec", "app", "cat", "/data/f"]);
    assert!(
        !out.status.success(),
        "the renewed volume still has the old data"
    );
    assert_eq!(env.ok(&["exec", "app", "cat", "/named/f"]), "two\n");
    let renewed = volumes(&env);
    assert_eq!(renewed.len(), 2, "{renewed:?}");
    assert_ne!(renewed, first);

    // A one-off with --rm takes its anonymous volume with it.
    env.ok(&["run", "--rm", "app", "sh", "-c", "test ! -e /data/f"]);
    assert_eq!(volumes(&env), renewed);

    // down keeps volumes; down -v removes the anonymous one too.
    env.ok(&["down", "-t", "0"]);
    assert_eq!(volumes(&env), renewed);
    env.ok(&["down", "-v"]);
    assert_eq!(volumes(&env), Vec::<String>::new());
}

#[test]
fn scale_command() {
    require_root!();
    let env = Env::new("scl");
    env.write(
        "compose.yaml",
        &format!("services:\n  db:\n    image: busybox\n    command: {LOOP}\n  web:\n    image: busybox\n    command: {LOOP}\n    depends_on: [db]\n"),
    );
    // Up from nothing, with the dependency.
    env.ok(&["scale", "web=3"]);
    assert_eq!(
        names(&env),
        ["scl-db-1", "scl-web-1", "scl-web-2", "scl-web-3"]
    );
    let web1 = id(&env, "scl-web-1");
    // Down: the highest numbers go, the rest is untouched.
    env.ok(&["scale", "web=1"]);
    assert_eq!(names(&env), ["scl-db-1", "scl-web-1"]);
    assert_eq!(id(&env, "scl-web-1"), web1);
    // Up again: free numbers are reused.
    env.ok(&["scale", "web=2", "db=2"]);
    assert_eq!(
        names(&env),
        ["scl-db-1", "scl-db-2", "scl-web-1", "scl-web-2"]
    );
    assert_eq!(id(&env, "scl-web-1"), web1);
    let ps = env.ok(&["ps", "--status", "running", "-q"]);
    assert_eq!(ps.lines().count(), 4, "{ps}");
    // The dependencies converge too: db goes back to the compose file's one replica.
    env.ok(&["scale", "web=0"]);
    assert_eq!(names(&env), ["scl-db-1"]);

    // --no-deps: the dependency is neither started nor waited for.
    env.ok(&["down", "-t", "0"]);
    env.ok(&["scale", "--no-deps", "web=2"]);
    assert_eq!(names(&env), ["scl-web-1", "scl-web-2"]);
    let web1 = id(&env, "scl-web-1");
    env.ok(&["up", "-d", "--no-deps", "web"]);
    assert_eq!(names(&env), ["scl-web-1"]);
    // `scale:` in the file changing recreates nothing (it is not part of the config hash).
    env.write(
        "compose.yaml",
        &format!("services:\n  db:\n    image: busybox\n    command: {LOOP}\n  web:\n    image: busybox\n    command: {LOOP}\n    depends_on: [db]\n    scale: 2\n"),
    );
    env.ok(&["up", "-d", "--no-deps", "web"]);
    assert_eq!(names(&env), ["scl-web-1", "scl-web-2"]);
    assert_eq!(id(&env, "scl-web-1"), web1);

    // docker compose's errors.
    let err = env.fails(&["scale", "web"]);
    assert!(err.contains("invalid scale specifier: web"), "{err}");
    let err = env.fails(&["scale", "web=x"]);
    assert!(
        err.contains("invalid scale specifier: can't parse replica value as int: web=x"),
        "{err}"
    );
    let err = env.fails(&["scale", "nope=1"]);
    assert!(err.contains("no such service: nope"), "{err}");
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn down_leaves_orphans_and_one_offs_without_remove_orphans() {
    require_root!();
    let env = Env::new("dor");
    let both = format!(
        "services:\n  a:\n    image: busybox\n    command: {LOOP}\n  b:\n    image: busybox\n    command: {LOOP}\n  c:\n    image: busybox\n    command: {LOOP}\n    profiles: [extra]\n"
    );
    env.write("compose.yaml", &both);
    env.ok(&["--profile", "extra", "up", "-d"]);
    let oneoff = env.ok(&["run", "-d", "a"]);
    assert!(!oneoff.trim().is_empty());
    assert_eq!(names(&env).len(), 4);
    // b is no longer in the file: an orphan. c's profile is not active: not an orphan.
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  a:\n    image: busybox\n    command: {LOOP}\n  c:\n    image: busybox\n    command: {LOOP}\n    profiles: [extra]\n"
        ),
    );
    let out = env.berth(&["up", "-d"]);
    let err = util::text(&out.stderr);
    assert!(
        err.contains("Found orphan containers (dor-b-1) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up."),
        "{err}"
    );

    // docker compose's down removes only the file's active services: b (orphan), c (profile
    // not active) and the one-off stay, and so does the network they use.
    let out = env.berth(&["down", "-t", "0"]);
    assert!(out.status.success());
    let err = util::text(&out.stderr);
    assert!(
        err.contains("dor_default") && err.contains("Resource is still in use"),
        "{err}"
    );
    let left = names(&env);
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.contains(&"dor-b-1".to_string()) && left.contains(&"dor-c-1".to_string()));
    assert!(left.iter().any(|n| n.starts_with("dor-a-run-")), "{left:?}");
    // c's containers go with its profile; --remove-orphans takes the rest and the network.
    env.ok(&["--profile", "extra", "down", "-t", "0"]);
    assert_eq!(names(&env).len(), 2);
    env.ok(&["down", "-t", "0", "--remove-orphans"]);
    assert_eq!(names(&env), Vec::<String>::new());
    assert!(util::bridges(env.root()).is_empty());

    // With -p alone (no compose file read), every service's containers go, one-offs stay.
    env.ok(&["up", "-d"]);
    env.ok(&["run", "-d", "a"]);
    env.ok(&["-p", "dor", "down", "-t", "0"]);
    let left = names(&env);
    assert!(
        left.len() == 1 && left[0].starts_with("dor-a-run-"),
        "{left:?}"
    );
    env.ok(&["-p", "dor", "down", "-t", "0", "--remove-orphans"]);
    assert_eq!(names(&env), Vec::<String>::new());
    // Nothing left: said, as docker compose says it, and still a success.
    let out = env.berth(&["down"]);
    assert!(out.status.success());
    let err = util::text(&out.stderr);
    assert!(
        err.contains("No resource found to remove for project \"dor\""),
        "{err}"
    );
}

fn inspect_network(env: &Env, name: &str) -> serde_json::Value {
    let out = env.ok(&["network", "inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array().map_or(v.clone(), |a| a[0].clone())
}

#[test]
fn a_changed_network_or_volume_is_recreated_with_its_containers() {
    require_root!();
    let env = Env::new("drift");
    let file = |internal: bool, label: &str| {
        format!(
            "services:\n  app:\n    image: busybox\n    command: {LOOP}\n    networks: [front]\n  peer:\n    image: busybox\n    command: {LOOP}\n    networks: [front]\n  other:\n    image: busybox\n    command: {LOOP}\n  store:\n    image: busybox\n    command: {LOOP}\n    volumes: ['data:/data']\nnetworks:\n  front:\n    internal: {internal}\nvolumes:\n  data:\n    labels:\n      tier: {label}\n"
        )
    };
    env.write("compose.yaml", &file(false, "a"));
    env.ok(&["up", "-d"]);
    env.ok(&["exec", "store", "sh", "-c", "echo kept > /data/f"]);
    let (app, other, store) = (
        id(&env, "drift-app-1"),
        id(&env, "drift-other-1"),
        id(&env, "drift-store-1"),
    );
    assert_eq!(inspect_network(&env, "drift_front")["Internal"], false);

    // The network changed: it is made anew; the containers on it are stopped, moved onto it and
    // started again (the same containers, as docker compose keeps them); the rest is untouched.
    env.write("compose.yaml", &file(true, "a"));
    let out = env.berth(&["up", "-d"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let err = util::text(&out.stderr);
    for want in [
        "Container drift-app-1  Stopped",
        "Network drift_front  Removed",
        "Network drift_front  Created",
        "Container drift-app-1  Started",
    ] {
        assert!(err.contains(want), "{want}:\n{err}");
    }
    assert_eq!(inspect_network(&env, "drift_front")["Internal"], true);
    assert_eq!(id(&env, "drift-app-1"), app);
    assert_eq!(id(&env, "drift-other-1"), other);
    assert_eq!(id(&env, "drift-store-1"), store);
    // They reach each other on the new network, by name.
    env.ok(&["exec", "app", "ping", "-c", "1", "-W", "2", "peer"]);
    // Nothing changed since: nothing is touched.
    env.ok(&["up", "-d"]);
    assert_eq!(id(&env, "drift-app-1"), app);
    // A stopped container whose link is gone (an `up` killed while moving it) is attached
    // again before it starts.
    env.ok(&["stop", "-t", "0", "app"]);
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            env.root()
                .join("containers")
                .join(&app)
                .join("container.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let veth = rec["networks"][0]["host_ifname"]
        .as_str()
        .unwrap()
        .to_string();
    let del = std::process::Command::new("ip")
        .args(["link", "del", &veth])
        .status()
        .unwrap();
    assert!(del.success());
    env.ok(&["up", "-d"]);
    env.ok(&["exec", "app", "ping", "-c", "1", "-W", "2", "peer"]);

    // The volume changed: docker compose asks first, as its data would be lost. No answer (stdin
    // is empty): the volume and its container stay as they are, and the question comes again.
    env.write("compose.yaml", &file(true, "b"));
    let out = env.berth(&["up", "-d"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let err = util::text(&out.stderr);
    assert!(
        err.contains("Volume \"drift_data\" exists but doesn't match configuration in compose file. Recreate (data will be lost)?"),
        "{err}"
    );
    assert_eq!(id(&env, "drift-store-1"), store);
    assert_eq!(env.ok(&["exec", "store", "cat", "/data/f"]), "kept\n");
    // Yes (-y): the container goes, the volume is made anew (empty), the container comes back.
    env.ok(&["up", "-d", "-y"]);
    assert_ne!(id(&env, "drift-store-1"), store);
    assert!(
        !env.berth(&["exec", "store", "test", "-e", "/data/f"])
            .status
            .success()
    );
    let store = id(&env, "drift-store-1");
    env.ok(&["up", "-d"]);
    assert_eq!(id(&env, "drift-store-1"), store);

    // Something `up` would not recreate (a one-off) on a changed network: an error, before
    // anything changes.
    env.ok(&["run", "-d", "--no-deps", "app"]);
    env.write("compose.yaml", &file(false, "b"));
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("network drift_front must be recreated as its configuration changed, but container drift-app-run-"),
        "{err}"
    );
    assert_eq!(id(&env, "drift-app-1"), app);
    assert_eq!(inspect_network(&env, "drift_front")["Internal"], true);
    env.ok(&["down", "-t", "0", "--remove-orphans"]);

    // A network of that name this project did not create is used as it is, with docker
    // compose's warning.
    env.ok(&["network", "create", "drift_front"]);
    let out = env.berth(&["up", "-d"]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    assert!(
        util::text(&out.stderr)
            .contains("a network with name drift_front exists but was not created by compose"),
        "{}",
        util::text(&out.stderr)
    );
    env.ok(&["down", "-t", "0"]);
    env.ok(&["network", "rm", "drift_front"]);
}

#[test]
fn force_recreate_applies_to_the_named_services_and_deps_follow_always_recreate_deps() {
    require_root!();
    let env = Env::new("frd");
    env.write(
        "compose.yaml",
        &format!("services:\n  db:\n    image: busybox\n    command: {LOOP}\n  web:\n    image: busybox\n    command: {LOOP}\n    depends_on: [db]\n"),
    );
    env.ok(&["up", "-d"]);
    let ids = || (id(&env, "frd-db-1"), id(&env, "frd-web-1"));
    let (db, web) = ids();
    // docker compose: --force-recreate recreates the named service, its dependencies only if
    // their configuration diverged...
    env.ok(&["up", "-d", "--force-recreate", "web"]);
    let (db2, web2) = ids();
    assert_eq!(db2, db);
    assert_ne!(web2, web);
    // ...or with --always-recreate-deps.
    env.ok(&["up", "-d", "--always-recreate-deps", "web"]);
    let (db3, web3) = ids();
    assert_ne!(db3, db2);
    assert_eq!(web3, web2, "web itself had not changed");
    // Without services named, every service is named.
    env.ok(&["up", "-d", "--force-recreate"]);
    let (db4, web4) = ids();
    assert!(db4 != db3 && web4 != web3);
    let err = env.fails(&["up", "-d", "--always-recreate-deps", "--no-recreate"]);
    assert!(
        err.contains("--always-recreate-deps and --no-recreate are incompatible"),
        "{err}"
    );
    // down SERVICE takes the services depending on it along, not its dependencies.
    env.ok(&["down", "-t", "0", "web"]);
    assert_eq!(names(&env), ["frd-db-1"]);
    env.ok(&["up", "-d"]);
    env.ok(&["down", "-t", "0", "db"]);
    assert_eq!(names(&env), Vec::<String>::new());
    let err = env.fails(&["down", "nope"]);
    assert!(err.contains("no such service: nope"), "{err}");
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn exited_one_offs_are_orphans_and_compose_remove_orphans_comes_from_dot_env() {
    require_root!();
    let env = Env::new("oo");
    env.write(
        "compose.yaml",
        &format!("services:\n  test:\n    image: busybox\n    command: {LOOP}\n  once:\n    image: busybox\n    command: [echo, hello]\n    profiles: [run]\n"),
    );
    env.ok(&["run", "once"]);
    let oneoff = names(&env);
    assert!(
        oneoff.len() == 1 && oneoff[0].starts_with("oo-once-run-"),
        "{oneoff:?}"
    );
    // An exited one-off is an orphan: up warns about it...
    let out = env.berth(&["up", "-d"]);
    let err = util::text(&out.stderr);
    assert!(
        err.contains(&format!("Found orphan containers ({})", oneoff[0])),
        "{err}"
    );
    assert_eq!(names(&env).len(), 2);
    // ...unless COMPOSE_IGNORE_ORPHANS, and removes it with COMPOSE_REMOVE_ORPHANS, read from
    // the project's .env too.
    env.write(".env", "COMPOSE_IGNORE_ORPHANS=true\n");
    let out = env.berth(&["up", "-d"]);
    assert!(!util::text(&out.stderr).contains("orphan"));
    let err = env.fails(&["up", "-d", "--remove-orphans"]);
    assert!(
        err.contains("cannot combine COMPOSE_IGNORE_ORPHANS and --remove-orphans"),
        "{err}"
    );
    env.write(".env", "COMPOSE_REMOVE_ORPHANS=1\n");
    env.ok(&["up", "-d"]);
    assert_eq!(names(&env), ["oo-test-1"]);
    env.ok(&["down", "-t", "0"]);
}

#[test]
fn empty_volumes_are_filled_from_the_image_and_image_volumes_are_anonymous_volumes() {
    require_root!();
    let env = Env::new("vcopy");
    env.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: busybox\n    command: {LOOP}\n    volumes:\n      - conf:/etc\n      - type: volume\n        source: bare\n        target: /root/etc\n        volume: {{nocopy: true}}\n  seeded:\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM busybox\n        RUN mkdir /data && echo seeded > /data/f\n        VOLUME /data\n    command: {LOOP}\nvolumes:\n  conf: {{}}\n  bare: {{}}\n"
        ),
    );
    env.ok(&["up", "-d"]);
    // An empty named volume gets the image's files at its target (as Docker copies them);
    // `nocopy` leaves it empty.
    let conf = env.root().join("volumes/vcopy_conf/_data");
    assert!(
        std::fs::read_to_string(conf.join("passwd"))
            .unwrap()
            .starts_with("root:x:0:0:"),
    );
    assert!(
        env.ok(&["exec", "app", "cat", "/etc/group"])
            .contains("wheel:x:10:root")
    );
    let bare = env.root().join("volumes/vcopy_bare/_data");
    assert_eq!(std::fs::read_dir(&bare).unwrap().count(), 0);
    // A volume with data is never overwritten.
    env.ok(&["exec", "app", "sh", "-c", "echo mine > /etc/passwd"]);
    env.ok(&["up", "-d", "--force-recreate", "app"]);
    assert_eq!(env.ok(&["exec", "app", "cat", "/etc/passwd"]), "mine\n");

    // The image's VOLUME is an anonymous volume, filled from the image, kept across a
    // recreate.
    assert_eq!(env.ok(&["exec", "seeded", "cat", "/data/f"]), "seeded\n");
    env.ok(&["exec", "seeded", "sh", "-c", "echo changed > /data/f"]);
    env.ok(&["up", "-d", "--force-recreate", "seeded"]);
    assert_eq!(env.ok(&["exec", "seeded", "cat", "/data/f"]), "changed\n");
    assert_eq!(volumes(&env).len(), 3, "{:?}", volumes(&env));
    env.ok(&["down", "-v", "-t", "0"]);
    assert_eq!(volumes(&env), Vec::<String>::new());
}
