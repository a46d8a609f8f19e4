//! The one place that writes to the terminal: data to stdout, everything else to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
use std::io::Write;

/// A line of data (stdout).
pub fn data(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`berth ps | head`) is not an error worth reporting.
    let _ = writeln!(out, "{line}");
}

/// A line for the user (stderr).
pub fn note(line: &str) {
    eprintln!("{line}");
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
}

/// The reporter for `--progress MODE` (`auto`, `tty` and `plain` print plain lines for now).
pub fn progress(mode: &str) -> &'static dyn crate::project::Progress {
    match mode {
        "json" => &Json,
        "quiet" => &crate::project::Quiet,
        _ => &Plain,
    }
}

impl crate::project::Progress for Plain {
    fn event(&self, kind: &str, name: &str, status: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, " {kind} {name}  {status}");
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
