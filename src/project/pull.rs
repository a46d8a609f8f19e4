//! Compose images: `pull_policy`, `up --pull/--build/--no-build`, and pulling or pushing a
//! project's service images (`berth pull`, `berth push` in a project folder).
//!
//! The one decision to know: whether to pull or build is a pure function of the policy, what
//! the store holds and when the image was last pulled ([`decide`]); `up` applies its answer
//! for every service before anything is created, so a failed pull or build leaves nothing
//! half-made.
use super::Progress;
use super::build::{self, Events, Overrides, image_name};
use crate::compose::{Project, Service};
use crate::engine::image::{Image, ImageError, ImageStore};
use crate::engine::registry::{self, Platform, RegistryConfig};
use crate::state::Paths;
use anyhow::{Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// A service's `pull_policy` (or `up --pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Never,
    Missing,
    /// Build the image, always (the service must have a build section).
    Build,
    /// Pull when missing or last pulled longer ago than this (`daily`, `weekly`, `every_12h`).
    Every(Duration),
}

impl PullPolicy {
    pub fn parse(s: &str) -> Result<PullPolicy, String> {
        Ok(match s {
            "always" => PullPolicy::Always,
            "never" => PullPolicy::Never,
            "missing" | "if_not_present" => PullPolicy::Missing,
            "build" => PullPolicy::Build,
            "daily" => PullPolicy::Every(Duration::from_secs(86_400)),
            "weekly" => PullPolicy::Every(Duration::from_secs(7 * 86_400)),
            _ => match s.strip_prefix("every_").map(parse_duration) {
                Some(Some(d)) if !d.is_zero() => PullPolicy::Every(d),
                _ => {
                    return Err(format!(
                        "invalid pull_policy {s:?}: expected always, never, missing, build, \
                         daily, weekly or every_<duration> (e.g. every_12h)"
                    ));
                }
            },
        })
    }
}

/// `1w2d3h4m5s`, `90m`, `500ms`: a sum of numbers with units.
fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        let secs = |k: u64| Duration::from_secs(n.checked_mul(k)?.min(u64::MAX / 2)).into();
        let d: Option<Duration> = match &rest[digits..unit_end] {
            "ms" => Some(Duration::from_millis(n)),
            "s" => secs(1),
            "m" => secs(60),
            "h" => secs(3600),
            "d" => secs(86_400),
            "w" => secs(7 * 86_400),
            _ => None,
        };
        total = total.checked_add(d?)?;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// `up --build` / `--no-build`, or neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuildMode {
    /// Build services whose image is missing (or whose policy is `build`).
    #[default]
    Missing,
    Always,
    Never,
}

/// What to do for one service's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    UseLocal,
    Pull,
    Build,
}

/// Decides between the local image, a pull and a build. `present` is whether the store has
/// the image; `last_pulled` when berth last pulled it.
pub fn decide(
    policy: PullPolicy,
    has_build: bool,
    mode: BuildMode,
    present: bool,
    last_pulled: Option<SystemTime>,
    now: SystemTime,
) -> Result<Decision, String> {
    if has_build {
        match mode {
            BuildMode::Always => return Ok(Decision::Build),
            BuildMode::Missing if policy == PullPolicy::Build || !present => {
                return Ok(Decision::Build);
            }
            BuildMode::Never if !present && policy == PullPolicy::Build => {
                return Err("its image is missing and --no-build forbids building it".into());
            }
            _ => {}
        }
    } else if policy == PullPolicy::Build {
        return Err("pull_policy build needs a build section".into());
    }
    Ok(match policy {
        PullPolicy::Always => Decision::Pull,
        PullPolicy::Never | PullPolicy::Build if present => Decision::UseLocal,
        PullPolicy::Never | PullPolicy::Build => {
            return Err("its image is missing and pull_policy never forbids pulling it".into());
        }
        PullPolicy::Missing => {
            if present {
                Decision::UseLocal
            } else {
                Decision::Pull
            }
        }
        PullPolicy::Every(d) => {
            let stale = last_pulled.is_none_or(|t| now.duration_since(t).unwrap_or_default() >= d);
            if present && !stale {
                Decision::UseLocal
            } else {
                Decision::Pull
            }
        }
    })
}

/// The service's own policy; `up --pull` wins over it.
pub fn service_policy(svc: &Service, cli: Option<PullPolicy>) -> Result<PullPolicy> {
    if let Some(p) = cli {
        return Ok(p);
    }
    match svc.pull_policy.as_deref() {
        None => Ok(PullPolicy::Missing),
        Some(s) => PullPolicy::parse(s).map_err(|e| anyhow!("service {:?}: {e}", svc.name)),
    }
}

/// How `up` gets images.
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// `up --pull`.
    pub pull: Option<PullPolicy>,
    pub build: BuildMode,
    /// The services whose images are wanted (`up SERVICE...` with their dependencies);
    /// empty means every service. The others are neither resolved, pulled nor built.
    pub services: BTreeSet<String>,
}

fn platform(svc: &Service) -> Result<Option<Platform>> {
    svc.platform
        .as_deref()
        .map(Platform::parse)
        .transpose()
        .map_err(|e| anyhow!("service {:?}: {e}", svc.name))
}

/// Resolves, pulls or builds the images of the selected services (all when none are
/// selected), as their policies say; returns the images by service.
pub async fn ensure_images(
    paths: &Paths,
    project: &Project,
    store: &ImageStore,
    opts: &ImageOptions,
    progress: &dyn Progress,
) -> Result<BTreeMap<String, Image>> {
    let mut images = BTreeMap::new();
    for (name, svc) in &project.services {
        if !opts.services.is_empty() && !opts.services.contains(name) {
            continue;
        }
        let reference = image_name(project, svc);
        let context = || format!("service {name:?} refers to image {reference:?}");
        let policy = service_policy(svc, opts.pull)?;
        let local = match store.resolve(&reference) {
            Ok(image) => Some(image),
            Err(ImageError::NotFound { .. }) => None,
            Err(e) => return Err(anyhow!(e).context(context())),
        };
        let last = store.last_pulled(&reference).unwrap_or(None);
        let decision = decide(
            policy,
            svc.build.is_some(),
            opts.build,
            local.is_some(),
            last,
            SystemTime::now(),
        )
        .map_err(|e| anyhow!("service {name:?}: {e}"))?;
        // A built service without `image:` has nothing to pull: its local image, or a build.
        let decision = match (decision, svc.image.is_some(), local.is_some()) {
            (Decision::Pull, false, true) => Decision::UseLocal,
            (Decision::Pull, false, false) if opts.build != BuildMode::Never => Decision::Build,
            (d, ..) => d,
        };
        let build_it = || -> Result<Image> {
            progress.event("Image", &reference, "Building");
            let rep = Events {
                progress,
                service: name,
            };
            build::build_service(paths, project, svc, &Overrides::default(), &rep)?;
            progress.event("Image", &reference, "Built");
            store
                .resolve(&reference)
                .map_err(|e| anyhow!(e).context(context()))
        };
        let image = match (decision, local) {
            (Decision::UseLocal, Some(image)) => image,
            (Decision::Build, _) => build_it()?,
            (_, local) => {
                if svc.image.is_none() {
                    bail!(
                        "service {name:?}: image {reference:?} is missing and --no-build \
                         forbids building it"
                    );
                }
                progress.event("Image", &reference, "Pulling");
                match store
                    .pull(
                        &reference,
                        platform(svc)?.as_ref(),
                        &Layers::of(progress, &reference),
                    )
                    .await
                {
                    Ok(pulled) => {
                        progress.event("Image", &reference, "Pulled");
                        pulled.image
                    }
                    // A service that can be built does not need its image in a registry,
                    // as with docker compose: its local image, else a build.
                    Err(e) if svc.build.is_some() => {
                        progress.event("Image", &reference, &format!("Pull failed: {e}"));
                        match local {
                            Some(image) => image,
                            None if opts.build != BuildMode::Never => build_it()?,
                            None => return Err(anyhow!(e).context(context())),
                        }
                    }
                    Err(e) => return Err(anyhow!(e).context(context())),
                }
            }
        };
        images.insert(name.clone(), image);
    }
    Ok(images)
}

/// A pull's layers as details of its `Image REF` line, with docker's words for their steps.
struct Layers<'a> {
    progress: &'a dyn Progress,
    parent: String,
}

impl<'a> Layers<'a> {
    fn of(progress: &'a dyn Progress, reference: &str) -> Layers<'a> {
        Layers {
            progress,
            parent: format!("Image {reference}"),
        }
    }
}

impl registry::Progress for Layers<'_> {
    fn blob(&self, id: &str, event: registry::BlobEvent) {
        use registry::BlobEvent as E;
        let status = match event {
            E::Exists => "Already exists".to_string(),
            E::Transfer { done, total } => {
                format!("Downloading {}/{}", human_size(done), human_size(total))
            }
            E::Complete => "Download complete".to_string(),
            E::Extracting => "Extracting".to_string(),
            E::Extracted => "Pull complete".to_string(),
            E::Mounted => return,
        };
        self.progress.detail(&self.parent, id, &status);
    }
    // `Digest: …` and the like: docker compose shows none of them.
    fn message(&self, _: &str) {}
}

/// Bytes in decimal units with four significant digits, as docker prints sizes (`1.049MB`).
fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{v:.digits$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{}", units[i])
}

/// `berth pull` in a project folder.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub services: Vec<String>,
    pub ignore_failures: bool,
    pub include_deps: bool,
}

/// The named services (all when empty), with their dependencies when `include_deps`.
fn selected(project: &Project, names: &[String], include_deps: bool) -> Result<BTreeSet<String>> {
    for n in names {
        if !project.services.contains_key(n) {
            bail!("no such service: {n}");
        }
    }
    if names.is_empty() {
        return Ok(project.services.keys().cloned().collect());
    }
    let mut out = BTreeSet::new();
    let mut todo: Vec<String> = names.to_vec();
    while let Some(n) = todo.pop() {
        if !out.insert(n.clone()) || !include_deps {
            continue;
        }
        if let Some(svc) = project.services.get(&n) {
            todo.extend(svc.depends_on.keys().cloned());
        }
    }
    Ok(out)
}

/// Pulls the images of a project's services, skipping services that are built (unless they
/// also name an image and their policy is not `build`) and services with `pull_policy: never`.
/// Returns the failures, which stop the pull unless `ignore_failures`.
pub async fn pull_project(
    project: &Project,
    store: &ImageStore,
    config: &RegistryConfig,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    let mut done = BTreeSet::new();
    for name in selected(project, &opts.services, opts.include_deps)? {
        let svc = &project.services[&name];
        let policy = service_policy(svc, None)?;
        let Some(reference) = svc.image.clone() else {
            continue;
        };
        if policy == PullPolicy::Never
            || (svc.build.is_some() && policy == PullPolicy::Build)
            || !done.insert(reference.clone())
        {
            continue;
        }
        progress.event("Image", &reference, "Pulling");
        match store
            .pull_with(
                config,
                &reference,
                platform(svc)?.as_ref(),
                &Layers::of(progress, &reference),
            )
            .await
        {
            Ok(_) => progress.event("Image", &reference, "Pulled"),
            // A service that is built may lack its image in the registry: compose warns.
            Err(e) if opts.ignore_failures || svc.build.is_some() => {
                progress.event("Image", &reference, "Error");
                failures.push(format!("service {name:?}: {e}"));
            }
            Err(e) => return Err(anyhow!(e).context(format!("pulling service {name:?}"))),
        }
    }
    Ok(failures)
}

/// `berth push` in a project folder: the images of services that name one (built ones first
/// of all). Returns the references pushed.
pub async fn push_project(
    project: &Project,
    store: &ImageStore,
    config: &RegistryConfig,
    services: &[String],
    ignore_failures: bool,
    progress: &dyn Progress,
) -> Result<Vec<String>> {
    let mut pushed = Vec::new();
    for name in selected(project, services, false)? {
        let svc = &project.services[&name];
        let Some(reference) = svc.image.clone() else {
            continue;
        };
        let mut refs = vec![reference];
        if let Some(b) = &svc.build {
            refs.extend(b.tags.iter().cloned());
        }
        for r in refs {
            progress.event("Image", &r, "Pushing");
            match store.push_with(config, &r, &registry::Quiet).await {
                Ok(_) => {
                    progress.event("Image", &r, "Pushed");
                    pushed.push(r);
                }
                Err(e) if ignore_failures => progress.event("Image", &r, &format!("Error: {e}")),
                Err(e) => return Err(anyhow!(e).context(format!("pushing service {name:?}"))),
            }
        }
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(532), "532B");
        assert_eq!(human_size(1_048_576), "1.049MB");
        assert_eq!(human_size(12_500), "12.5kB");
        assert_eq!(human_size(200_000_000), "200MB");
    }

    #[test]
    fn policies_parse() {
        assert_eq!(PullPolicy::parse("always"), Ok(PullPolicy::Always));
        assert_eq!(PullPolicy::parse("if_not_present"), Ok(PullPolicy::Missing));
        assert_eq!(PullPolicy::parse("daily"), Ok(PullPolicy::Every(24 * H)));
        assert_eq!(PullPolicy::parse("weekly"), Ok(PullPolicy::Every(168 * H)));
        assert_eq!(
            PullPolicy::parse("every_1h30m"),
            Ok(PullPolicy::Every(H + H / 2))
        );
        assert_eq!(PullPolicy::parse("every_2d"), Ok(PullPolicy::Every(48 * H)));
        for bad in [
            "every_",
            "every_0s",
            "every_5",
            "every_3x",
            "sometimes",
            "every_h",
        ] {
            assert!(PullPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decisions() {
        use Decision::{Pull, UseLocal};
        use PullPolicy::{Always, Every, Missing, Never};
        let (build, built) = (PullPolicy::Build, Decision::Build);
        let now = SystemTime::now();
        let d = |p: PullPolicy, b, m, present, last| decide(p, b, m, present, last, now);
        let m = BuildMode::Missing;
        assert_eq!(d(Missing, false, m, true, None), Ok(UseLocal));
        assert_eq!(d(Missing, false, m, false, None), Ok(Pull));
        assert_eq!(d(Always, false, m, true, None), Ok(Pull));
        assert_eq!(d(Never, false, m, true, None), Ok(UseLocal));
        assert!(d(Never, false, m, false, None).is_err());
        assert!(d(build, false, m, true, None).is_err());
        // Built services: built when missing, always with policy build or --build.
        assert_eq!(d(Missing, true, m, false, None), Ok(built));
        assert_eq!(d(Missing, true, m, true, None), Ok(UseLocal));
        assert_eq!(d(build, true, m, true, None), Ok(built));
        assert_eq!(d(Missing, true, BuildMode::Always, true, None), Ok(built));
        assert_eq!(d(build, true, BuildMode::Never, true, None), Ok(UseLocal));
        assert!(d(build, true, BuildMode::Never, false, None).is_err());
        // --no-build with a missing image falls back to the pull policy.
        assert_eq!(d(Missing, true, BuildMode::Never, false, None), Ok(Pull));
        // Periodic policies look at the last pull.
        let day = Every(24 * H);
        assert_eq!(d(day, false, m, true, Some(now - H)), Ok(UseLocal));
        assert_eq!(d(day, false, m, true, Some(now - 25 * H)), Ok(Pull));
        assert_eq!(d(day, false, m, true, None), Ok(Pull));
        assert_eq!(d(day, false, m, false, Some(now)), Ok(Pull));
    }
}
