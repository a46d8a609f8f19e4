//! The store's lifecycle without a registry: inspect, history, rm, prune and the garbage
//! collection, which keeps what other images and containers use.

mod registry_util;

use std::fs;

use berth::engine::image::{ImageError, ImageStore};
use registry_util::{noise, oci_layout};

#[test]
fn rm_prune_and_gc_keep_what_is_used() {
    let t = tempfile::tempdir().unwrap();
    let containers = t.path().join("containers");
    fs::create_dir_all(&containers).unwrap();
    let s = ImageStore::open(&t.path().join("images")).unwrap();
    let shared = vec![("etc/shared", noise(1, 5000))];
    oci_layout(
        &t.path().join("a"),
        "amd64",
        &[shared.clone(), vec![("a", noise(2, 9000))]],
    );
    oci_layout(
        &t.path().join("b"),
        "amd64",
        &[shared, vec![("b", noise(3, 9000))]],
    );
    let a = s.load_path(&t.path().join("a")).unwrap().remove(0);
    let b = s.load_path(&t.path().join("b")).unwrap().remove(0);
    s.tag(&a, "app:1").unwrap();
    s.tag(&a, "app:2").unwrap();
    s.tag(&b, "other:1").unwrap();
    let img_a = s.resolve("app:1").unwrap();
    let img_b = s.resolve("other:1").unwrap();
    assert_eq!(
        img_a.layers[0], img_b.layers[0],
        "the first layer is shared"
    );

    let info = s.inspect("app:1").unwrap();
    assert_eq!(info["Id"], img_a.id);
    assert_eq!(info["RepoTags"].as_array().unwrap().len(), 2);
    assert_eq!(info["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(s.history("app:1").unwrap()[0].created_by, "berth test");

    // An id with two names needs --force; names go one by one.
    let err = s.remove(&img_a.id, false, &containers).unwrap_err();
    assert!(matches!(err, ImageError::Conflict { .. }), "{err}");
    let r = s.remove("app:1", false, &containers).unwrap();
    assert_eq!(r.untagged, ["docker.io/library/app:1"]);
    assert!(r.deleted.is_empty());
    let r = s.remove("app:2", false, &containers).unwrap();
    assert_eq!(r.deleted, vec![img_a.id.clone()]);
    let freed = s.gc(&containers).unwrap();
    assert!(freed > 9000);
    assert!(!img_a.layers[1].exists(), "a's own layer is gone");
    assert!(
        img_b.layers[0].exists() && img_b.layers[1].exists(),
        "b's layers stay"
    );
    assert!(s.resolve("other:1").is_ok());

    // A container using b keeps it through prune -a; without the container it goes.
    let c = containers.join("c1");
    fs::create_dir_all(&c).unwrap();
    fs::write(
        c.join("container.json"),
        serde_json::json!({"layers": img_b.layers}).to_string(),
    )
    .unwrap();
    let err = s.remove("other:1", false, &containers).unwrap_err();
    assert!(matches!(err, ImageError::Conflict { .. }), "{err}");
    let r = s.prune(true, &containers).unwrap();
    assert!(r.deleted.is_empty());
    assert!(s.resolve("other:1").is_ok());
    fs::remove_dir_all(&c).unwrap();
    let r = s.prune(true, &containers).unwrap();
    assert_eq!(r.deleted, vec![img_b.id.clone()]);
    assert!(s.list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(t.path().join("images/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        fs::read_dir(t.path().join("images/layers"))
            .unwrap()
            .count(),
        0
    );
}
