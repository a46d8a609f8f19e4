//! Anonymous volumes (`- /data`, and the image's `VOLUME`s no mount covers): each gets a volume
//! of its own with a random 64-hex name, labelled `com.docker.volume.anonymous` and with the
//! project (so `down -v` removes it). As docker compose does, a recreated container inherits
//! the anonymous volumes of the one it replaces (same target), so their data survives a
//! config change; a container made afresh (after `down`) gets new ones.
use crate::engine::container::{ContainerRecord, labels};
use crate::engine::volume;
use crate::state::Paths;
use anyhow::Result;
use std::collections::BTreeMap;

/// The label Docker puts on anonymous volumes.
pub const ANONYMOUS: &str = "com.docker.volume.anonymous";

/// Gives `rec`'s anonymous mounts the volumes of `old`'s at the same targets.
pub fn inherit(rec: &mut ContainerRecord, old: &ContainerRecord) {
    for m in rec.mounts.iter_mut().filter(|m| m.anonymous) {
        if let Some(o) = old
            .mounts
            .iter()
            .find(|o| o.anonymous && o.target == m.target && o.volume.is_some())
        {
            m.source = o.source.clone();
            m.volume = o.volume.clone();
        }
    }
}

/// Makes a new volume for every anonymous mount of `rec` that has none (or whose inherited
/// volume is gone).
pub fn ensure(paths: &Paths, rec: &mut ContainerRecord) -> Result<()> {
    let project = rec.project().unwrap_or_default().to_string();
    for m in rec.mounts.iter_mut().filter(|m| m.anonymous) {
        if m.volume.is_some() && m.source.is_dir() {
            continue;
        }
        let name = crate::state::new_id();
        let mut l = BTreeMap::from([(ANONYMOUS.to_string(), String::new())]);
        if !project.is_empty() {
            l.insert(labels::PROJECT.into(), project.clone());
        }
        let (dir, _) = volume::ensure(paths, &name, &l)?;
        m.source = dir;
        m.volume = Some(name);
    }
    Ok(())
}

/// Removes the anonymous volumes of a removed container (`rm -v`).
pub fn remove(paths: &Paths, rec: &ContainerRecord) -> Result<()> {
    for name in rec
        .mounts
        .iter()
        .filter(|m| m.anonymous)
        .filter_map(|m| m.volume.as_deref())
    {
        volume::remove(paths, name)?;
    }
    Ok(())
}
