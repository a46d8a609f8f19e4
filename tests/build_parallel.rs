//! Independent stages build at the same time (root only): two stages that each wait for the
//! other to have started, through a shared cache mount, can only finish when run in parallel.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use util::Env;

fn waits_for(me: &str, other: &str) -> String {
    format!(
        "FROM busybox AS {me}\nRUN --mount=type=cache,id=sync,target=/c sh -c 'touch /c/{me}; i=0; while [ ! -e /c/{other} ]; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done; echo {me} > /{me}'\n"
    )
}

#[test]
fn independent_stages_run_in_parallel() {
    require_root!();
    let env = Env::new("bp");
    let df = format!(
        "{}{}FROM busybox\nCOPY --from=left /left /left\nCOPY --from=right /right /right\n",
        waits_for("left", "right"),
        waits_for("right", "left")
    );
    env.write("Dockerfile", &df);
    let out = env.berth(&["build", "-t", "par", "."]);
    let err = util::text(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Each stage's output stays together, in stage order.
    let left = err.find("FROM busybox AS left").unwrap();
    let right = err.find("FROM busybox AS right").unwrap();
    assert!(left < right, "{err}");
    let store = berth::engine::image::ImageStore::open(&env.root().join("images")).unwrap();
    let img = store.resolve("par").unwrap();
    let top = |p: &str| {
        img.layers
            .iter()
            .rev()
            .map(|l| l.join(p))
            .find(|p| p.exists())
    };
    assert_eq!(
        std::fs::read_to_string(top("left").unwrap()).unwrap(),
        "left\n"
    );
    assert_eq!(
        std::fs::read_to_string(top("right").unwrap()).unwrap(),
        "right\n"
    );
    // A fully cached rebuild runs nothing.
    let out = env.ok(&["build", "-q", "-t", "par", "."]);
    assert_eq!(out.trim(), img.id);
}
