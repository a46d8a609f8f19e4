//! `events [--json] [SERVICE...]`: the project's container events as they happen, read from the
//! state root's events log (`engine::events`), until interrupted.
use super::Global;
use super::output;
use super::project::project_name;
use crate::engine::events::{self, Event};
use crate::state::Paths;
use anyhow::Result;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Output events as a stream of json objects.
    #[arg(long)]
    pub json: bool,
    /// Services to follow (all by default).
    pub services: Vec<String>,
}

pub fn events(paths: &Paths, g: &Global, a: &EventsArgs) -> Result<i32> {
    let project = project_name(g)?;
    let mut tail = events::Tail::from_end(&events::path(paths));
    loop {
        for e in tail.poll() {
            if e.project != project || !(a.services.is_empty() || a.services.contains(&e.service)) {
                continue;
            }
            if !output::data_line(&if a.json { json(&e) } else { text(&e) }) {
                return Ok(0);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `{time, type, action, id, service, attributes}`, one object per line.
fn json(e: &Event) -> String {
    serde_json::json!({
        "time": e.time,
        "type": e.kind,
        "action": e.action,
        "id": e.id,
        "service": e.service,
        "attributes": e.attributes,
    })
    .to_string()
}

/// `2024-05-01 10:00:00.123456 container start ID (image=busybox, name=p-web-1)`.
fn text(e: &Event) -> String {
    let time = chrono::DateTime::parse_from_rfc3339(&e.time)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_else(|_| e.time.clone());
    let attrs: Vec<String> = e
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{time} {} {} {} ({})",
        e.kind,
        e.action,
        e.id,
        attrs.join(", ")
    )
}
