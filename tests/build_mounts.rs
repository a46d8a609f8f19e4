//! RUN `--mount` end to end (root): bind from the context and from a stage, cache mounts that
//! persist between builds, tmpfs, secrets (`--secret`), and mount points left out of layers.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use berth::engine::image::ImageStore;
use std::path::PathBuf;
use util::Env;

fn layers(env: &Env, name: &str) -> Vec<PathBuf> {
    let store = ImageStore::open(&env.root().join("images")).unwrap();
    store.resolve(name).unwrap().layers
}

fn read(layers: &[PathBuf], path: &str) -> Option<String> {
    layers
        .iter()
        .rev()
        .map(|l| l.join(path))
        .find(|p| p.symlink_metadata().is_ok())
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
}

const DOCKERFILE: &str = r#"FROM busybox AS tools
RUN echo tool > /tool
FROM busybox
RUN --mount=type=bind,source=data,target=/src cat /src/in > /copied
RUN --mount=type=bind,from=tools,source=/tool,target=/t cp /t /from-stage
RUN --mount=type=bind,source=data,target=/w,rw sh -c 'echo scribble > /w/in && cat /w/in > /rw-ok'
RUN --mount=type=cache,target=/cache sh -c 'echo x >> /cache/count; wc -l < /cache/count > /cache-count'
RUN --mount=type=tmpfs,target=/scratch sh -c 'echo t > /scratch/f && cat /scratch/f > /tmpfs-ok'
RUN --mount=type=secret,id=tok sh -c 'test "$(cat /run/secrets/tok)" = s3cret && touch /secret-ok'
"#;

#[test]
fn run_mounts() {
    require_root!();
    let env = Env::new("bm");
    std::fs::create_dir_all(env.dir.join("data")).unwrap();
    env.write("data/in", "v1\n");
    env.write("secret.txt", "s3cret");
    env.write("Dockerfile", DOCKERFILE);
    let secret = "id=tok,src=secret.txt";
    env.ok(&["build", "-t", "m1", "--secret", secret, "."]);
    let l = layers(&env, "m1");
    assert_eq!(read(&l, "copied").as_deref(), Some("v1\n"));
    assert_eq!(read(&l, "from-stage").as_deref(), Some("tool\n"));
    assert_eq!(read(&l, "rw-ok").as_deref(), Some("scribble\n"));
    assert_eq!(read(&l, "cache-count").unwrap().trim(), "1");
    assert_eq!(read(&l, "tmpfs-ok").as_deref(), Some("t\n"));
    assert!(read(&l, "secret-ok").is_some());
    // Writes to an rw bind are discarded; mount points are not part of any layer.
    assert_eq!(
        std::fs::read_to_string(env.dir.join("data/in")).unwrap(),
        "v1\n"
    );
    for stub in ["src", "t", "w", "cache", "scratch", "run/secrets"] {
        assert!(read(&l, stub).is_none(), "{stub} left in a layer");
    }

    // The cache mount persists across builds; a changed bind source reruns its step only.
    env.write("data/in", "v2\n");
    let out = env.berth(&["build", "-t", "m2", "--secret", secret, "."]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let l = layers(&env, "m2");
    assert_eq!(read(&l, "copied").as_deref(), Some("v2\n"));
    env.ok(&["build", "--no-cache", "-t", "m3", "--secret", secret, "."]);
    let l = layers(&env, "m3");
    assert!(
        read(&l, "cache-count")
            .unwrap()
            .trim()
            .parse::<u32>()
            .unwrap()
            >= 2
    );

    // A required secret that is not given fails the step; an ssh mount is refused.
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=none,required=true true\n",
    );
    let err = env.fails(&["build", "-t", "m4", "."]);
    assert!(err.contains("secret none is required"), "{err}");
    env.write("Dockerfile", "FROM busybox\nRUN --mount=type=ssh true\n");
    let err = env.fails(&["build", "-t", "m5", "."]);
    assert!(err.contains("ssh"), "{err}");
    // A bind source outside the context is refused.
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=source=../..,target=/x true\n",
    );
    let err = env.fails(&["build", "-t", "m6", "."]);
    assert!(err.contains("outside"), "{err}");
}
