//! `--format` Go templates of `ps`, `ls`, `images`, `volume ls` and the `inspect`s, as Docker's
//! and docker compose's: fields, `table` with its header row, Docker's functions (`json`,
//! `join`, `upper`, `lower`, …), `printf`, `range` and `if`, and `.Label "key"`.
mod util;
use util::Env;

#[test]
fn go_templates_of_listings_and_inspect() {
    require_root!();
    let env = Env::new("fmt");
    env.write(
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    command: [sleep, \"1000\"]\n    labels: {tier: web}\n    volumes: [data:/data]\nvolumes:\n  data:\n    labels: {tier: db}\n",
    );
    env.ok(&["up", "-d"]);

    // ps
    assert_eq!(
        env.ok(&[
            "ps",
            "--format",
            "{{.Name}} {{.Service}} {{.Label \"tier\"}} {{upper .State}} {{printf \"%s/%s\" .Project .Service}}"
        ]),
        "fmt-app-1 app web RUNNING fmt/app\n"
    );
    let table = env.ok(&["ps", "--format", "table {{.Name}}\\t{{.State}}\\t{{.ID}}"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0] == "NAME        STATE     CONTAINER ID", "{table}");
    assert!(lines[1].starts_with("fmt-app-1   running   "), "{table}");
    assert_eq!(
        env.ok(&[
            "ps",
            "--format",
            "{{json .Publishers}} {{if eq .State \"running\"}}up{{else}}down{{end}}"
        ]),
        "[] up\n"
    );
    let err = env.fails(&["ps", "--format", "{{.Name"]);
    assert!(err.contains("template parsing error"), "{err}");
    let err = env.fails(&["ps", "--format", "{{.Nope}}"]);
    assert!(err.contains("Nope"), "{err}");

    // ls
    assert_eq!(
        env.ok(&["ls", "--format", "{{.Name}}: {{.Status}}"]),
        "fmt: running(1)\n"
    );
    let table = env.ok(&["ls", "--format", "table {{.Name}}\\t{{lower .Status}}"]);
    // The header goes through the template too (as Docker's): `lower` applies to it.
    assert_eq!(table, "NAME      status\nfmt       running(1)\n");

    // images
    let out = env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{len .ID}}"]);
    assert!(out.contains("busybox:latest 12\n"), "{out}");

    // volume ls / inspect
    let table = env.ok(&[
        "volume",
        "ls",
        "--format",
        "table {{.Name}}\\t{{.Label \"tier\"}}",
    ]);
    assert_eq!(table, "VOLUME NAME   TIER\nfmt_data      db\n");
    let out = env.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Name}} {{.Driver}} {{json .Labels}}",
        "fmt_data",
    ]);
    let labels = out.strip_prefix("fmt_data local ").expect(&out);
    let labels: serde_json::Value = serde_json::from_str(labels).unwrap();
    let full: serde_json::Value =
        serde_json::from_str(&env.ok(&["volume", "inspect", "fmt_data"])).unwrap();
    assert_eq!(labels, full[0]["Labels"]);
    assert_eq!(labels["tier"], "db");

    // inspect (containers) and image inspect
    assert_eq!(
        env.ok(&[
            "inspect",
            "-f",
            "{{.Name}} {{.State.Status}} {{range .Mounts}}{{.Destination}} {{end}}{{index .Config.Labels \"tier\"}}",
            "app"
        ]),
        "/fmt-app-1 running /data web\n"
    );
    let out = env.ok(&[
        "image",
        "inspect",
        "--format",
        "{{join .RepoTags \",\"}}",
        "busybox",
    ]);
    assert!(out.contains("busybox:latest"), "{out}");
    // A list printed whole, as Go prints it.
    let out = env.ok(&["image", "inspect", "--format", "{{.RepoTags}}", "busybox"]);
    assert!(
        out.starts_with('[') && out.ends_with("]\n") && !out.contains('"'),
        "{out}"
    );
}
