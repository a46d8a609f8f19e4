//! From a compose service and its image to a container record: names, labels, the process
//! (entrypoint/cmd/env/workdir/user merged with the image config), mounts and the config hash.
use crate::compose::{Project, Service, VolumeType};
use crate::engine::container::{ContainerRecord, Mount, ProcessSpec, PublishedPort, labels};
use crate::engine::image::Image;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("service {service}: {message}")]
    Invalid { service: String, message: String },
}

/// `hello-web-1`, or the service's `container_name`.
pub fn container_name(project: &str, svc: &Service, number: u32) -> String {
    svc.container_name
        .clone()
        .unwrap_or_else(|| format!("{project}-{}-{number}", svc.name))
}

/// Builds the record of replica `number` of `svc`. Volumes are given as resolved host paths:
/// named ones by their compose key; anonymous ones (`- /data`) get theirs when the container is
/// made (`project::anonymous`).
pub fn record(
    project: &Project,
    svc: &Service,
    number: u32,
    image: &Image,
    volume_dirs: &BTreeMap<String, PathBuf>,
) -> Result<ContainerRecord, ServiceError> {
    let invalid = |message: String| ServiceError::Invalid {
        service: svc.name.clone(),
        message,
    };
    let id = crate::state::new_id();
    let name = container_name(&project.name, svc, number);
    let cfg = image.config.config().clone().unwrap_or_default();

    // Docker's rules: a service entrypoint replaces the image's and drops the image's CMD.
    let (entrypoint, cmd) = match (&svc.entrypoint, &svc.command) {
        (Some(e), c) => (e.clone(), c.clone().unwrap_or_default()),
        (None, Some(c)) => (cfg.entrypoint().clone().unwrap_or_default(), c.clone()),
        (None, None) => (
            cfg.entrypoint().clone().unwrap_or_default(),
            cfg.cmd().clone().unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(invalid(
            "no command: the image has neither ENTRYPOINT nor CMD and the service sets neither"
                .into(),
        ));
    }

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in cfg.env().clone().unwrap_or_default() {
        if let Some((k, v)) = e.split_once('=') {
            env.insert(k.into(), v.into());
        }
    }
    for (k, v) in &svc.environment {
        if let Some(v) = v {
            env.insert(k.clone(), v.clone());
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let hostname = svc.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    env.insert("HOSTNAME".into(), hostname.clone());
    if svc.tty {
        // Docker's daemon environment: `TERM=xterm` with a terminal, unless the image or the
        // service sets it.
        env.entry("TERM".into()).or_insert_with(|| "xterm".into());
    }

    let cwd = svc
        .working_dir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    let user = svc
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .unwrap_or_default();
    let (uid, gid) = resolve_user(&user, &image.layers).map_err(invalid)?;
    let additional_gids =
        supplementary_groups(&user, uid, gid, &svc.group_add, &image.layers).map_err(invalid)?;
    let host = super::hostconfig::host_config(project, svc)
        .map_err(|errors| invalid(errors.join("; ")))?;

    let mut mounts = Vec::new();
    for v in svc.volumes.iter().filter(|v| v.kind != VolumeType::Tmpfs) {
        let (source, volume) = match v.kind {
            VolumeType::Bind => (PathBuf::from(v.source.clone().unwrap_or_default()), None),
            VolumeType::Volume if v.source.is_none() => {
                // Its volume is made (or inherited) when the container is (`anonymous`).
                mounts.push(Mount {
                    target: v.target.clone(),
                    read_only: v.read_only,
                    nocopy: v.volume.as_ref().is_some_and(|o| o.nocopy),
                    anonymous: true,
                    ..Default::default()
                });
                continue;
            }
            VolumeType::Volume => {
                let key = v.source.clone().unwrap_or_default();
                let dir = volume_dirs
                    .get(&key)
                    .ok_or_else(|| invalid(format!("undefined volume {key:?}")))?;
                let host_name = project
                    .volumes
                    .get(&key)
                    .and_then(|vol| vol.name.clone())
                    .unwrap_or_else(|| format!("{}_{key}", project.name));
                (dir.clone(), Some(host_name))
            }
            other => {
                return Err(invalid(format!(
                    "{other:?} mount {} is not supported yet",
                    v.target
                )));
            }
        };
        let subpath = v
            .volume
            .as_ref()
            .and_then(|o| o.subpath.clone())
            .filter(|_| volume.is_some());
        if let Some(sub) = &subpath {
            crate::engine::volume::check_subpath(sub)
                .map_err(|e| invalid(format!("{}: {e}", v.target)))?;
        }
        let propagation = v.bind.as_ref().and_then(|b| b.propagation.clone());
        if let Some(p) = &propagation
            && !matches!(
                p.as_str(),
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            )
        {
            return Err(invalid(format!(
                "{}: unknown bind propagation {p:?} (private, rprivate, shared, rshared, slave or rslave)",
                v.target
            )));
        }
        mounts.push(Mount {
            source,
            target: v.target.clone(),
            read_only: v.read_only,
            volume,
            // Docker copies the image's content into a volume's root only.
            nocopy: v.volume.as_ref().is_some_and(|o| o.nocopy) || subpath.is_some(),
            propagation,
            subpath,
            anonymous: false,
        });
    }

    // The image's `VOLUME`s that no mount of the service covers get anonymous volumes, as
    // Docker gives them.
    let mut image_volumes: Vec<&String> = cfg.volumes().iter().flatten().collect();
    image_volumes.sort();
    for target in image_volumes {
        let target = crate::compose::loader::clean_path(std::path::Path::new(target))
            .to_string_lossy()
            .into_owned();
        if !svc.volumes.iter().any(|v| v.target == target) {
            mounts.push(Mount {
                target,
                anonymous: true,
                ..Default::default()
            });
        }
    }

    let mut ports = Vec::new();
    for p in &svc.ports {
        // `::` is every address (IPv4 through DNAT, `[::1]` through the proxy); another IPv6
        // address is served by the shim's proxy only.
        let (host_ip, host_ip6) = match p.host_ip.as_deref() {
            None | Some("") | Some("0.0.0.0") | Some("::") => (None, None),
            Some(ip) => match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(v4)) => (Some(v4), None),
                Ok(std::net::IpAddr::V6(v6)) if p.protocol == "tcp" => (None, Some(v6)),
                Ok(std::net::IpAddr::V6(_)) => {
                    return Err(invalid(format!(
                        "port {}: publishing {} on an IPv6 address is not supported (tcp is)",
                        p.target, p.protocol
                    )));
                }
                Err(_) => {
                    return Err(invalid(format!(
                        "host IP {ip:?} of port {} is not an IP address",
                        p.target
                    )));
                }
            },
        };
        let (host_port, host_port_end) = match p.published.as_deref() {
            None | Some("") => (0, None),
            Some(s) => crate::net::ports::parse_host_ports(s).map_err(|_| {
                invalid(format!(
                    "published port {s:?} of port {} is not a port or a range of ports",
                    p.target
                ))
            })?,
        };
        if !matches!(p.protocol.as_str(), "tcp" | "udp") {
            return Err(invalid(format!(
                "protocol {:?} of port {} is not supported (tcp or udp)",
                p.protocol, p.target
            )));
        }
        ports.push(PublishedPort {
            host_ip,
            host_ip6,
            host_port,
            host_port_end,
            container_port: p.target,
            protocol: p.protocol.clone(),
        });
    }

    let mut all_labels = svc.labels.clone();
    all_labels.insert(labels::PROJECT.into(), project.name.clone());
    all_labels.insert(labels::SERVICE.into(), svc.name.clone());
    all_labels.insert(labels::NUMBER.into(), number.to_string());
    all_labels.insert(labels::ONEOFF.into(), "False".into());
    all_labels.insert(labels::CONFIG_HASH.into(), svc.config_hash());
    all_labels.insert(
        labels::WORKING_DIR.into(),
        project.working_dir.to_string_lossy().into_owned(),
    );
    all_labels.insert(
        labels::CONFIG_FILES.into(),
        project
            .compose_files
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(","),
    );
    all_labels.insert(labels::VERSION.into(), env!("CARGO_PKG_VERSION").into());
    all_labels.insert(labels::IMAGE.into(), image.id.clone());
    all_labels.insert(
        labels::DEPENDS_ON.into(),
        svc.depends_on
            .iter()
            .map(|(k, d)| format!("{k}:{}:{}", d.condition, d.restart))
            .collect::<Vec<_>>()
            .join(","),
    );

    let supervision = super::supervision::from_service(svc, image).map_err(invalid)?;
    Ok(ContainerRecord {
        supervision,
        id,
        name,
        // A built service without `image:` runs `<project>-<service>`.
        image: svc
            .image
            .clone()
            .unwrap_or_else(|| format!("{}-{}", project.name, svc.name)),
        image_id: image.id.clone(),
        created: crate::engine::logs::now(),
        labels: all_labels,
        process: ProcessSpec {
            args,
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd,
            uid,
            gid,
            additional_gids,
        },
        hostname,
        layers: image.layers.clone(),
        mounts,
        networks: Vec::new(),
        ports,
        host,
    })
}

/// Resolves `user[:group]` (names or numbers) through the image's `/etc/passwd` and `/etc/group`.
pub fn resolve_user(user: &str, layers: &[PathBuf]) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = image_file(layers, "etc/passwd");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (
            n,
            lookup(&passwd, |f| f.get(2) == Some(&u))
                .and_then(|f| f.get(3).and_then(|g| g.parse().ok()))
                .unwrap_or(0),
        ),
        Err(_) => {
            let f = lookup(&passwd, |f| f.first() == Some(&u)).ok_or_else(|| {
                format!("unable to find user {u}: no matching entries in passwd file")
            })?;
            let uid = f.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
            let gid = f.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
            (uid, gid)
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = image_file(layers, "etc/group");
                lookup(&group, |f| f.first() == Some(&g))
                    .and_then(|f| f.get(2).and_then(|s| s.parse().ok()))
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?
            }
        },
    };
    Ok((uid, gid))
}

/// The supplementary groups, as runc computes them for Docker: the primary group, the groups
/// `user` is a member of in the image's `/etc/group`, then `group_add` (names resolved there
/// too, or numbers), without duplicates.
pub fn supplementary_groups(
    user: &str,
    uid: u32,
    gid: u32,
    group_add: &[String],
    layers: &[PathBuf],
) -> Result<Vec<u32>, String> {
    let group = image_file(layers, "etc/group");
    let name = match user.split(':').next().unwrap_or("") {
        "" => lookup(&image_file(layers, "etc/passwd"), |f| {
            f.get(2) == Some(&"0")
        })
        .and_then(|f| f.first().map(|s| s.to_string()))
        .unwrap_or_else(|| "root".into()),
        u if u.parse::<u32>().is_ok() => lookup(&image_file(layers, "etc/passwd"), |f| {
            f.get(2).and_then(|s| s.parse::<u32>().ok()) == Some(uid)
        })
        .and_then(|f| f.first().map(|s| s.to_string()))
        .unwrap_or_default(),
        u => u.to_string(),
    };
    let mut out: Vec<u32> = vec![gid];
    let push = |g: u32, out: &mut Vec<u32>| {
        if !out.contains(&g) {
            out.push(g);
        }
    };
    if !name.is_empty() {
        for line in group.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.get(3).is_some_and(|m| m.split(',').any(|m| m == name))
                && let Some(g) = f.get(2).and_then(|s| s.parse().ok())
            {
                push(g, &mut out);
            }
        }
    }
    for g in group_add {
        let n = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&group, |f| f.first() == Some(&g.as_str()))
                .and_then(|f| f.get(2).and_then(|s| s.parse().ok()))
                .ok_or_else(|| format!("group_add: unable to find group {g} in the image"))?,
        };
        push(n, &mut out);
    }
    Ok(out)
}

fn lookup<'a>(text: &'a str, pred: impl Fn(&Vec<&'a str>) -> bool) -> Option<Vec<&'a str>> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| pred(f))
}

/// Reads a file as the container will see it: from the topmost layer that has it.
fn image_file(layers: &[PathBuf], rel: &str) -> String {
    layers
        .iter()
        .rev()
        .map(|l| Path::new(l).join(rel))
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_through_the_image() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:www-data,other\nwww-data:x:33:\n",
        )
        .unwrap();
        let layers = vec![d.path().to_path_buf()];
        assert_eq!(resolve_user("", &layers), Ok((0, 0)));
        assert_eq!(resolve_user("www-data", &layers), Ok((33, 33)));
        assert_eq!(resolve_user("33:staff", &layers), Ok((33, 50)));
        assert_eq!(resolve_user("1000:1000", &layers), Ok((1000, 1000)));
        assert_eq!(
            supplementary_groups("www-data", 33, 33, &["staff".into(), "7".into()], &layers),
            Ok(vec![33, 50, 7])
        );
        assert!(supplementary_groups("", 0, 0, &["nogroup".into()], &layers).is_err());
        assert!(
            resolve_user("nobody", &layers)
                .unwrap_err()
                .contains("unable to find user")
        );
    }
}
