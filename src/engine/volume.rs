//! Named volumes: `<data>/volumes/<name>/_data`, with `volume.json` beside it for labels.
use crate::state::{Paths, StateError, io_err, read_json, write_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeRecord {
    pub name: String,
    pub created: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "invalid volume name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    Name(String),
}

fn check_name(name: &str) -> Result<(), VolumeError> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(VolumeError::Name(name.into()))
    }
}

/// Creates the volume if it does not exist; returns the directory to mount.
pub fn ensure(
    paths: &Paths,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(PathBuf, bool), VolumeError> {
    check_name(name)?;
    let dir = paths.volumes().join(name);
    let data = dir.join("_data");
    let meta = dir.join("volume.json");
    let created = read_json::<VolumeRecord>(&meta)?.is_none();
    if created {
        std::fs::create_dir_all(&data).map_err(io_err(&data))?;
        write_json(
            &meta,
            &VolumeRecord {
                name: name.into(),
                created: super::logs::now(),
                labels: labels.clone(),
            },
        )?;
    }
    Ok((data, created))
}

pub fn remove(paths: &Paths, name: &str) -> Result<bool, VolumeError> {
    check_name(name)?;
    let dir = paths.volumes().join(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StateError::Io {
            path: dir,
            source: e,
        }
        .into()),
    }
}

pub fn list(paths: &Paths) -> Result<Vec<VolumeRecord>, VolumeError> {
    let dir = paths.volumes();
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if let Some(v) = read_json::<VolumeRecord>(&e.path().join("volume.json"))? {
                out.push(v);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_is_idempotent_and_names_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = Paths::new(Some(d.path()));
        let (data, created) = ensure(&p, "proj_site", &BTreeMap::new()).unwrap();
        assert!(created && data.is_dir());
        std::fs::write(data.join("f"), "x").unwrap();
        assert!(!ensure(&p, "proj_site", &BTreeMap::new()).unwrap().1);
        assert!(data.join("f").exists());
        assert!(ensure(&p, "../x", &BTreeMap::new()).is_err());
        assert_eq!(list(&p).unwrap().len(), 1);
        assert!(remove(&p, "proj_site").unwrap());
    }
}
