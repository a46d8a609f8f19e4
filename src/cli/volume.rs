//! `berth volume …` (Docker's volume commands on the state root) and `berth volumes` (docker
//! compose's: the volumes of a project).
use super::Global;
use super::output;
use crate::engine::container::labels;
use crate::engine::volume::{self, VolumeRecord};
use crate::project::anonymous::ANONYMOUS;
use crate::state::Paths;
use anyhow::{Result, bail};
use std::collections::BTreeMap;

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create {
        /// Volume driver name (only local).
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Set metadata for a volume.
        #[arg(long = "label", value_name = "KEY=VAL")]
        labels: Vec<String>,
        /// Set driver specific options (`type`, `device`, `o`: a filesystem mounted on the
        /// volume while containers use it).
        #[arg(short = 'o', long = "opt", value_name = "KEY=VAL")]
        opts: Vec<String>,
        /// Volume name (a random one when left out).
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only display volume names.
        #[arg(short, long)]
        quiet: bool,
        /// Format output: table or json.
        #[arg(long, default_value = "table")]
        format: String,
        /// Provide filter values (`dangling=true`, `label=K[=V]`, `name=X`, `driver=local`).
        #[arg(long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
    /// Display detailed information on one or more volumes (JSON).
    Inspect {
        /// Format the output using a Go template (the JSON array by default).
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more volumes.
    #[command(alias = "remove")]
    Rm {
        /// Do not fail on volumes that do not exist.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused anonymous volumes (`-a`: all unused volumes).
    Prune {
        /// Remove all unused volumes, not just anonymous ones.
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation.
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (`label=K[=V]`, `label!=K[=V]`).
        #[arg(long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct VolumesArgs {
    /// Only display volume names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only the volumes these services' containers mount.
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// One `--filter` of `volume ls` / `volume prune`.
#[derive(Debug, PartialEq)]
enum Filter {
    Dangling(bool),
    /// `label=K` or `label=K=V`; `negate` for `label!=…`.
    Label {
        key: String,
        value: Option<String>,
        negate: bool,
    },
    Name(String),
    Driver(String),
}

impl Filter {
    fn parse(s: &str) -> Result<Filter> {
        let Some((k, v)) = s.split_once('=') else {
            bail!("bad format of filter (expected name=value): {s}");
        };
        let label = |v: &str, negate| {
            let (key, value) = match v.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (v.to_string(), None),
            };
            Filter::Label { key, value, negate }
        };
        Ok(match k {
            "dangling" => match v {
                "true" | "1" => Filter::Dangling(true),
                "false" | "0" => Filter::Dangling(false),
                _ => bail!("invalid filter 'dangling={v}': use true or false"),
            },
            "label" => label(v, false),
            "label!" => label(v, true),
            "name" => Filter::Name(v.into()),
            "driver" => Filter::Driver(v.into()),
            _ => bail!("invalid filter '{k}': use dangling, label, label!, name or driver"),
        })
    }

    fn matches(&self, v: &VolumeRecord, used: bool) -> bool {
        match self {
            Filter::Dangling(d) => *d != used,
            Filter::Label { key, value, negate } => {
                let has = match (v.labels.get(key), value) {
                    (Some(_), None) => true,
                    (Some(have), Some(want)) => have == want,
                    (None, _) => false,
                };
                has != *negate
            }
            // Docker matches names by substring.
            Filter::Name(n) => v.name.contains(n.as_str()),
            Filter::Driver(d) => d == "local",
        }
    }
}

/// Docker groups filters by kind: a volume passes when, for each kind given, one of its
/// values matches (every `label!=` must hold).
fn passes(filters: &[Filter], v: &VolumeRecord, used: bool) -> bool {
    let kind = |f: &Filter| match f {
        Filter::Dangling(_) => 0,
        Filter::Label { negate: false, .. } => 1,
        Filter::Label { negate: true, .. } => 2,
        Filter::Name(_) => 3,
        Filter::Driver(_) => 4,
    };
    (0..5).all(|k| {
        let of_kind: Vec<&Filter> = filters.iter().filter(|f| kind(f) == k).collect();
        if of_kind.is_empty() {
            return true;
        }
        if k == 1 || k == 2 {
            of_kind.iter().all(|f| f.matches(v, used))
        } else {
            of_kind.iter().any(|f| f.matches(v, used))
        }
    })
}

fn parse_filters(filters: &[String]) -> Result<Vec<Filter>> {
    filters.iter().map(|f| Filter::parse(f)).collect()
}

/// `docker volume inspect`'s object.
fn inspect_json(paths: &Paths, v: &VolumeRecord) -> serde_json::Value {
    serde_json::json!({
        // Docker's RFC 3339 to the second.
        "CreatedAt": chrono::DateTime::parse_from_rfc3339(&v.created)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|_| v.created.clone()),
        "Driver": "local",
        "Labels": if v.labels.is_empty() { serde_json::Value::Null } else { serde_json::json!(v.labels) },
        "Mountpoint": volume::data_dir(paths, &v.name),
        "Name": v.name,
        "Options": if v.options.is_empty() { serde_json::Value::Null } else { serde_json::json!(v.options) },
        "Scope": "local",
    })
}

/// A volume as `volume ls --format json` prints it (Docker's field names).
fn row(paths: &Paths, v: &VolumeRecord) -> serde_json::Value {
    let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    serde_json::json!({
        "Availability": "N/A", "Driver": "local", "Group": "N/A",
        "Labels": labels.join(","), "Links": "N/A",
        "Mountpoint": volume::data_dir(paths, &v.name), "Name": v.name,
        "Scope": "local", "Size": "N/A", "Status": "N/A",
    })
}

/// Prints volumes as `volume ls` does: names (`-q`), JSON lines, Docker's table, or a Go
/// template (`table …` adds the header row).
fn print_list(paths: &Paths, list: &[VolumeRecord], quiet: bool, format: &str) -> Result<()> {
    if quiet {
        for v in list {
            output::data(&v.name);
        }
        return Ok(());
    }
    let format = match format.trim() {
        "" | "table" => "table {{.Driver}}\\t{{.Name}}",
        "json" => "{{json .}}",
        f => f,
    };
    let rows: Vec<super::format::Row> = list
        .iter()
        .map(|v| super::format::Row::new(row(paths, v), v.labels.clone()))
        .collect();
    super::format::print(format, &rows, &[("Name", "VOLUME NAME")])
}

fn labels_of(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn volume(paths: &Paths, cmd: VolumeCommand) -> Result<i32> {
    match cmd {
        VolumeCommand::Create {
            driver,
            labels,
            opts,
            name,
        } => {
            if driver != "local" {
                bail!(
                    "create: error looking up volume plugin {driver}: plugin {driver:?} not found"
                );
            }
            let mut labels = labels_of(&labels);
            // As Docker does, a volume created without a name is an anonymous one.
            let name = name.unwrap_or_else(|| {
                labels.insert(ANONYMOUS.into(), String::new());
                crate::state::new_id()
            });
            volume::ensure_with_options(paths, &name, &labels, &labels_of(&opts))?;
            output::data(&name);
        }
        VolumeCommand::Ls {
            quiet,
            format,
            filters,
        } => {
            let filters = parse_filters(&filters)?;
            let used = volume::users(paths)?;
            let list: Vec<VolumeRecord> = volume::list(paths)?
                .into_iter()
                .filter(|v| passes(&filters, v, used.contains_key(&v.name)))
                .collect();
            print_list(paths, &list, quiet, &format)?;
        }
        VolumeCommand::Inspect { format, names } => {
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for name in names {
                match volume::load(paths, &name).ok().flatten() {
                    Some(v) => found.push(inspect_json(paths, &v)),
                    None => missing.push(name),
                }
            }
            if !super::format::print_inspect(format.as_deref(), &found)? {
                output::data(&serde_json::to_string_pretty(&found)?);
            }
            if !missing.is_empty() {
                bail!(
                    "{}",
                    missing
                        .iter()
                        .map(|n| format!("get {n}: no such volume"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
        VolumeCommand::Rm { force, names } => {
            // Waits for an `up`/`run` that is about to mount volumes to have saved its
            // containers, which then count as users.
            let _lock = volume::lock_for_removal(paths)?;
            let used = volume::users(paths)?;
            let mut errors = Vec::new();
            for name in names {
                if volume::load(paths, &name).ok().flatten().is_none() {
                    if !force {
                        errors.push(format!("get {name}: no such volume"));
                    }
                    continue;
                }
                if let Some(ids) = used.get(&name) {
                    errors.push(format!(
                        "remove {name}: volume is in use - [{}]",
                        ids.join(", ")
                    ));
                    continue;
                }
                volume::remove(paths, &name)?;
                output::data(&name);
            }
            if !errors.is_empty() {
                bail!("{}", errors.join("\n"));
            }
        }
        VolumeCommand::Prune {
            all,
            force,
            filters,
        } => {
            let filters = parse_filters(&filters)?;
            if filters.iter().any(|f| !matches!(f, Filter::Label { .. })) {
                bail!("volume prune accepts only label filters (label=K[=V], label!=K[=V])");
            }
            let which = if all { "all" } else { "anonymous" };
            if !force
                && !super::project::ask(&format!(
                    "WARNING! This will remove {which} local volumes not used by at least one container.\nAre you sure you want to continue?"
                ))
            {
                return Ok(0);
            }
            let _lock = volume::lock_for_removal(paths)?;
            let used = volume::users(paths)?;
            let mut deleted = Vec::new();
            let mut reclaimed = 0;
            for v in volume::list(paths)? {
                if used.contains_key(&v.name)
                    || !(all || v.labels.contains_key(ANONYMOUS))
                    || !passes(&filters, &v, false)
                {
                    continue;
                }
                reclaimed += crate::engine::image::dir_size(&volume::data_dir(paths, &v.name));
                volume::remove(paths, &v.name)?;
                deleted.push(v.name);
            }
            if !deleted.is_empty() {
                output::data("Deleted Volumes:");
                for d in &deleted {
                    output::data(d);
                }
                output::data("");
            }
            output::data(&format!(
                "Total reclaimed space: {}",
                super::images::human_size(reclaimed)
            ));
        }
    }
    Ok(0)
}

/// `berth volumes [SERVICE...]`: the volumes labelled with the project; with services, those
/// their containers mount.
pub fn volumes(paths: &Paths, g: &Global, a: &VolumesArgs) -> Result<i32> {
    let project = super::project::project_name(g)?;
    let mut list: Vec<VolumeRecord> = volume::list(paths)?
        .into_iter()
        .filter(|v| v.labels.get(labels::PROJECT) == Some(&project))
        .collect();
    if !a.services.is_empty() {
        let mounted: std::collections::BTreeSet<String> = crate::engine::container::list(paths)?
            .into_iter()
            .filter(|c| {
                c.labels.get(labels::PROJECT) == Some(&project)
                    && c.labels
                        .get(labels::SERVICE)
                        .is_some_and(|s| a.services.contains(s))
            })
            .flat_map(|c| c.mounts.into_iter().filter_map(|m| m.volume))
            .collect();
        list.retain(|v| mounted.contains(&v.name));
    }
    print_list(paths, &list, a.quiet, &a.format)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, labels: &[(&str, &str)]) -> VolumeRecord {
        VolumeRecord {
            name: name.into(),
            created: String::new(),
            options: BTreeMap::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn filters_group_by_kind() {
        let v = rec("proj_data", &[("tier", "db"), ("keep", "")]);
        let f = |s: &[&str]| parse_filters(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert!(passes(&f(&["name=data"]).unwrap(), &v, false));
        assert!(passes(&f(&["name=zz", "name=proj"]).unwrap(), &v, false));
        assert!(!passes(&f(&["name=zz"]).unwrap(), &v, false));
        assert!(passes(
            &f(&["label=tier=db", "label=keep"]).unwrap(),
            &v,
            false
        ));
        assert!(!passes(
            &f(&["label=tier=db", "label=other"]).unwrap(),
            &v,
            false
        ));
        assert!(!passes(&f(&["label!=keep"]).unwrap(), &v, false));
        assert!(passes(&f(&["dangling=true"]).unwrap(), &v, false));
        assert!(!passes(&f(&["dangling=true"]).unwrap(), &v, true));
        assert!(f(&["dangling=maybe"]).is_err());
        assert!(f(&["colour=red"]).is_err());
    }
}
