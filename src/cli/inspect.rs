//! `berth inspect`: a container as `docker inspect` shows it (the fields compose users and
//! scripts read: State with Health, Config, HostConfig, Mounts, NetworkSettings).
use crate::engine::container::{ContainerRecord, RestartPolicy, Status};
use crate::engine::{control, logs};
use crate::state::Paths;
use anyhow::Result;
use serde_json::{Value, json};

pub fn container(paths: &Paths, rec: &ContainerRecord) -> Result<Value> {
    let st = rec.state(paths)?;
    let paused = st.status == Status::Running && control::paused(paths, &rec.id);
    let status = if paused { "paused" } else { st.status.as_str() };
    let health = st.health.as_ref().map(|h| {
        json!({
            "Status": h.status.as_str(),
            "FailingStreak": h.failing_streak,
            "Log": h.log.iter().map(|r| json!({
                "Start": r.start,
                "End": r.end,
                "ExitCode": r.exit_code,
                "Output": r.output,
            })).collect::<Vec<_>>(),
        })
    });
    let (policy, retries) = match rec.supervision.restart {
        RestartPolicy::No => ("no", 0),
        RestartPolicy::Always => ("always", 0),
        RestartPolicy::UnlessStopped => ("unless-stopped", 0),
        RestartPolicy::OnFailure { max_retries } => ("on-failure", max_retries),
    };
    let mounts: Vec<Value> = rec
        .mounts
        .iter()
        .map(|m| {
            json!({
                "Type": if m.volume.is_some() { "volume" } else { "bind" },
                "Name": m.volume,
                "Source": m.source,
                "Destination": m.target,
                "Mode": if m.read_only { "ro" } else { "" },
                "RW": !m.read_only,
                "Propagation": "rprivate",
            })
        })
        .collect();
    let mut ports = serde_json::Map::new();
    for (i, p) in rec.ports.iter().enumerate() {
        let host_port = st.ports.get(i).copied().unwrap_or(p.host_port);
        let binding = json!({
            "HostIp": p.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string()),
            "HostPort": host_port.to_string(),
        });
        let key = format!("{}/{}", p.container_port, p.protocol);
        match ports.get_mut(&key).and_then(Value::as_array_mut) {
            Some(list) => list.push(binding),
            None => {
                ports.insert(key, json!([binding]));
            }
        }
    }
    let networks: serde_json::Map<String, Value> = rec
        .networks
        .iter()
        .map(|n| {
            (
                n.network.clone(),
                json!({
                    "IPAddress": n.ip.to_string(),
                    "GlobalIPv6Address": n.ip6.map(|ip| ip.to_string()).unwrap_or_default(),
                    "MacAddress": n.mac.clone().unwrap_or_default(),
                    // Docker's: the addresses asked for, or null.
                    "IPAMConfig": (n.static_ip.is_some() || n.static_ip6.is_some()).then(|| {
                        let mut c = serde_json::Map::new();
                        if let Some(ip) = n.static_ip {
                            c.insert("IPv4Address".into(), ip.to_string().into());
                        }
                        if let Some(ip) = n.static_ip6 {
                            c.insert("IPv6Address".into(), ip.to_string().into());
                        }
                        Value::Object(c)
                    }),
                    "Aliases": n.aliases,
                    "InterfaceName": n.ifname,
                }),
            )
        })
        .collect();
    let healthcheck = rec.supervision.healthcheck.as_ref().map(|h| {
        let ns = |ms: u64| ms.saturating_mul(1_000_000);
        json!({
            "Test": std::iter::once("CMD".to_string()).chain(h.args.iter().cloned()).collect::<Vec<_>>(),
            "Interval": ns(h.interval_ms),
            "Timeout": ns(h.timeout_ms),
            "Retries": h.retries,
            "StartPeriod": ns(h.start_period_ms),
            "StartInterval": ns(h.start_interval_ms),
        })
    });
    let args = &rec.process.args;
    Ok(json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": args.first(),
        "Args": args.get(1..).unwrap_or_default(),
        "State": {
            "Status": status,
            "Running": st.status == Status::Running,
            "Paused": paused,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "Pid": st.pid.unwrap_or(0),
            "ExitCode": st.exit_code.unwrap_or(0),
            "Error": st.error.clone().unwrap_or_default(),
            "StartedAt": st.started_at,
            "FinishedAt": st.finished_at,
            "Health": health,
        },
        "Image": rec.image_id,
        "Name": format!("/{}", rec.name),
        "RestartCount": st.restart_count,
        "LogPath": rec.dir(paths).join(logs::LOG_FILE),
        "HostConfig": {
            "RestartPolicy": {"Name": policy, "MaximumRetryCount": retries},
            "LogConfig": {"Type": "json-file", "Config": {
                "max-size": rec.supervision.logs.max_size.to_string(),
                "max-file": rec.supervision.logs.max_files.to_string(),
            }},
            "Privileged": rec.host.privileged,
            "CapAdd": rec.host.cap_add,
            "CapDrop": rec.host.cap_drop,
            "ReadonlyRootfs": rec.host.read_only,
            "PidMode": rec.host.pid_join.as_deref().unwrap_or(if rec.host.pid_host { "host" } else { "" }),
            "IpcMode": rec.host.ipc_join.as_deref().unwrap_or(if rec.host.ipc_host { "host" } else if rec.host.ipc_shareable { "shareable" } else { "private" }),
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": rec.hostname,
            "Domainname": rec.host.domainname.clone().unwrap_or_default(),
            "User": format!("{}:{}", rec.process.uid, rec.process.gid),
            "Env": rec.process.env,
            "Cmd": args,
            "Image": rec.image,
            "WorkingDir": rec.process.cwd,
            "Labels": rec.labels,
            "StopSignal": rec.host.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
            "Healthcheck": healthcheck,
        },
        "NetworkSettings": {
            // Docker's deprecated top-level copy: the first network's.
            "MacAddress": rec.networks.first().and_then(|n| n.mac.clone()).unwrap_or_default(),
            "Ports": ports,
            "Networks": networks,
        },
    }))
}
