//! `berth build` end to end on a busybox base: each result checked through the image store.
mod util;

use berth::engine::image::ImageStore;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use util::Env;

fn config(env: &Env, name: &str) -> (serde_json::Value, Vec<PathBuf>) {
    let store = ImageStore::open(&env.root().join("images")).unwrap();
    let img = store.resolve(name).unwrap();
    let cfg = serde_json::from_slice(&store.blob_bytes(&img.id).unwrap()).unwrap();
    (cfg, img.layers)
}

/// The topmost layer's copy of `path` (tests avoid deleting what they look up).
fn file(layers: &[PathBuf], path: &str) -> Option<PathBuf> {
    layers
        .iter()
        .rev()
        .map(|l| l.join(path))
        .find(|p| p.symlink_metadata().is_ok())
}

fn read(layers: &[PathBuf], path: &str) -> String {
    std::fs::read_to_string(file(layers, path).unwrap()).unwrap()
}

const FEATURES: &str = r#"# syntax=docker/dockerfile:1
ARG VERSION=latest
FROM busybox:$VERSION AS base
ONBUILD RUN echo triggered > /onbuild
ENV A=1 B="two words"
WORKDIR /a
WORKDIR b
WORKDIR c
COPY a.txt sub/ ./
COPY --chmod=600 --chown=1:2 a.txt /etc/copied
RUN echo "pwd=$(pwd) A=$A" > /built
RUN <<EOF
echo heredoc > /h
EOF
FROM base AS child
FROM base
COPY --from=base /built /from-base
ENTRYPOINT ["top","-b"]
CMD ["-c"]
EXPOSE 80 53/udp
VOLUME /data
USER nobody
LABEL l=v
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
"#;

#[test]
fn dockerfile_features_and_cache() {
    require_root!();
    let env = Env::new("build");
    std::fs::create_dir_all(env.dir.join("sub")).unwrap();
    env.write("a.txt", "hello\n");
    env.write("sub/s", "s\n");
    env.write("x.md", "ignored\n");
    env.write(".dockerignore", "*.md\n");
    env.write("Dockerfile", FEATURES);
    let out = env.berth(&["build", "-t", "t1", "-t", "t1:v2", "."]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let (cfg, layers) = config(&env, "t1");
    let c = &cfg["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["top", "-b"]));
    assert_eq!(c["Cmd"], serde_json::json!(["-c"]));
    assert_eq!(c["WorkingDir"], "/a/b/c");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["Labels"]["l"], "v");
    assert_eq!(c["StopSignal"], "SIGINT");
    assert!(c["ExposedPorts"]["80/tcp"].is_object());
    assert!(c["ExposedPorts"]["53/udp"].is_object());
    assert!(c["Volumes"]["/data"].is_object());
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "B=two words")
    );
    // ONBUILD ran in the stage built FROM base, and is not inherited further.
    assert!(c["OnBuild"].is_null());
    assert_eq!(read(&layers, "onbuild"), "triggered\n");
    assert_eq!(read(&layers, "from-base"), "pwd=/a/b/c A=1\n");
    assert_eq!(read(&layers, "h"), "heredoc\n");
    assert!(file(&layers, "a/b/c/a.txt").is_some());
    assert!(file(&layers, "a/b/c/s").is_some());
    let copied = file(&layers, "etc/copied").unwrap().metadata().unwrap();
    assert_eq!(
        (copied.mode() & 0o777, copied.uid(), copied.gid()),
        (0o600, 1, 2)
    );
    assert!(cfg["history"].as_array().unwrap().len() >= 20);

    // An unchanged rebuild reuses everything and gives the same image.
    let id1 = config_id(&env, "t1");
    let q = env.ok(&["build", "-q", "-t", "t1", "."]);
    assert_eq!(q.trim(), id1);
    // An ignored file does not invalidate; a change to a source does.
    env.write("x.md", "changed\n");
    assert_eq!(env.ok(&["build", "-q", "."]).trim(), id1);
    env.write("a.txt", "changed\n");
    assert_ne!(env.ok(&["build", "-q", "."]).trim(), id1);
    // --target builds only what the stage needs.
    let out = env.berth(&["build", "--target", "base", "-t", "t-base", "."]);
    assert!(out.status.success());
    assert!(!util::text(&out.stderr).contains("[3/"));
    assert!(env.ok(&["builder", "prune", "-f"]).contains("Deleted"));
    let left = util::leftovers(env.root(), &[]);
    assert!(left.is_empty(), "{left:?}");
}

fn config_id(env: &Env, name: &str) -> String {
    ImageStore::open(&env.root().join("images"))
        .unwrap()
        .resolve(name)
        .unwrap()
        .id
}

#[test]
fn escape_directive_and_refused_contexts() {
    require_root!();
    let env = Env::new("build2");
    env.write(
        "Dockerfile",
        "# escape=`\nFROM busybox\nRUN echo a `\n  b > /x\n",
    );
    let out = env.berth(&["build", "-t", "esc", "."]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let (_, layers) = config(&env, "esc");
    assert_eq!(read(&layers, "x"), "a b\n");

    std::os::unix::fs::symlink("/etc", env.dir.join("link")).unwrap();
    env.write("Dockerfile", "FROM busybox\nCOPY link/passwd /p\n");
    let err = env.fails(&["build", "."]);
    assert!(
        err.contains("Dockerfile:2:") && err.contains("outside"),
        "{err}"
    );
    env.write("Dockerfile", "FROM busybox\nCOPY ../x /p\n");
    assert!(env.fails(&["build", "."]).contains("outside"));
    env.write("Dockerfile", "FROM busybox\nRUN --network=none false\n");
    assert!(env.fails(&["build", "."]).contains("exit code: 1"));
    env.write("Dockerfile", "FROM busybox\nFORM x\n");
    assert!(
        env.fails(&["build", "."])
            .contains("Dockerfile:2: unknown instruction: FORM")
    );
}

#[test]
fn add_from_loopback_url_and_tar() {
    require_root!();
    let env = Env::new("build3");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nserved");
        }
    });
    let mut ar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    ar.append_data(&mut h, "in-tar", &b"t\n"[..]).unwrap();
    std::fs::write(env.dir.join("a.tar"), ar.into_inner().unwrap()).unwrap();
    env.write(
        "Dockerfile",
        &format!("FROM busybox\nADD http://127.0.0.1:{port}/f.txt /dl/\nADD a.tar /x/\n"),
    );
    let out = env.berth(&["build", "-t", "add", "."]);
    assert!(out.status.success(), "{}", util::text(&out.stderr));
    let (_, layers) = config(&env, "add");
    assert_eq!(read(&layers, "dl/f.txt"), "served");
    assert_eq!(read(&layers, "x/in-tar"), "t\n");
}
