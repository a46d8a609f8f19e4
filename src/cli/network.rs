//! `berth port` and `berth network …`: published ports of a service, and networks by hand.
use super::Global;
use super::output;
use crate::project::{net_host, network};
use crate::state::Paths;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// The protocol of the private port.
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Index of the container if the service has multiple replicas.
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    pub service: String,
    /// The container port, optionally with `/tcp` or `/udp`.
    pub private_port: String,
}

/// Prints `IP:PORT`, the host address a container port is published on.
pub fn port(paths: &Paths, g: &Global, a: &PortArgs) -> Result<i32> {
    let name = super::project::project_name(g)?;
    let rec = super::project::service_container(paths, &name, &a.service, a.index)?;
    let (port, proto) = match a.private_port.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (a.private_port.as_str(), a.protocol.as_str()),
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("{port:?} is not a port number"))?;
    let st = rec.state(paths)?;
    let Some(i) = rec
        .ports
        .iter()
        .position(|p| p.container_port == port && p.protocol == proto)
    else {
        bail!(
            "no port {port}/{proto} published for service {:?}",
            a.service
        );
    };
    let p = &rec.ports[i];
    let bound = st.ports.get(i).copied().unwrap_or(p.host_port);
    match (p.host_ip6, p.host_ip) {
        (Some(v6), _) => output::data(&format!("[{v6}]:{bound}")),
        (None, ip) => output::data(&format!(
            "{}:{bound}",
            ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
        )),
    }
    Ok(0)
}

#[derive(Debug, clap::Subcommand)]
pub enum NetworkCommand {
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only display network names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a network.
    Create {
        /// Restrict external access to the network.
        #[arg(long)]
        internal: bool,
        /// Network driver (only bridge).
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// Set metadata on a network.
        #[arg(long = "label", value_name = "KEY=VAL")]
        labels: Vec<String>,
        /// Subnet in CIDR format.
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway for the subnet.
        #[arg(long)]
        gateway: Option<String>,
        /// Allocate container addresses from a sub-range.
        #[arg(long)]
        ip_range: Option<String>,
        /// Driver options (com.docker.network.driver.mtu, com.docker.network.bridge.name).
        #[arg(short, long = "opt", value_name = "KEY=VAL")]
        opts: Vec<String>,
        name: String,
    },
    /// Remove one or more networks.
    #[command(alias = "remove")]
    Rm { names: Vec<String> },
    /// Display detailed information on one or more networks (JSON).
    Inspect { names: Vec<String> },
    /// Connect a container to a network.
    Connect {
        /// Add a network-scoped alias for the container.
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// IPv4 address.
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Accepted for compatibility.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove all networks no container uses.
    Prune {
        /// Do not prompt for confirmation (berth never prompts).
        #[arg(short, long)]
        force: bool,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Names of the containers attached to each network.
fn users(paths: &Paths) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in crate::engine::container::list(paths)? {
        for n in &c.networks {
            out.entry(n.network.clone())
                .or_default()
                .push(c.name.clone());
        }
    }
    Ok(out)
}

/// A container by name or id prefix.
fn find_container(paths: &Paths, name: &str) -> Result<crate::engine::container::ContainerRecord> {
    crate::engine::container::list(paths)?
        .into_iter()
        .find(|c| c.name == name || (name.len() >= 4 && c.id.starts_with(name)))
        .with_context(|| format!("no such container: {name}"))
}

pub fn network(paths: &Paths, cmd: NetworkCommand) -> Result<i32> {
    let host = net_host(paths);
    match cmd {
        NetworkCommand::Ls { quiet } => {
            let nets = network::list(paths)?;
            if !quiet {
                output::data(&format!(
                    "{:<30} {:<8} {:<20} {}",
                    "NAME", "DRIVER", "SUBNET", "PROJECT"
                ));
            }
            for r in nets {
                if quiet {
                    output::data(&r.network.name);
                    continue;
                }
                let project = r
                    .labels
                    .get(crate::engine::container::labels::PROJECT)
                    .cloned()
                    .unwrap_or_default();
                output::data(&format!(
                    "{:<30} {:<8} {:<20} {}",
                    r.network.name, "bridge", r.network.subnet, project
                ));
            }
        }
        NetworkCommand::Create {
            internal,
            driver,
            labels,
            subnet,
            gateway,
            ip_range,
            opts,
            name,
        } => {
            if network::load(paths, &name)?.is_some() {
                bail!("network with name {name} already exists");
            }
            let pairs = |v: &[String]| -> BTreeMap<String, String> {
                v.iter()
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap_or((l, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            };
            let compose = crate::compose::Network {
                driver: Some(driver),
                internal,
                driver_opts: pairs(&opts),
                ipam: subnet.is_some().then(|| crate::compose::Ipam {
                    config: vec![crate::compose::IpamPool {
                        subnet,
                        gateway,
                        ip_range,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            };
            let spec = network::NetworkSpec::from_compose(&name, &compose)?;
            let labels = pairs(&labels);
            runtime()?.block_on(network::ensure(paths, &host, &name, &spec, &labels))?;
            output::data(&name);
        }
        NetworkCommand::Rm { names } => {
            let used = users(paths)?;
            for name in names {
                let Some(r) = network::load(paths, &name)? else {
                    bail!("network {name} not found");
                };
                if let Some(c) = used.get(&name) {
                    bail!(
                        "error while removing network: network {name} has active endpoints ({})",
                        c.join(", ")
                    );
                }
                runtime()?.block_on(network::remove(paths, &host, &r.network))?;
                output::data(&name);
            }
        }
        NetworkCommand::Inspect { names } => {
            let used = users(paths)?;
            let mut all = Vec::new();
            for name in names {
                let Some(r) = network::load(paths, &name)? else {
                    bail!("network {name} not found");
                };
                let n = &r.network;
                all.push(serde_json::json!({
                    "Name": n.name,
                    "Driver": "bridge",
                    "Internal": n.internal,
                    "IPAM": {"Config": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}]},
                    "Options": {"com.docker.network.bridge.name": n.bridge},
                    "Labels": r.labels,
                    "Containers": used.get(&n.name).cloned().unwrap_or_default(),
                }));
            }
            output::data(&serde_json::to_string_pretty(&all)?);
        }
        NetworkCommand::Connect {
            aliases,
            ip,
            network: name,
            container,
        } => {
            let Some(r) = network::load(paths, &name)? else {
                bail!("network {name} not found");
            };
            let mut rec = find_container(paths, &container)?;
            runtime()?.block_on(network::connect(
                paths, &host, &mut rec, &r.network, ip, &aliases,
            ))?;
        }
        NetworkCommand::Disconnect {
            force: _,
            network: name,
            container,
        } => {
            let mut rec = find_container(paths, &container)?;
            runtime()?.block_on(network::disconnect(paths, &host, &mut rec, &name))?;
        }
        NetworkCommand::Prune { force: _ } => {
            let used = users(paths)?;
            let mut deleted = Vec::new();
            for r in network::list(paths)? {
                if !used.contains_key(&r.network.name) {
                    runtime()?.block_on(network::remove(paths, &host, &r.network))?;
                    deleted.push(r.network.name);
                }
            }
            if !deleted.is_empty() {
                output::data("Deleted Networks:");
                for d in deleted {
                    output::data(&d);
                }
            }
        }
    }
    Ok(0)
}
