//! Network options end to end (root only): ipam (subnet, gateway, ip_range), ipv4_address,
//! mac_address, driver_opts (MTU, bridge name), an external network shared by two projects,
//! network_mode service/host/none, `berth network` commands, unsupported drivers.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod util;

use std::process::Command;
use util::{Env, text};

/// Removes what the test made outside its project, even when it fails.
struct Cleanup<'a> {
    env: &'a Env,
    other: String,
    network: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.env.berth(&[
            "-p",
            &self.other,
            "-f",
            "other/compose.yaml",
            "down",
            "-t",
            "0",
        ]);
        let _ = self
            .env
            .berth(&["-p", &self.env.project, "down", "-t", "0"]);
        let _ = self.env.berth(&["network", "rm", &self.network]);
    }
}

const SRV: &str = r#"image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /w; echo $$N > /w/index.html; httpd -f -p 8080 -h /w & wait"]"#;

#[test]
fn network_options_modes_and_external_networks() {
    require_root!();
    let env = Env::new("netmodes");
    let x = rand::random::<u8>() & 0xfe;
    let tag = format!("{:05x}", rand::random::<u32>() & 0xfffff);
    let (ext, custom) = (format!("10.215.{x}.0/24"), format!("10.215.{}", x + 1));
    let ext_name = format!("bt{tag}ext");
    let bridge = format!("bt{tag}c");
    let _cleanup = Cleanup {
        env: &env,
        other: "netmodesb".into(),
        network: ext_name.clone(),
    };
    env.ok(&["network", "create", "--subnet", &ext, &ext_name]);
    assert!(
        env.ok(&["network", "ls", "-q"])
            .lines()
            .any(|l| l == ext_name)
    );
    let err = env.fails(&["network", "create", "-d", "overlay", "x"]);
    assert!(err.contains("driver \"overlay\" is not supported"), "{err}");

    env.write(
        "compose.yaml",
        &format!(
            r#"services:
  web:
    {SRV}
    environment: {{N: web}}
    mac_address: "02:42:ac:11:00:99"
    networks:
      custom: {{ipv4_address: {custom}.10}}
      ext: {{aliases: [shared-web]}}
  dyn:
    {SRV}
    environment: {{N: dyn}}
    networks: [custom]
  side:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
    network_mode: "service:web"
    depends_on: [web]
  lonely:
    {SRV}
    environment: {{N: lonely}}
    network_mode: none
  hostnet:
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
    network_mode: host
networks:
  ext: {{external: true, name: {ext_name}}}
  custom:
    driver_opts:
      com.docker.network.driver.mtu: "1400"
      com.docker.network.bridge.name: {bridge}
    ipam:
      config:
        - subnet: {custom}.0/24
          gateway: {custom}.254
          ip_range: {custom}.128/25
"#
        ),
    );
    env.ok(&["up", "-d"]);
    let exec = |svc: &str, cmd: &[&str]| {
        let mut args = vec!["exec", svc];
        args.extend(cmd);
        env.ok(&args)
    };

    // ipam, ipv4_address, ip_range, mac_address, MTU and bridge name.
    let web = exec("web", &["ip", "addr"]);
    assert!(web.contains(&format!("inet {custom}.10/24")), "{web}");
    assert!(web.contains("02:42:ac:11:00:99"), "{web}");
    assert!(web.contains("mtu 1400"), "{web}");
    let route = exec("web", &["ip", "route"]);
    assert!(
        route.contains(&format!("default via {custom}.254")),
        "{route}"
    );
    let dyn_addr = exec("dyn", &["ip", "-4", "addr", "show", "eth0"]);
    let last: u8 = dyn_addr
        .split(&format!("inet {custom}."))
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{dyn_addr}"));
    assert!(last > 128, "{dyn_addr}");
    let link = text(
        &Command::new("ip")
            .args(["link", "show", &bridge])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(link.contains("mtu 1400"), "{link}");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["network", "inspect", "netmodes_custom"])).unwrap();
    assert_eq!(
        inspect[0]["IPAM"]["Config"][0]["Gateway"],
        format!("{custom}.254")
    );

    // network_mode: the service's namespace, the host's, none.
    let side = exec("side", &["ip", "addr"]);
    assert!(side.contains(&format!("inet {custom}.10/24")), "{side}");
    let page = exec(
        "side",
        &["timeout", "3", "wget", "-qO-", "http://127.0.0.1:8080/"],
    );
    assert_eq!(page.trim(), "web");
    let host_links = exec("hostnet", &["ip", "link"]);
    assert!(host_links.contains(&bridge), "{host_links}");
    let lonely = exec("lonely", &["ip", "-o", "link"]);
    assert_eq!(lonely.lines().count(), 1, "lo only: {lonely}");

    // A second project on the external network reaches web by its alias and name.
    std::fs::create_dir_all(env.dir.join("other")).unwrap();
    env.write(
        "other/compose.yaml",
        &format!(
            r#"services:
  client:
    {SRV}
    environment: {{N: client}}
    networks: [ext]
networks:
  ext: {{external: true, name: {ext_name}}}
"#
        ),
    );
    let b = ["-p", "netmodesb", "-f", "other/compose.yaml"];
    env.ok(&[&b[..], &["up", "-d"]].concat());
    let got = env.ok(&[
        &b[..],
        &[
            "exec",
            "client",
            "timeout",
            "3",
            "wget",
            "-qO-",
            "http://shared-web:8080/",
        ],
    ]
    .concat());
    assert_eq!(got.trim(), "web");
    let err = env.fails(&["network", "rm", &ext_name]);
    assert!(err.contains("active endpoints"), "{err}");
    env.ok(&[&b[..], &["down", "-t", "0"]].concat());
    env.ok(&["down", "-t", "0"]);
    // External networks outlive the projects that use them.
    assert!(
        env.ok(&["network", "ls", "-q"])
            .lines()
            .any(|l| l == ext_name)
    );
    env.ok(&["network", "rm", &ext_name]);
    assert!(env.ok(&["network", "ls", "-q"]).trim().is_empty());

    // Other drivers fail clearly, before anything is made.
    env.write(
        "compose.yaml",
        &format!("services:\n  a:\n    {SRV}\nnetworks:\n  default: {{driver: macvlan}}\n"),
    );
    let err = env.fails(&["up", "-d"]);
    assert!(err.contains("driver \"macvlan\" is not supported"), "{err}");
}
