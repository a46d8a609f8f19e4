//! The service dependency graph: start order, stop order, cycles reported with their path.
use crate::compose::Project;
use petgraph::graphmap::DiGraphMap;

#[derive(Debug, thiserror::Error)]
#[error("dependency cycle detected: {}", path.join(" -> "))]
pub struct CycleError {
    pub path: Vec<String>,
}

/// Services grouped in start order: every service comes after everything it depends on, and
/// the services within one level are independent of each other.
pub fn levels(project: &Project) -> Result<Vec<Vec<String>>, CycleError> {
    let mut g: DiGraphMap<&str, ()> = DiGraphMap::new();
    for (name, svc) in &project.services {
        g.add_node(name.as_str());
        for dep in svc.depends_on.keys() {
            if project.services.contains_key(dep) {
                g.add_edge(dep.as_str(), name.as_str(), ());
            }
        }
    }
    if let Err(c) = petgraph::algo::toposort(&g, None) {
        return Err(CycleError {
            path: cycle_from(&g, c.node_id()),
        });
    }
    let mut level: std::collections::BTreeMap<&str, usize> = Default::default();
    // Longest path from a root gives the level; toposort order makes one pass enough.
    for n in petgraph::algo::toposort(&g, None).unwrap_or_default() {
        let l = g
            .neighbors_directed(n, petgraph::Direction::Incoming)
            .map(|p| level.get(p).copied().unwrap_or(0) + 1)
            .max()
            .unwrap_or(0);
        level.insert(n, l);
    }
    let depth = level.values().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); depth];
    for (n, l) in level {
        out[l].push(n.to_string());
    }
    Ok(out)
}

/// docker compose's check of what a service shares: a service taking another's volumes
/// (`volumes_from: [X]`) or namespaces (`network_mode`, `ipc`, `pid: service:X`) needs a
/// container of X, made by this `up` (`made`; empty means every service) or there already
/// (`exists`). Only `--no-deps` can leave X out; the message is docker compose's.
pub fn missing_shared(
    project: &Project,
    made: &std::collections::BTreeSet<String>,
    exists: impl Fn(&str) -> bool,
) -> Option<String> {
    if made.is_empty() {
        return None;
    }
    let absent = |x: &str| !made.contains(x) && !exists(x);
    for name in made {
        let Some(svc) = project.services.get(name) else {
            continue;
        };
        for from in &svc.volumes_from {
            let from = from
                .strip_suffix(":ro")
                .or_else(|| from.strip_suffix(":rw"))
                .unwrap_or(from);
            if from.starts_with("container:") {
                continue;
            }
            let x = from.strip_prefix("service:").unwrap_or(from);
            if absent(x) {
                return Some(format!(
                    "cannot share volume with service {x}: container missing"
                ));
            }
        }
        for (what, mode) in [
            ("network namespace", &svc.network_mode),
            ("IPC namespace", &svc.ipc),
            ("PID namespace", &svc.pid),
        ] {
            if let Some(x) = mode.as_deref().and_then(|m| m.strip_prefix("service:"))
                && absent(x)
            {
                return Some(format!(
                    "cannot share {what} with service {x}: container missing"
                ));
            }
        }
    }
    None
}

fn cycle_from(g: &DiGraphMap<&str, ()>, start: &str) -> Vec<String> {
    // Walk dependencies from `start` until a node repeats; report that loop.
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let Some(next) = g
            .neighbors_directed(cur, petgraph::Direction::Outgoing)
            .find(|n| reaches(g, n, start) || path.contains(n))
        else {
            return path.iter().map(|s| s.to_string()).collect();
        };
        if let Some(pos) = path.iter().position(|p| *p == next) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|s| s.to_string()).collect();
            cycle.push(next.to_string());
            return cycle;
        }
        path.push(next);
        cur = next;
    }
}

fn reaches(g: &DiGraphMap<&str, ()>, from: &str, to: &str) -> bool {
    petgraph::algo::has_path_connecting(g, from, to, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{DependsOn, Service};

    fn project(edges: &[(&str, &[&str])]) -> Project {
        let mut services = std::collections::BTreeMap::new();
        for (name, deps) in edges {
            let mut s = Service {
                name: name.to_string(),
                ..Default::default()
            };
            for d in *deps {
                s.depends_on.insert(
                    d.to_string(),
                    DependsOn {
                        condition: "service_started".into(),
                        required: true,
                        restart: false,
                    },
                );
            }
            services.insert(name.to_string(), s);
        }
        Project {
            name: "p".into(),
            services,
            ..Default::default()
        }
    }

    #[test]
    fn levels_follow_dependencies() {
        let p = project(&[
            ("web", &["db"]),
            ("db", &[]),
            ("client", &["web"]),
            ("x", &[]),
        ]);
        assert_eq!(
            levels(&p).unwrap(),
            vec![vec!["db", "x"], vec!["web"], vec!["client"]]
        );
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let p = project(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        let e = levels(&p).unwrap_err();
        assert_eq!(e.path.first(), e.path.last());
        assert_eq!(e.path.len(), 4, "{e}");
    }
}
