//! Loader behaviour: discovery, env files, project names, merge, extends, include, profiles.
#![allow(clippy::print_stderr)] // skip reasons
use berth::compose::{ComposeError, LoadOptions, Project, load};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::corpus;

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_in(dir: &Path, files: &[&str], vars: &[(&str, &str)]) -> Result<Project, ComposeError> {
    load(&LoadOptions {
        files: files.iter().map(PathBuf::from).collect(),
        working_dir: dir.to_path_buf(),
        env: env(vars),
        ..Default::default()
    })
}

#[test]
fn discovery_walks_up_and_takes_the_override_next_to_the_winner() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "proj/compose.yaml",
        "services:\n  web:\n    image: a\n",
    );
    write(
        d.path(),
        "proj/compose.override.yaml",
        "services:\n  web:\n    image: b\n",
    );
    std::fs::create_dir_all(d.path().join("proj/sub/deeper")).unwrap();
    let p = load_in(&d.path().join("proj/sub/deeper"), &[], &[]).unwrap();
    assert_eq!(p.name, "proj");
    assert_eq!(p.services["web"].image.as_deref(), Some("b"));
    assert_eq!(p.compose_files.len(), 2);
}

#[test]
fn project_name_precedence() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "name: from-file\nservices:\n  web:\n    image: a\n",
    );
    let p = load_in(d.path(), &[], &[]).unwrap();
    assert_eq!(p.name, "from-file");
    let p = load_in(d.path(), &[], &[("COMPOSE_PROJECT_NAME", "from-env")]).unwrap();
    assert_eq!(p.name, "from-env");
    let e = load_in(d.path(), &[], &[("COMPOSE_PROJECT_NAME", "Bad Name")]).unwrap_err();
    assert!(matches!(e, ComposeError::ProjectName { .. }), "{e}");
    let p = load(&LoadOptions {
        project_name: Some("from-flag".into()),
        working_dir: d.path().to_path_buf(),
        env: env(&[("COMPOSE_PROJECT_NAME", "from-env")]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(p.name, "from-flag");
}

#[test]
fn dotenv_compose_file_and_interpolation() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        ".env",
        "COMPOSE_FILE=a.yaml:b.yaml\nTAG=1.2\nPORT=\"8080\"\n",
    );
    write(
        d.path(),
        "a.yaml",
        "services:\n  web:\n    image: nginx:${TAG}\n    ports: [\"${PORT}:80\"]\n    environment: [SHELL_ONLY, FROM_DOTENV=$TAG, UNSET_BARE]\n",
    );
    write(
        d.path(),
        "b.yaml",
        "services:\n  web:\n    ports: [\"9090:90\"]\n",
    );
    let p = load_in(d.path(), &[], &[("SHELL_ONLY", "s"), ("TAG", "shell")]).unwrap();
    let web = &p.services["web"];
    assert_eq!(
        web.image.as_deref(),
        Some("nginx:shell"),
        "the shell wins over .env"
    );
    assert_eq!(web.ports.len(), 2);
    assert_eq!(web.environment["SHELL_ONLY"].as_deref(), Some("s"));
    assert!(!web.environment.contains_key("UNSET_BARE"));
}

#[test]
fn reset_and_override_tags() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web:\n    image: a\n    ports: ['80:80']\n    environment: {A: '1', B: '2'}\n",
    );
    write(
        d.path(),
        "over.yaml",
        "services:\n  web:\n    ports: !reset []\n    environment: !override {C: '3'}\n",
    );
    let p = load_in(d.path(), &["compose.yaml", "over.yaml"], &[]).unwrap();
    let web = &p.services["web"];
    assert!(web.ports.is_empty());
    assert_eq!(web.environment.len(), 1);
    assert_eq!(web.environment["C"].as_deref(), Some("3"));
}

#[test]
fn profiles() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web:\n    image: a\n  debug:\n    image: b\n    profiles: [dev]\n  needs-debug:\n    image: c\n    profiles: [x]\n    depends_on: [debug]\n",
    );
    let p = load_in(d.path(), &[], &[]).unwrap();
    assert_eq!(p.services.keys().collect::<Vec<_>>(), vec!["web"]);
    assert_eq!(p.all_profiles(), vec!["dev", "x"]);
    let p = load_in(d.path(), &[], &[("COMPOSE_PROFILES", "dev")]).unwrap();
    assert!(p.services.contains_key("debug"));
    let e = load_in(d.path(), &[], &[("COMPOSE_PROFILES", "x")]).unwrap_err();
    assert!(e.to_string().contains("profile is not active"), "{e}");
    // Naming a service enables it and what it depends on.
    let p = load(&LoadOptions {
        working_dir: d.path().to_path_buf(),
        enabled_services: vec!["needs-debug".into()],
        ..Default::default()
    })
    .unwrap();
    assert!(p.services.contains_key("needs-debug") && p.services.contains_key("debug"));
}

#[test]
fn dependency_cycle_names_its_path() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
    );
    let e = load_in(d.path(), &[], &[]).unwrap_err();
    assert!(e.to_string().contains("a -> b -> a"), "{e}");
}

#[test]
fn self_dependency_is_a_cycle_as_compose_go_words_it() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x\n    depends_on: [a]\n",
    );
    let e = load_in(d.path(), &[], &[]).unwrap_err();
    assert!(
        e.to_string().contains("dependency cycle detected: a -> a"),
        "{e}"
    );
}

#[test]
fn a_disabled_profile_breaks_a_dependency_cycle() {
    // compose-go applies profiles before its consistency checks: a cycle through a service
    // whose profile is off is no cycle; with the profile on, it is.
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x\n    depends_on:\n      b:\n        condition: service_started\n        required: false\n  b:\n    image: x\n    profiles: [debug]\n    depends_on: [a]\n",
    );
    let p = load_in(d.path(), &[], &[]).unwrap();
    assert!(p.disabled_services.contains_key("b"));
    let e = load(&LoadOptions {
        working_dir: d.path().to_path_buf(),
        profiles: vec!["debug".into()],
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("dependency cycle detected"), "{e}");
}

#[test]
fn an_empty_model_is_an_error_but_an_empty_last_file_is_not() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "empty.yaml", "# comments only\n");
    write(d.path(), "version.yaml", "version: '3.8'\n");
    write(d.path(), "compose.yaml", "services:\n  a:\n    image: x\n");
    for f in ["empty.yaml", "version.yaml"] {
        let e = load_in(d.path(), &[f], &[]).unwrap_err();
        assert!(e.to_string().contains("empty compose file"), "{f}: {e}");
    }
    let p = load_in(d.path(), &["compose.yaml", "empty.yaml"], &[]).unwrap();
    assert!(p.services.contains_key("a"));
}

#[test]
fn compose_env_files_stands_for_env_file() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), ".env", "TAG=from-dotenv\n");
    write(d.path(), "one.env", "TAG=from-one\nOTHER=o\n");
    write(d.path(), "two.env", "TAG=from-two\n");
    write(
        d.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x:${TAG}-${OTHER:-none}\n",
    );
    let image = |vars: &[(&str, &str)]| {
        load_in(d.path(), &["compose.yaml"], vars).unwrap().services["a"]
            .image
            .clone()
            .unwrap()
    };
    assert_eq!(image(&[]), "x:from-dotenv-none");
    // Like repeated --env-file: later files win, and .env is not read.
    assert_eq!(
        image(&[("COMPOSE_ENV_FILES", "one.env,two.env")]),
        "x:from-two-o"
    );
    // --env-file wins over COMPOSE_ENV_FILES.
    let p = load(&LoadOptions {
        files: vec!["compose.yaml".into()],
        working_dir: d.path().to_path_buf(),
        env: env(&[("COMPOSE_ENV_FILES", "two.env")]),
        env_files: vec!["one.env".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(p.services["a"].image.as_deref(), Some("x:from-one-o"));
}

#[test]
fn compose_go_consistency_checks() {
    // Each model is one that compose-go's checkConsistency rejects; berth must too.
    let cases = [
        (
            "services:\n  a:\n    build:\n      context: .\n      dockerfile: Dockerfile\n      dockerfile_inline: FROM busybox\n",
            "mutually exclusive dockerfile and dockerfile_inline",
        ),
        (
            "services:\n  a:\n    build:\n      context: .\n      additional_contexts:\n        base: service:nope\n",
            "unknown service \"nope\" as additional context base",
        ),
        (
            "services:\n  a:\n    build:\n      context: .\n      additional_contexts:\n        base: service:b\n  b:\n    image: x\n",
            "non-buildable service \"b\"",
        ),
        (
            "services:\n  a:\n    platform: linux/riscv64\n    build:\n      context: .\n      platforms: [linux/amd64]\n",
            "service.build.platforms MUST include service.platform \"linux/riscv64\"",
        ),
        (
            "services:\n  a:\n    build:\n      context: .\n      secrets: [nope]\n",
            "undefined build secret \"nope\"",
        ),
        (
            "services:\n  a:\n    image: x\n    healthcheck:\n      test: [curl, localhost]\n",
            "healthcheck.test must start with",
        ),
        (
            "services:\n  a:\n    image: x\n    develop:\n      watch:\n        - path: ./src\n          action: sync\n",
            "target is required for the \"sync\" action",
        ),
        (
            "services:\n  a:\n    image: x\n    models: [llm]\n",
            "undefined model \"llm\"",
        ),
        (
            "services:\n  a:\n    image: x\n    scale: -1\n",
            "scale must be greater than or equal to 0",
        ),
        (
            "services:\n  a:\n    image: x\n    mem_reservation: 1g\n    deploy:\n      resources:\n        reservations:\n          memory: 512m\n",
            "mem_reservation (1073741824) and deploy.resources.reservations.memory (536870912) differ",
        ),
        (
            "services:\n  a:\n    image: x\n    pids_limit: 10\n    deploy:\n      resources:\n        limits:\n          pids: 20\n",
            "pids_limit (10) and deploy.resources.limits.pids (20) differ",
        ),
        (
            "services:\n  a:\n    image: x\n    tmpfs: [/data]\n    volumes: [/data]\n",
            "duplicate mount target \"/data\"",
        ),
        (
            "services:\n  a:\n    image: x\nsecrets:\n  s:\n    name: s\n",
            "secrets.s: one of file|environment must be set",
        ),
        (
            "services:\n  a:\n    image: x\nconfigs:\n  c:\n    file: ./c\n    content: hi\n",
            "configs.c: file|environment|content attributes are mutually exclusive",
        ),
        (
            "services:\n  a:\n    image: x\nvolumes:\n  v:\n    external: true\n    labels: [a=b]\n",
            "volumes.v: conflicting parameters \"external\" and \"labels\" specified",
        ),
        (
            "services:\n  a:\n    image: x\n    ports:\n      - target: 80\n        host_ip: 999.1.1.1\n",
            "invalid ip address: 999.1.1.1",
        ),
        (
            "services:\n  a:\n    image: x\n    develop:\n      watch:\n        - path: ''\n          action: rebuild\n",
            "value can't be blank",
        ),
        (
            "services:\n  a:\n    image: x\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - capabilities: [gpu]\n              count: 1\n              device_ids: ['0']\n",
            "\"count\" and \"device_ids\" attributes are exclusive",
        ),
        (
            "services:\n  a:\n    image: x\n    depends_on:\n      nope:\n        condition: service_started\n        required: false\n",
            "depends on undefined service \"nope\"",
        ),
    ];
    let shared = "services:\n  a:\n    image: x\n    container_name: same\n  b:\n    image: x\n    container_name: same\n";
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "compose.yaml", shared);
    let e = load_in(d.path(), &[], &[]).unwrap_err().to_string();
    assert!(
        e.contains("container name \"same\" is already in use by service a"),
        "{e}"
    );
    // `up b` acts on b alone, which may use the name (docker compose's e2e
    // TestUpContainerNameConflict).
    let p = load(&LoadOptions {
        working_dir: d.path().to_path_buf(),
        enabled_services: vec!["b".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(p.services["b"].container_name.as_deref(), Some("same"));
    for (yaml, want) in cases {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "compose.yaml", yaml);
        let e = load_in(d.path(), &[], &[]).unwrap_err().to_string();
        assert!(e.contains(want), "{yaml}\nwanted {want:?}, got: {e}");
    }
    // What the checks must let through (an external network's driver is ignored, as docker
    // compose ignores it).
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  a:\n    platform: linux/amd64\n    build:\n      context: .\n      platforms: [linux/amd64]\n      additional_contexts:\n        base: service:b\n    healthcheck:\n      test: curl localhost\n    develop:\n      watch:\n        - path: ./src\n          action: rebuild\n  b:\n    build: .\nsecrets:\n  s:\n    external: true\nconfigs:\n  c:\n    external: true\nvolumes:\n  v:\n    external: true\n    name: the-volume\nnetworks:\n  n:\n    external: true\n    driver: bridge\n",
    );
    load_in(d.path(), &[], &[]).unwrap();
}

#[test]
fn implicit_dependencies_and_default_network() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "compose.yaml",
        "services:\n  db:\n    image: x\n  app:\n    image: x\n    network_mode: service:db\n    volumes_from: [db:ro]\n",
    );
    let p = load_in(d.path(), &[], &[]).unwrap();
    let app = &p.services["app"];
    assert!(app.depends_on["db"].restart);
    assert!(app.networks.is_empty());
    assert!(p.services["db"].networks.contains_key("default"));
}

#[test]
fn extends_from_another_file_resolves_its_paths_there() {
    let Some(root) = corpus() else {
        return;
    };
    let dir = root.join("compose-go/loader/testdata");
    let p = load_in(&dir, &["compose-test-extends.yaml"], &[("SOURCE", "src")]).unwrap();
    let svc = &p.services["importer"];
    assert_eq!(svc.image.as_deref(), Some("nginx"));
    assert_eq!(svc.container_name.as_deref(), Some("src"));
    // subdir/extra.env is read relative to the extended file, not the extending one.
    assert!(svc.env_file[0].path.ends_with("subdir/extra.env"));
    assert!(!svc.environment.is_empty());
}

#[test]
fn extends_with_reset() {
    let Some(root) = corpus() else {
        return;
    };
    let dir = root.join("compose-go/loader/testdata/extends");
    let p = load_in(&dir, &["reset.yaml"], &[]).unwrap();
    assert_eq!(p.services["base"].image.as_deref(), Some("alpine:latest"));
    assert_eq!(p.services["base"].command, None);
}

#[test]
fn include_loads_its_own_project() {
    let Some(root) = corpus() else {
        return;
    };
    let dir = root.join("compose-go/loader/testdata");
    let p = load_in(&dir, &["compose-include.yaml"], &[]).unwrap();
    assert!(p.services.contains_key("imported"));
    assert!(p.services.contains_key("bar"));
    let env_file = &p.services["imported"].env_file[0].path;
    assert!(env_file.ends_with("subdir/extra.env"), "{env_file}");
    let p = load_in(&dir, &["include/project-directory.yaml"], &[]).unwrap();
    assert!(!p.services["service"].environment.is_empty());
}

#[test]
fn include_cycle_is_an_error() {
    let Some(root) = corpus() else {
        return;
    };
    let dir = root.join("compose-go/loader/testdata");
    let e = load_in(&dir, &["compose-include-cycle.yaml"], &[]).unwrap_err();
    // compose-go's TestLoadWithIncludeCycle checks this prefix.
    assert!(e.to_string().contains("include cycle detected"), "{e}");
}

#[test]
fn real_world_override_sets_load_together() {
    let Some(root) = corpus() else {
        return;
    };
    let frappe = root.join("real-world/frappe_docker");
    type Set<'a> = (&'a Path, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let sets: &[Set] = &[
        (
            &frappe,
            &[
                "compose.yaml",
                "overrides/compose.mariadb.yaml",
                "overrides/compose.redis.yaml",
                "overrides/compose.noproxy.yaml",
            ],
            &[],
        ),
        (
            &frappe,
            &["compose.yaml", "overrides/compose.backup-cron.yaml"],
            &[],
        ),
    ];
    for (dir, files, vars) in sets {
        if let Err(e) = load_in(dir, files, vars) {
            panic!("{files:?}: {e}");
        }
    }
}
