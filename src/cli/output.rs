//! The one place that writes to the terminal: data to stdout, everything else to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// A line of data (stdout).
pub fn data(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`berth ps | head`) is not an error worth reporting.
    let _ = writeln!(out, "{line}");
}

/// A line of data (stdout); false once nobody reads it (a closed pipe), so a stream can end.
pub fn data_line(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// The navigation menu of attached `up` (stdout, a terminal): drawn over the current line,
/// without a line end, or cleared (`None`) so that the next line is printed in its place.
pub fn menu_line(text: Option<&str>) {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\r\x1b[2K{}", text.unwrap_or_default());
    let _ = out.flush();
}

/// A line for the user (stderr).
pub fn note(line: &str) {
    eprintln!("{line}");
}

/// Prints rows as left-aligned columns three spaces apart, as docker's tables (stdout).
pub fn table<const N: usize>(rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        data(line.join("   ").trim_end());
    }
}

/// `error: …`, then each cause as `Caused by:`, then a hint where we have one.
pub fn error(e: &anyhow::Error) {
    let style = console::Style::new().red().bold().for_stderr();
    eprintln!("{} {e}", style.apply_to("error:"));
    let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        eprintln!("\nCaused by:");
        for c in causes {
            eprintln!("  {c}");
        }
    }
    if let Some(h) = hint(e) {
        eprintln!(
            "{} {h}",
            console::Style::new().cyan().for_stderr().apply_to("hint:")
        );
    }
}

fn hint(e: &anyhow::Error) -> Option<String> {
    for c in e.chain() {
        if let Some(ce) = c.downcast_ref::<crate::compose::ComposeError>()
            && let Some(h) = ce.hint()
        {
            return Some(h.to_string());
        }
        if let Some(e) = c.downcast_ref::<crate::engine::registry::RegistryError>()
            && let Some(h) = e.hint()
        {
            return Some(h);
        }
        if let Some(crate::engine::image::ImageError::NotFound { .. }) = c.downcast_ref() {
            return Some(
                "load it with `berth image load -i FILE` (a docker save or OCI archive)".into(),
            );
        }
        let s = c.to_string();
        if s.contains("already allocated") || s.contains("address already in use") {
            return Some(
                "change the published port in the compose file, or stop the process that uses it"
                    .into(),
            );
        }
    }
    None
}

/// Plain progress lines, as `docker compose --progress plain` prints them.
pub struct Plain;

/// `--progress json`: one JSON object per event on stderr.
pub struct Json;

impl crate::project::Progress for Json {
    fn event(&self, kind: &str, name: &str, status: &str) {
        let v = serde_json::json!({"id": name, "type": kind, "status": status});
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{v}");
    }
    fn detail(&self, parent: &str, id: &str, status: &str) {
        let v = serde_json::json!({"id": id, "parent_id": parent, "status": status});
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{v}");
    }
}

/// The reporter for `--progress MODE`: `tty` draws one live line per resource, `auto` does so
/// when stderr is a terminal (and `--ansi` is not `never`, and `TERM` is not `dumb`), else plain
/// lines.
pub fn progress(mode: &str) -> &'static dyn crate::project::Progress {
    match mode {
        "json" => &Json,
        "quiet" => &crate::project::Quiet,
        "tty" | "auto" if LIVE_ENDED.load(Ordering::Relaxed) => &Plain,
        "tty" => live(),
        "auto" if auto_is_tty() => live(),
        _ => &Plain,
    }
}

/// The reporter of this command's `--progress` (see [`set_mode`]), for commands without the
/// global options at hand.
pub fn reporter() -> &'static dyn crate::project::Progress {
    progress(MODE.get().map_or("auto", String::as_str))
}

static MODE: OnceLock<String> = OnceLock::new();
static ANSI_NEVER: AtomicBool = AtomicBool::new(false);

/// Records the global `--progress` and `--ansi` once, at start.
pub fn set_mode(progress: &str, ansi: &str) {
    let _ = MODE.set(progress.to_string());
    ANSI_NEVER.store(ansi == "never", Ordering::Relaxed);
}

fn auto_is_tty() -> bool {
    !ANSI_NEVER.load(Ordering::Relaxed)
        && console::Term::stderr().is_term()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Live progress: one line per resource (`Container p-web-1  Started`), redrawn in place with
/// a spinner while the status is ongoing (`…ing`) and a check mark once it is done.
pub struct Live {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

static LIVE: OnceLock<Live> = OnceLock::new();
/// Set by [`finish`]: what is reported afterwards goes out as plain lines, below the final
/// live lines (attached `up` prints container output next, which a redraw would overwrite).
static LIVE_ENDED: AtomicBool = AtomicBool::new(false);

fn live() -> &'static Live {
    LIVE.get_or_init(|| Live {
        // Drawn through console's Term even when stderr is not a terminal (`--progress tty`).
        multi: MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(
            console::Term::stderr(),
        ))),
        bars: Mutex::new(BTreeMap::new()),
    })
}

fn ongoing(status: &str) -> bool {
    status.ends_with("ing")
}

impl crate::project::Progress for Live {
    fn event(&self, kind: &str, name: &str, status: &str) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let bar = bars
            .entry(format!("{kind} {name}"))
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new_spinner());
                b.set_prefix(format!("{kind} {name}"));
                b
            })
            .clone();
        drop(bars);
        let (template, tick) = if ongoing(status) {
            (" {spinner:.cyan} {prefix}  {msg}", true)
        } else if status == "Error" {
            (" {prefix:.red}  {msg:.red}", false)
        } else {
            (" \u{2714} {prefix}  {msg:.green}", false)
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        if tick {
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
        } else {
            bar.disable_steady_tick();
        }
        bar.set_message(status.to_string());
    }

    /// A line below its parent's (after the parent's other details), indented.
    fn detail(&self, parent: &str, id: &str, status: &str) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let key = format!("{parent}\u{0}{id}");
        let bar = match bars.get(&key) {
            Some(b) => b.clone(),
            None => {
                // The last line of this parent so far: its last detail, else itself.
                let after = bars
                    .range(format!("{parent}\u{0}")..)
                    .take_while(|(k, _)| k.starts_with(&format!("{parent}\u{0}")))
                    .map(|(_, b)| b)
                    .min_by_key(|b| b.elapsed())
                    .or_else(|| bars.get(parent));
                let b = match after {
                    Some(a) => self.multi.insert_after(a, ProgressBar::new_spinner()),
                    None => self.multi.add(ProgressBar::new_spinner()),
                };
                b.set_prefix(format!("  {id}"));
                bars.insert(key, b.clone());
                b
            }
        };
        drop(bars);
        let done = !ongoing(status) && !status.starts_with("Downloading");
        let template = if done {
            "   {prefix}  {msg}"
        } else {
            " {spinner:.cyan} {prefix}  {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        if done {
            bar.disable_steady_tick();
        } else {
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
        }
        bar.set_message(status.to_string());
    }
}

/// Draws the live lines one last time, left on screen; call before the command exits, or
/// before it writes anything else to the terminal.
pub fn finish() {
    LIVE_ENDED.store(true, Ordering::Relaxed);
    if let Some(live) = LIVE.get()
        && let Ok(mut bars) = live.bars.lock()
    {
        let bars = std::mem::take(&mut *bars);
        for b in bars.values() {
            b.disable_steady_tick();
            b.finish();
        }
        if !bars.is_empty() {
            // The cursor stays at the end of the last line: what follows starts on its own.
            eprintln!();
        }
    }
}

impl crate::project::Progress for Plain {
    fn event(&self, kind: &str, name: &str, status: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, " {kind} {name}  {status}");
    }
    fn detail(&self, _parent: &str, id: &str, status: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, " {id}  {status}");
    }
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,libcontainer=off,libcgroups=off")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}
