//! The events log: what happened to containers, for `berth events`.
//!
//! berth has no daemon to broadcast events, so whoever acts appends one JSON line to
//! `data/events.jsonl`: the CLI for `create`, `start`, `stop`, `kill`, `pause`, `unpause`,
//! `restart` and `destroy`; the shim for what happens without the CLI: `start` after a restart by
//! policy, `die` and `health_status`. Each line goes out in one `write` on a file opened with
//! `O_APPEND`, so concurrent writers never interleave. Readers follow the file by inode, so a
//! rotation (at 4 MiB the writer that notices renames it to `events.jsonl.1`) is seen.
//! Writing an event is best effort: a full disk never fails the action it describes.
use super::container::ContainerRecord;
use crate::state::Paths;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const FILE: &str = "events.jsonl";
const MAX_SIZE: u64 = 4 << 20;

/// One event, as `docker compose events --json` prints it (plus the project, to filter on).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// RFC 3339 with nanoseconds.
    pub time: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub action: String,
    pub id: String,
    #[serde(default)]
    pub project: String,
    pub service: String,
    pub attributes: BTreeMap<String, String>,
}

pub fn path(paths: &Paths) -> PathBuf {
    paths.data.join(FILE)
}

/// Appends a container event: `name` and `image` attributes plus `extra` (e.g. `exitCode`).
pub fn emit(paths: &Paths, rec: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
    let mut attributes = BTreeMap::from([
        ("name".to_string(), rec.name.clone()),
        ("image".to_string(), rec.image.clone()),
    ]);
    for (k, v) in extra {
        attributes.insert(k.to_string(), v.clone());
    }
    let e = Event {
        time: super::logs::now(),
        kind: "container".into(),
        action: action.into(),
        id: rec.id.clone(),
        project: rec.project().unwrap_or_default().into(),
        service: rec.service().unwrap_or_default().into(),
        attributes,
    };
    let _ = append(&path(paths), &e);
}

fn append(path: &Path, e: &Event) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_SIZE) {
        let _ = std::fs::rename(path, path.with_extension("jsonl.1"));
    }
    let mut line = serde_json::to_vec(e)?;
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(&line)
}

/// Follows the log from its current end: `poll` returns the events appended since.
pub struct Tail {
    path: PathBuf,
    /// The inode and offset read up to.
    at: Option<(u64, u64)>,
}

impl Tail {
    pub fn from_end(path: &Path) -> Tail {
        let at = std::fs::metadata(path).ok().map(|m| (m.ino(), m.len()));
        Tail {
            path: path.to_path_buf(),
            at,
        }
    }

    pub fn poll(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let Ok(current) = std::fs::File::open(&self.path) else {
            return out;
        };
        let Ok(ino) = current.metadata().map(|m| m.ino()) else {
            return out;
        };
        let off = match self.at {
            Some((old, off)) if old != ino => {
                // Rotated: finish the old file, then read the new one from its start.
                let rotated = self.path.with_extension("jsonl.1");
                if let Ok(f) = std::fs::File::open(&rotated)
                    && f.metadata().is_ok_and(|m| m.ino() == old)
                {
                    out.extend(read(f, off).0);
                }
                0
            }
            Some((_, off)) => off,
            None => 0,
        };
        let (events, end) = read(current, off);
        out.extend(events);
        self.at = Some((ino, end));
        out
    }
}

/// The complete lines from `offset`; a line still being written waits for the next poll.
fn read(mut f: std::fs::File, offset: u64) -> (Vec<Event>, u64) {
    let mut out = Vec::new();
    if f.seek(std::io::SeekFrom::Start(offset)).is_err() {
        return (out, offset);
    }
    let mut r = std::io::BufReader::new(f);
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => {
                pos += n as u64;
                if let Ok(e) = serde_json::from_str(&line) {
                    out.push(e);
                }
            }
            _ => break,
        }
    }
    (out, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str) -> Event {
        Event {
            time: "t".into(),
            kind: "container".into(),
            action: action.into(),
            id: "id".into(),
            project: "p".into(),
            service: "s".into(),
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn tail_sees_only_new_events_and_follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        append(&p, &event("old")).unwrap();
        let mut t = Tail::from_end(&p);
        assert!(t.poll().is_empty());
        append(&p, &event("create")).unwrap();
        append(&p, &event("start")).unwrap();
        let got: Vec<String> = t.poll().into_iter().map(|e| e.action).collect();
        assert_eq!(got, ["create", "start"]);
        append(&p, &event("die")).unwrap();
        std::fs::rename(&p, p.with_extension("jsonl.1")).unwrap();
        append(&p, &event("destroy")).unwrap();
        let got: Vec<String> = t.poll().into_iter().map(|e| e.action).collect();
        assert_eq!(got, ["die", "destroy"]);
    }

    #[test]
    fn json_fields_are_docker_composes() {
        let v = serde_json::to_value(event("start")).unwrap();
        for k in ["time", "type", "action", "id", "service", "attributes"] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
