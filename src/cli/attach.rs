//! Attached `up`: every container's output prefixed `name  | ` in a stable colour, `exited with
//! code N` lines, Ctrl-C stops gracefully, and the CI flags `--abort-on-container-exit`,
//! `--abort-on-container-failure` and `--exit-code-from` with docker compose's exit codes.
use super::output;
use crate::engine::container::{ContainerRecord, Status};
use crate::engine::logs;
use crate::project::Progress;
use crate::state::Paths;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub abort_on_exit: bool,
    pub abort_on_failure: bool,
    /// `--exit-code-from SERVICE`.
    pub exit_code_from: Option<String>,
    pub timeout: Option<Duration>,
    pub color: bool,
    pub prefix: bool,
    /// `--timestamps`: each line starts with the time it was written.
    pub timestamps: bool,
    /// The services whose output is shown (`--attach`, `--no-attach`, `attach: false`, the
    /// services named to `up`); `None` shows every one.
    pub attach: Option<std::collections::BTreeSet<String>>,
    /// The services whose exits are reported and awaited: `up` returns once they have all
    /// exited. Empty means every service.
    pub watch: std::collections::BTreeSet<String>,
    /// What Ctrl-C and an abort stop: the services named to `up` and those depending on them,
    /// as docker compose does (their dependencies keep running); empty means every service.
    pub stop: std::collections::BTreeSet<String>,
    /// docker compose's navigation menu (`d` detaches), on a terminal (`super::menu::wanted`).
    pub menu: bool,
    /// Some service has `develop.watch` (what the menu's `w` says).
    pub watch_configured: bool,
}

impl AttachOptions {
    fn shows(&self, rec: &ContainerRecord) -> bool {
        self.attach
            .as_ref()
            .is_none_or(|a| rec.service().is_some_and(|s| a.contains(s)))
    }
    fn watches(&self, rec: &ContainerRecord) -> bool {
        self.watch.is_empty() || rec.service().is_some_and(|s| self.watch.contains(s))
    }
    /// One output line as docker compose prints it: `name  | ` (unless `--no-log-prefix`),
    /// then the time (`--timestamps`), then the text.
    fn line(&self, prefix: &str, style: &console::Style, r: &logs::Record) -> String {
        let text = r.log.strip_suffix('\n').unwrap_or(&r.log);
        let time = if self.timestamps {
            format!("{} ", fixed_nanos(&r.time))
        } else {
            String::new()
        };
        if self.prefix {
            format!("{}{time}{text}", style.apply_to(prefix))
        } else {
            format!("{time}{text}")
        }
    }
}

/// A record's time with nine fractional digits, as docker compose's `--timestamps` prints
/// (`2024-05-01T10:00:00.120000000Z`).
fn fixed_nanos(time: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        })
        .unwrap_or_else(|_| time.to_string())
}

/// A colour per service, stable across runs (docker compose cycles through a palette too).
fn style_for(service: &str, color: bool) -> console::Style {
    if !color {
        return console::Style::new();
    }
    let palette = [
        console::Color::Cyan,
        console::Color::Yellow,
        console::Color::Green,
        console::Color::Magenta,
        console::Color::Blue,
        console::Color::Red,
    ];
    let i = service
        .bytes()
        .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
    console::Style::new()
        .fg(palette[i % palette.len()])
        .force_styling(true)
}

/// Follows the project's containers until they have all exited, an abort condition holds, or
/// `interrupted` is set. Returns the exit code `up` should end with.
pub fn attach(
    paths: &Paths,
    project: &str,
    opts: &AttachOptions,
    interrupted: &AtomicBool,
    progress: &dyn Progress,
) -> Result<i32> {
    let recs: Vec<ContainerRecord> = crate::project::containers(paths, project)?
        .into_iter()
        .filter(|r| !crate::project::up::is_oneoff(r))
        .collect();
    let width = recs
        .iter()
        .filter(|r| opts.shows(r))
        .map(|r| super::logs::display_name(r).len())
        .max()
        .unwrap_or(0);
    // docker compose's first line: the containers whose output follows, by name.
    let mut shown: Vec<String> = recs
        .iter()
        .filter(|r| opts.shows(r))
        .map(super::logs::display_name)
        .collect();
    shown.sort();
    if !shown.is_empty() {
        output::data(&format!("Attaching to {}", shown.join(", ")));
    }
    // Dropped (the line cleared, the terminal restored) before any return.
    let mut menu = if opts.menu {
        super::menu::Menu::start(opts.watch_configured, opts.color)
    } else {
        None
    };
    if let Some(m) = &mut menu {
        m.draw();
    }
    let watched = recs.iter().filter(|r| opts.watches(r)).count();
    // Each log is followed across rotations (by inode), so a chatty container with a small
    // `max-size` loses no line.
    let mut followers: Vec<Option<logs::Follower>> = recs.iter().map(|_| None).collect();
    let mut read = |i: usize, path: &std::path::Path| -> std::io::Result<Vec<logs::Record>> {
        match &mut followers[i] {
            Some(f) => f.poll(path),
            None => {
                let (records, f) = logs::Follower::start(path)?;
                followers[i] = Some(f);
                Ok(records)
            }
        }
    };
    let mut exited: BTreeMap<String, i32> = BTreeMap::new();
    // The exit (its time) each container last said `exited with code N` for: docker compose
    // says it at every exit, also those a restart policy restarts from.
    let mut said: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut first_exit: Option<i32> = None;
    let abort_on_exit = opts.abort_on_exit || opts.exit_code_from.is_some();
    let mut abort: Option<i32> = None;
    loop {
        // What every container printed and which ones exited since the last look, merged in
        // time order (the records' and the exits' timestamps), as one stream.
        // (time, line, from the container's stderr)
        let mut batch: Vec<(String, String, bool)> = Vec::new();
        let mut exits: Vec<(String, &ContainerRecord, i32)> = Vec::new();
        for (i, rec) in recs.iter().enumerate() {
            let st = rec.state(paths)?;
            let path = rec.dir(paths).join(logs::LOG_FILE);
            let records =
                read(i, &path).with_context(|| format!("reading the logs of {}", rec.name))?;
            let style = style_for(rec.service().unwrap_or_default(), opts.color);
            let prefix = format!("{:<width$}  | ", super::logs::display_name(rec));
            if opts.shows(rec) {
                for r in records {
                    batch.push((
                        r.time.clone(),
                        opts.line(&prefix, &style, &r),
                        r.stream == "stderr",
                    ));
                }
            }
            // An exit the shim will not restart from is final.
            let final_exit =
                st.status == Status::Exited && !crate::sys::proc::alive(st.shim_pid, st.shim_start);
            let code = st.exit_code.unwrap_or(0);
            let time = st.finished_at.clone().unwrap_or_default();
            if st.status == Status::Exited
                && opts.watches(rec)
                && said.get(&rec.name) != Some(&st.finished_at)
            {
                said.insert(rec.name.clone(), st.finished_at.clone());
                let line = style
                    .apply_to(format!(
                        "{} exited with code {code}",
                        super::logs::display_name(rec)
                    ))
                    .to_string();
                batch.push((time.clone(), line, false));
            }
            if final_exit && opts.watches(rec) && !exited.contains_key(&rec.name) {
                exited.insert(rec.name.clone(), code);
                exits.push((time, rec, code));
            }
        }
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        if !batch.is_empty()
            && let Some(m) = &mut menu
        {
            m.clear();
        }
        // As docker compose: what a container wrote to stderr goes to stderr.
        for (_, line, err) in &batch {
            if *err {
                output::note(line);
            } else {
                output::data(line);
            }
        }
        if !batch.is_empty()
            && let Some(m) = &mut menu
        {
            m.draw();
        }
        // `d`: berth exits, the containers run on under their shims.
        if menu
            .as_mut()
            .is_some_and(|m| m.poll() == Some(super::menu::Action::Detach))
        {
            return Ok(0);
        }
        exits.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, _, code) in exits {
            first_exit.get_or_insert(code);
            if abort.is_none() && (abort_on_exit || (opts.abort_on_failure && code != 0)) {
                abort = Some(code);
            }
        }
        let stop_reason = if interrupted.load(Ordering::SeqCst) {
            Some("Gracefully stopping... (press Ctrl+C again to force)")
        } else if abort.is_some() {
            Some("Aborting on container exit...")
        } else {
            None
        };
        if let Some(reason) = stop_reason {
            // The menu goes (and the terminal is as it was) before the stop is reported.
            drop(menu.take());
            output::note(reason);
            let stopping: Vec<ContainerRecord> = recs
                .iter()
                .filter(|r| {
                    opts.stop.is_empty() || r.service().is_some_and(|s| opts.stop.contains(s))
                })
                .cloned()
                .collect();
            stop_all(paths, &stopping, opts.timeout, progress);
            // Collect the output and exit codes of what the stop ended.
            for (i, rec) in recs.iter().enumerate() {
                let path = rec.dir(paths).join(logs::LOG_FILE);
                let style = style_for(rec.service().unwrap_or_default(), opts.color);
                if let Ok(records) = read(i, &path)
                    && opts.shows(rec)
                {
                    let prefix = format!("{:<width$}  | ", super::logs::display_name(rec));
                    for r in records {
                        let line = opts.line(&prefix, &style, &r);
                        if r.stream == "stderr" {
                            output::note(&line);
                        } else {
                            output::data(&line);
                        }
                    }
                }
                // As docker compose, the containers the stop ended say so too.
                if opts.watches(rec)
                    && !exited.contains_key(&rec.name)
                    && let Ok(st) = rec.state(paths)
                    && st.status == Status::Exited
                    && said.get(&rec.name) != Some(&st.finished_at)
                {
                    let code = st.exit_code.unwrap_or(0);
                    output::data(&format!(
                        "{}",
                        style.apply_to(format!(
                            "{} exited with code {code}",
                            super::logs::display_name(rec)
                        ))
                    ));
                }
            }
            if interrupted.load(Ordering::SeqCst) && abort.is_none() {
                return Ok(0);
            }
            return Ok(exit_code(paths, &recs, opts, abort.unwrap_or(0)));
        }
        if exited.len() == watched {
            return Ok(match &opts.exit_code_from {
                Some(_) => exit_code(paths, &recs, opts, 0),
                None => 0,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With `--exit-code-from S`, S's code (143 when the abort stopped it); otherwise `default`.
fn exit_code(paths: &Paths, recs: &[ContainerRecord], opts: &AttachOptions, default: i32) -> i32 {
    let Some(service) = &opts.exit_code_from else {
        return default;
    };
    recs.iter()
        .find(|r| r.service() == Some(service.as_str()))
        .and_then(|r| r.state(paths).ok())
        .and_then(|s| s.exit_code)
        .unwrap_or(default)
}

fn stop_all(
    paths: &Paths,
    recs: &[ContainerRecord],
    timeout: Option<Duration>,
    progress: &dyn Progress,
) {
    std::thread::scope(|s| {
        for rec in recs {
            s.spawn(move || {
                progress.event("Container", &rec.name, "Stopping");
                let grace = crate::engine::runtime::grace(rec, timeout);
                let r = crate::engine::runtime::stop(paths, rec, grace);
                progress.event(
                    "Container",
                    &rec.name,
                    if r.is_ok() { "Stopped" } else { "Error" },
                );
            });
        }
    });
}
