//! `berth config` run as a user runs it: the real binary in a temp project folder, its stdout
//! compared with what docker compose prints.
use std::path::Path;
use std::process::{Command, Output};

fn berth(dir: &Path, root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(dir)
        .env("BERTH_ROOT", root)
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROFILES")
        .output()
        .unwrap()
}

/// A project folder `demo` holding `compose.yaml`, and a state root beside it.
fn project(yaml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("demo");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), yaml).unwrap();
    (d, dir)
}

fn config(dir: &Path, args: &[&str]) -> Result<String, String> {
    let root = dir.parent().unwrap().join("state");
    let mut all = vec!["config"];
    all.extend_from_slice(args);
    let out = berth(dir, &root, &all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

const UNITS: &str = "services:
  web:
    image: nginx
    stop_grace_period: 90s
    mem_limit: 512m
    mem_reservation: 128MiB
    memswap_limit: -1
    mem_swappiness: 60
    shm_size: 64M
    healthcheck:
      test: [CMD, 'true']
      interval: 1m30s
      timeout: 1h
      start_period: 1500ms
      start_interval: 2d
    volumes:
      - type: tmpfs
        target: /cache
        tmpfs:
          size: 10k
    build:
      context: .
      shm_size: 2g
    deploy:
      resources:
        limits:
          memory: 512M
        reservations:
          memory: 128m
      restart_policy:
        delay: 5000ms
        window: 2m
      update_config:
        delay: 60s
        monitor: 0.5s
    blkio_config:
      device_write_bps:
        - path: /dev/sda
          rate: 1mb
";

#[test]
fn durations_and_sizes_print_in_compose_go_canonical_form() {
    let (_d, dir) = project(UNITS);
    let json = config(&dir, &["--format", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let web = &v["services"]["web"];
    // Durations: Go's `time.Duration.String()`.
    assert_eq!(web["stop_grace_period"], "1m30s");
    assert_eq!(web["healthcheck"]["interval"], "1m30s");
    assert_eq!(web["healthcheck"]["timeout"], "1h0m0s");
    assert_eq!(web["healthcheck"]["start_period"], "1.5s");
    assert_eq!(web["healthcheck"]["start_interval"], "48h0m0s");
    assert_eq!(web["deploy"]["restart_policy"]["delay"], "5s");
    assert_eq!(web["deploy"]["restart_policy"]["window"], "2m0s");
    assert_eq!(web["deploy"]["update_config"]["delay"], "1m0s");
    assert_eq!(web["deploy"]["update_config"]["monitor"], "500ms");
    // Sizes: the decimal number of bytes, a string as compose-go's UnitBytes marshals it.
    assert_eq!(web["mem_limit"], "536870912");
    assert_eq!(web["mem_reservation"], "134217728");
    assert_eq!(web["memswap_limit"], "-1");
    assert_eq!(web["mem_swappiness"], "60");
    assert_eq!(web["shm_size"], "67108864");
    assert_eq!(web["build"]["shm_size"], "2147483648");
    assert_eq!(web["volumes"][0]["tmpfs"]["size"], "10240");
    assert_eq!(web["deploy"]["resources"]["limits"]["memory"], "536870912");
    assert_eq!(
        web["deploy"]["resources"]["reservations"]["memory"],
        "134217728"
    );
    assert_eq!(
        web["blkio_config"]["device_write_bps"][0]["rate"],
        "1048576"
    );

    let yaml = config(&dir, &[]).unwrap();
    for line in [
        "    stop_grace_period: 1m30s\n",
        "    mem_limit: \"536870912\"\n",
        "      timeout: 1h0m0s\n",
        "        size: \"10240\"\n",
    ] {
        assert!(yaml.contains(line), "{line:?} missing from\n{yaml}");
    }
    // The canonical form is a fixed point: loading the printed model prints it again.
    std::fs::write(dir.join("compose.yaml"), &yaml).unwrap();
    assert_eq!(config(&dir, &[]).unwrap(), yaml);
}

#[test]
fn a_bad_duration_or_size_points_into_the_file() {
    let (_d, dir) = project(
        "services:\n  web:\n    image: nginx\n    stop_grace_period: '10'\n    mem_limit: 12q\n",
    );
    let err = config(&dir, &[]).unwrap_err();
    assert!(
        err.contains("compose.yaml:4:") && err.contains("services.web.stop_grace_period"),
        "{err}"
    );
    assert!(err.contains("missing unit in duration \"10\""), "{err}");
    assert!(
        err.contains("compose.yaml:5:") && err.contains("services.web.mem_limit"),
        "{err}"
    );
    assert!(err.contains("unknown unit \"q\""), "{err}");
}

/// docker/compose's e2e TestLocalComposeConfigNoConsistency: `--no-consistency` lists the
/// resources of a model that fails validation; `--models` prints the models.
#[test]
fn no_consistency_lists_an_incomplete_model() {
    let (_d, dir) = project(
        "services:\n  incomplete:\n    volumes:\n      - data:/data\n    networks:\n      - internal\n    models:\n      llm:\n  gated:\n    profiles: [\"extra\"]\nvolumes:\n  data:\nnetworks:\n  internal:\nmodels:\n  llm:\n    model: ai/example\n",
    );
    let err = config(&dir, &["--services"]).unwrap_err();
    assert!(
        err.contains("neither an image nor a build context"),
        "{err}"
    );
    let ok = |args: &[&str]| {
        let mut all = vec!["--no-consistency"];
        all.extend_from_slice(args);
        config(&dir, &all).unwrap()
    };
    assert_eq!(ok(&["--services"]), "incomplete\n");
    assert_eq!(ok(&["--volumes"]), "data\n");
    assert!(ok(&["--networks"]).contains("internal\n"));
    assert_eq!(ok(&["--models"]), "ai/example\n");
    assert!(ok(&["--hash", "*"]).starts_with("incomplete "));
    let root = dir.parent().unwrap().join("state");
    let out = berth(
        &dir,
        &root,
        &[
            "--profile",
            "extra",
            "config",
            "--no-consistency",
            "--services",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "gated\nincomplete\n");
}

/// docker/compose's e2e TestUnusedMissingEnvFile: a missing env file stops only what needs
/// its service.
#[test]
fn a_missing_env_file_matters_only_to_its_service() {
    let (_d, dir) = project(
        "services:\n  serviceA:\n    image: nginx:latest\n  serviceB:\n    image: nginx:latest\n    env_file:\n      - /doesnotexist/.env\n",
    );
    let missing = "env file /doesnotexist/.env not found";
    assert!(
        config(&dir, &["--hash", "serviceA"])
            .unwrap()
            .starts_with("serviceA ")
    );
    assert!(config(&dir, &["serviceA"]).is_ok());
    for args in [&["--hash", "serviceB"][..], &["--hash", "*"], &[]] {
        let err = config(&dir, args).unwrap_err();
        assert!(err.contains(missing), "{args:?}: {err}");
    }
    let out = config(&dir, &["--no-env-resolution", "--hash", "serviceB"]).unwrap();
    assert!(out.starts_with("serviceB "), "{out}");
    // Unresolved, the env file stays in the model; resolved, it is left out.
    let out = config(&dir, &["--no-env-resolution"]).unwrap();
    assert!(out.contains("    - path: /doesnotexist/.env\n"), "{out}");
    std::fs::write(dir.join("b.env"), "B=1\n").unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  serviceB:\n    image: nginx:latest\n    env_file: b.env\n",
    )
    .unwrap();
    let out = config(&dir, &[]).unwrap();
    assert!(
        out.contains("      B: \"1\"\n") && !out.contains("env_file"),
        "{out}"
    );
    // A service network without options is `null`, as docker compose prints it.
    assert!(
        out.contains("    networks:\n      default: null\n"),
        "{out}"
    );
}
