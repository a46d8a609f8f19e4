//! `berth logs`: the records of the project's containers, filtered (`--since`, `--until`,
//! `--tail`), prefixed with the container name in a stable colour per service on a terminal,
//! and followed across restarts and log rotations until the containers are gone or stopped.
use super::output;
use crate::engine::container::{ContainerRecord, Status};
use crate::engine::logs::{self, Follower, Record};
use crate::project;
use crate::state::Paths;
use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Don't print prefix in logs.
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Produce monochrome output.
    #[arg(long)]
    pub no_color: bool,
    /// Number of lines to show from the end of the logs for each container.
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes).
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes).
    #[arg(long)]
    pub until: Option<String>,
    /// Index of the container if the service has multiple replicas.
    #[arg(long)]
    pub index: Option<u32>,
    /// Services to show (all by default).
    pub services: Vec<String>,
}

/// How to show logs; `up` in attached mode uses the defaults with `follow`.
#[derive(Debug, Default)]
pub struct View {
    pub follow: bool,
    pub timestamps: bool,
    pub no_prefix: bool,
    pub color: bool,
    pub tail: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl View {
    pub fn from_args(a: &LogsArgs) -> Result<View> {
        let now = Utc::now();
        Ok(View {
            follow: a.follow,
            timestamps: a.timestamps,
            no_prefix: a.no_log_prefix,
            color: !a.no_color && color_wanted(),
            tail: match a.tail.as_str() {
                "all" | "-1" => None,
                n => Some(n.parse().map_err(|_| {
                    anyhow!("invalid --tail {n:?}: use a number of lines or \"all\"")
                })?),
            },
            since: a.since.as_deref().map(|s| parse_time(s, now)).transpose()?,
            until: a.until.as_deref().map(|s| parse_time(s, now)).transpose()?,
        })
    }

    fn wants(&self, r: &Record) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Ok(t) = DateTime::parse_from_rfc3339(&r.time) else {
            return false;
        };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

/// Colour only on a terminal, and never with `NO_COLOR` set.
pub fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && console::Term::stdout().features().is_attended()
}

/// RFC 3339 (`2024-05-01T10:00:00Z`, with or without fractions or offset), a Unix timestamp,
/// or a duration before `now` (`10m`, `1h30m`, `42s`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(t.and_utc());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    if let Ok(secs) = s.parse::<f64>()
        && let Some(t) = DateTime::from_timestamp(secs.trunc() as i64, (secs.fract() * 1e9) as u32)
    {
        return Ok(t);
    }
    if let Some(d) = crate::compose::normalize::parse_duration(s)
        && let Ok(d) = chrono::TimeDelta::from_std(d)
    {
        return Ok(now - d);
    }
    bail!(
        "invalid time {s:?}: use RFC 3339 (2024-05-01T10:00:00Z), a Unix timestamp or a duration (10m)"
    )
}

pub fn logs(paths: &Paths, project_name: &str, a: &LogsArgs) -> Result<i32> {
    let view = View::from_args(a)?;
    let list = || -> Result<Vec<ContainerRecord>> {
        Ok(project::containers(paths, project_name)?
            .into_iter()
            .filter(|r| {
                a.index.is_none_or(|i| {
                    r.label(crate::engine::container::labels::NUMBER) == Some(&i.to_string())
                })
            })
            .collect())
    };
    // `-f` also follows the containers made meanwhile (another `up`, a scale), as docker
    // compose does.
    show(paths, list()?, &a.services, &view, None, Some(&list))?;
    Ok(0)
}

/// The palette docker compose cycles through, plain then bright.
const COLORS: [console::Color; 5] = [
    console::Color::Cyan,
    console::Color::Yellow,
    console::Color::Green,
    console::Color::Magenta,
    console::Color::Blue,
];

/// The same colour for a service every time: a hash of its name picks one.
fn service_style(service: &str) -> console::Style {
    let h = service.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let style = console::Style::new()
        .fg(COLORS[(h % 5) as usize])
        .force_styling(true);
    if (h / 5) % 2 == 1 {
        style.bright()
    } else {
        style
    }
}

struct Source {
    rec: ContainerRecord,
    prefix: String,
    follower: Follower,
    done: bool,
}

/// Starts reading a container's log: its source (with the prefix for `width`) and the records
/// already there that `view` wants.
fn source(
    paths: &Paths,
    rec: ContainerRecord,
    view: &View,
    width: usize,
) -> Result<(Source, Vec<Record>)> {
    let prefix = if view.no_prefix {
        String::new()
    } else {
        let p = format!("{:<width$}  | ", display_name(&rec));
        if view.color {
            service_style(rec.service().unwrap_or(&rec.name))
                .apply_to(p)
                .to_string()
        } else {
            p
        }
    };
    // Whether it is over is read before the last records, so none are missed.
    let done = finished(paths, &rec);
    let (records, follower) = Follower::start(&rec.dir(paths).join(logs::LOG_FILE))
        .with_context(|| format!("reading the logs of {}", rec.name))?;
    let records: Vec<Record> = records.into_iter().filter(|r| view.wants(r)).collect();
    Ok((
        Source {
            rec,
            prefix,
            follower,
            done,
        },
        records,
    ))
}

/// Prints the logs of `recs` (of `services`, or all); with `follow`, keeps going until every
/// container is removed or stopped for good (exited with no shim left to restart it), taking
/// in the containers `discover` lists later.
pub fn show(
    paths: &Paths,
    recs: Vec<ContainerRecord>,
    services: &[String],
    view: &View,
    interrupted: Option<&AtomicBool>,
    discover: Option<&dyn Fn() -> Result<Vec<ContainerRecord>>>,
) -> Result<()> {
    let selected = |r: &ContainerRecord| {
        services.is_empty() || r.service().is_some_and(|s| services.iter().any(|x| x == s))
    };
    let recs: Vec<ContainerRecord> = recs.into_iter().filter(|r| selected(r)).collect();
    if let Some(s) = services
        .iter()
        .find(|s| !recs.iter().any(|r| r.service() == Some(s.as_str())))
    {
        bail!("no such service: {s}");
    }
    let mut width = recs
        .iter()
        .map(|r| display_name(r).len())
        .max()
        .unwrap_or(0);
    let mut sources = Vec::new();
    for rec in recs {
        let (src, mut records) = source(paths, rec, view, width)?;
        if let Some(n) = view.tail {
            records.drain(..records.len().saturating_sub(n));
        }
        print(&src, view, &records);
        sources.push(src);
    }
    if !view.follow {
        return Ok(());
    }
    let mut pause = Duration::from_millis(20);
    let mut last_look = std::time::Instant::now();
    while sources.iter().any(|s| !s.done) && !interrupted.is_some_and(|i| i.load(Ordering::SeqCst))
    {
        std::thread::sleep(pause);
        let mut quiet = true;
        // New containers, looked for every 250 ms.
        if let Some(list) = discover
            && last_look.elapsed() >= Duration::from_millis(250)
        {
            last_look = std::time::Instant::now();
            for rec in list()? {
                if !selected(&rec) || sources.iter().any(|s| s.rec.id == rec.id) {
                    continue;
                }
                width = width.max(display_name(&rec).len());
                let (src, records) = source(paths, rec, view, width)?;
                quiet &= records.is_empty();
                print(&src, view, &records);
                sources.push(src);
            }
        }
        for src in sources.iter_mut().filter(|s| !s.done) {
            src.done = finished(paths, &src.rec);
            let records = src
                .follower
                .poll(&src.rec.dir(paths).join(logs::LOG_FILE))
                .with_context(|| format!("reading the logs of {}", src.rec.name))?;
            quiet &= records.is_empty();
            let records: Vec<Record> = records.into_iter().filter(|r| view.wants(r)).collect();
            print(src, view, &records);
        }
        pause = if quiet {
            (pause * 2).min(Duration::from_millis(200))
        } else {
            Duration::from_millis(20)
        };
    }
    Ok(())
}

/// The name docker compose shows in logs: `web-1` for `<project>-web-1`, a `container_name`
/// as it is.
pub fn display_name(rec: &ContainerRecord) -> String {
    if let (Some(project), Some(service), Some(number)) = (
        rec.project(),
        rec.service(),
        rec.label(crate::engine::container::labels::NUMBER),
    ) && rec.name == format!("{project}-{service}-{number}")
    {
        return rec.name[project.len() + 1..].to_string();
    }
    rec.name.clone()
}

/// A container is finished when it was removed, or exited with no shim left that could
/// restart it (a restart policy keeps the shim alive through the backoff).
fn finished(paths: &Paths, rec: &ContainerRecord) -> bool {
    if !rec.dir(paths).join("container.json").exists() {
        return true;
    }
    match rec.state(paths) {
        Ok(st) => st.status != Status::Running && !st.shim_alive(),
        Err(_) => true,
    }
}

fn print(src: &Source, view: &View, records: &[Record]) {
    for r in records {
        let text = r.log.strip_suffix('\n').unwrap_or(&r.log);
        let ts = if view.timestamps {
            format!("{} ", r.time)
        } else {
            String::new()
        };
        output::data(&format!("{}{ts}{text}", src.prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_absolute_unix_or_relative() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = |s: &str| parse_time(s, now).unwrap().to_rfc3339();
        assert_eq!(t("2024-05-01T10:00:00Z"), "2024-05-01T10:00:00+00:00");
        assert_eq!(t("2024-05-01T12:00:00+02:00"), "2024-05-01T10:00:00+00:00");
        assert_eq!(t("2024-05-01T10:00:00"), "2024-05-01T10:00:00+00:00");
        assert_eq!(t("2024-05-01"), "2024-05-01T00:00:00+00:00");
        assert_eq!(t("10m"), "2024-05-01T11:50:00+00:00");
        assert_eq!(t("1h30m"), "2024-05-01T10:30:00+00:00");
        assert_eq!(t("1714564800"), "2024-05-01T12:00:00+00:00");
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn since_and_until_bound_the_records() {
        let rec = |time: &str| Record {
            time: time.into(),
            stream: "stdout".into(),
            log: "x\n".into(),
        };
        let view = View {
            since: Some(parse_time("2024-05-01T10:00:00Z", Utc::now()).unwrap()),
            until: Some(parse_time("2024-05-01T11:00:00Z", Utc::now()).unwrap()),
            ..Default::default()
        };
        assert!(!view.wants(&rec("2024-05-01T09:59:59.999999999Z")));
        assert!(view.wants(&rec("2024-05-01T10:00:00.000000001Z")));
        assert!(!view.wants(&rec("2024-05-01T11:00:00Z")));
    }

    #[test]
    fn a_service_keeps_its_colour() {
        let a = service_style("web").apply_to("x").to_string();
        assert_eq!(a, service_style("web").apply_to("x").to_string());
        assert!(a.starts_with('\u{1b}'));
    }
}
