//! Bad input gets a clear error, a non-zero exit and nothing half-created.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use util::Env;

/// Nothing of the project exists under the root.
fn nothing_created(env: &Env) {
    for sub in ["containers", "networks", "volumes", "run/netns"] {
        let entries: Vec<String> = std::fs::read_dir(env.root().join(sub))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with(".lock") && n != "subnets.json")
                    .collect()
            })
            .unwrap_or_default();
        assert!(entries.is_empty(), "{sub} has {entries:?}");
    }
    assert!(util::bridges(env.root()).is_empty());
}

#[test]
fn bad_input_is_reported_and_creates_nothing() {
    require_root!();
    let env = Env::new("bad");

    // No compose file.
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("no configuration file provided"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    // YAML syntax error, with line and column.
    env.write("compose.yaml", "services:\n  web:\n    image: [busybox\n");
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("compose.yaml:3:"), "{err}");

    // Unknown key.
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    prots: ['80']\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("prots") && err.contains("services.web"),
        "{err}"
    );

    // Unknown image: names the service and the image.
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n  db:\n    image: 127.0.0.1:1/nosuchimage:1.0\n    volumes: [data:/d]\nvolumes:\n  data:\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("\"db\"") && err.contains("nosuchimage"),
        "{err}"
    );
    nothing_created(&env);

    // Host port already in use: names the service and the port.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    env.write(
        "compose.yaml",
        &format!("services:\n  web:\n    image: busybox\n    command: sleep 100\n    ports: ['{port}:80']\n"),
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("\"web\"") && err.contains(&port.to_string()),
        "{err}"
    );
    assert!(err.contains("already allocated"), "{err}");
    nothing_created(&env);
    drop(taken);

    // A bind-mount source that cannot be created (its parent is a file).
    env.write("afile", "x");
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    command: sleep 100\n    volumes: ['./afile/sub:/data']\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(
        err.contains("\"web\"") && err.contains("afile/sub"),
        "{err}"
    );
    nothing_created(&env);

    // A dependency cycle, with its path.
    env.write(
        "compose.yaml",
        "services:\n  a:\n    image: busybox\n    depends_on: [b]\n  b:\n    image: busybox\n    depends_on: [a]\n",
    );
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("cycle") && err.contains("->"), "{err}");
    nothing_created(&env);
}

/// A document validated once is not validated again (a mark under the run root), and a bad one
/// is never marked: its error comes back every time.
#[test]
fn schema_verdicts_are_remembered_only_for_valid_documents() {
    let env = Env::new("schemamark");
    let marks = || {
        std::fs::read_dir(env.root().join("run/compose-valid"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    env.write("compose.yaml", "services:\n  web:\n    image: busybox\n");
    env.ok(&["config", "-q"]);
    assert_eq!(marks(), 1);
    env.ok(&["config", "-q"]);
    assert_eq!(marks(), 1);
    env.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    prots: ['80']\n",
    );
    for _ in 0..2 {
        let err = env.fails(&["config", "-q"]);
        assert!(err.contains("prots"), "{err}");
    }
    assert_eq!(marks(), 1);
}
