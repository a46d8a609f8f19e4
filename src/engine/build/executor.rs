//! Runs a parsed Dockerfile: splits it into stages, builds the stages the target needs, and
//! writes the result into the image store. Each step maps a [`StepState`] to the next one and
//! is looked up in the cache first.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::config::{Healthcheck, History, ImageConfig, parse_duration};
use super::context::SourceRoot;
use super::fsops::{self, Attrs, Changes};
use super::ignore::Ignore;
use super::parser::{Args, Dockerfile, Instruction};
use super::shell::{expand_word, expand_words, split_raw};
use super::{BuildError, BuildOptions, Reporter};
use crate::engine::image::write::StoredLayer;
use crate::engine::image::{ImageError, ImageStore};
use crate::engine::rootfs::Overlay;
use crate::state::Paths;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a build has made so far in one stage: layers and config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepState {
    pub layers: Vec<StoredLayer>,
    pub config: ImageConfig,
}

struct Stage {
    name: Option<String>,
    from: Instruction,
    body: Vec<Instruction>,
}

/// A stage in progress.
struct Current {
    state: StepState,
    /// Cache key of the state: hash of the base and every step.
    key: String,
    args: BTreeMap<String, String>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

pub struct Builder<'a> {
    paths: &'a Paths,
    store: ImageStore,
    opts: &'a BuildOptions,
    rep: &'a dyn Reporter,
    file: String,
    escape: char,
    context: SourceRoot,
    global_args: BTreeMap<String, String>,
    /// Finished stages by index: final state and key.
    done: BTreeMap<usize, (StepState, String)>,
    names: BTreeMap<String, usize>,
    tmp: PathBuf,
    empty: PathBuf,
    /// Base images pulled by this build (`--pull` pulls each once).
    pulled: std::cell::RefCell<BTreeSet<String>>,
    /// This build's id: its temp dir, its lock, the owner label of its RUN containers.
    id: String,
    /// The context's ignore rules, for the workers of parallel stages.
    ignore: Ignore,
    /// Held while the build lives: a free lock marks a killed build (see `reap`).
    _lock: fs::File,
    pub steps: usize,
    pub cached: usize,
}

impl<'a> Builder<'a> {
    pub fn new(
        paths: &'a Paths,
        opts: &'a BuildOptions,
        rep: &'a dyn Reporter,
        file: String,
        escape: char,
        ignore: Ignore,
    ) -> Result<Builder<'a>, BuildError> {
        let store = ImageStore::open(&paths.images())?;
        let context =
            SourceRoot::context(&opts.context, ignore.clone()).map_err(BuildError::Context)?;
        super::reap::reap(paths);
        let id = crate::state::new_id();
        let lock = super::reap::lock(paths, &id).map_err(|e| BuildError::Io {
            path: super::reap::tmp_root(paths).join(format!("{id}.lock")),
            source: e,
        })?;
        let tmp = super::reap::tmp_root(paths).join(&id);
        let empty = paths.data.join("build-tmp").join("empty");
        for d in [&tmp, &empty] {
            fs::create_dir_all(d).map_err(|e| BuildError::Io {
                path: d.clone(),
                source: e,
            })?;
        }
        Ok(Builder {
            paths,
            store,
            opts,
            rep,
            file,
            escape,
            context,
            global_args: BTreeMap::new(),
            done: BTreeMap::new(),
            names: BTreeMap::new(),
            tmp,
            empty,
            pulled: Default::default(),
            id,
            ignore,
            _lock: lock,
            steps: 0,
            cached: 0,
        })
    }

    fn err(&self, i: &Instruction, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            file: self.file.clone(),
            line: i.line,
            message: message.into(),
        }
    }

    /// Builds the target stage (or the last one) and returns its state.
    pub fn build(&mut self, df: &Dockerfile) -> Result<StepState, BuildError> {
        let mut stages: Vec<Stage> = Vec::new();
        for i in &df.instructions {
            if i.keyword == "FROM" {
                let words = split_raw(&i.text, self.escape);
                let name = match words.as_slice() {
                    [_, kw, n] if kw.eq_ignore_ascii_case("as") => Some(n.to_ascii_lowercase()),
                    [_] => None,
                    _ => return Err(self.err(i, "FROM takes an image and an optional AS name")),
                };
                if let Some(n) = &name {
                    self.names.insert(n.clone(), stages.len());
                }
                stages.push(Stage {
                    name,
                    from: i.clone(),
                    body: Vec::new(),
                });
            } else if let Some(s) = stages.last_mut() {
                s.body.push(i.clone());
            } else if i.keyword == "ARG" {
                for (k, v) in self.arg_decls(i)? {
                    let v = self
                        .opts
                        .build_args
                        .get(&k)
                        .cloned()
                        .or(v)
                        .unwrap_or_default();
                    self.global_args.insert(k, v);
                }
            } else {
                return Err(self.err(
                    i,
                    format!(
                        "{} before the first FROM (only ARG may come first)",
                        i.keyword
                    ),
                ));
            }
        }
        let Some(last) = stages.len().checked_sub(1) else {
            return Err(BuildError::Other(format!(
                "{}: no FROM instruction",
                self.file
            )));
        };
        let target = match &self.opts.target {
            Some(t) => *self.names.get(&t.to_ascii_lowercase()).ok_or_else(|| {
                BuildError::Other(format!("target stage {t:?} could not be found"))
            })?,
            None => last,
        };
        let needed = self.needed(&stages, target)?;
        let mut deps = BTreeMap::new();
        for &n in &needed {
            deps.insert(n, self.stage_deps(&stages, n)?);
        }
        // Level by level: the stages whose dependencies are built run together.
        loop {
            let ready: Vec<usize> = needed
                .iter()
                .copied()
                .filter(|n| !self.done.contains_key(n))
                .filter(|n| deps[n].iter().all(|d| self.done.contains_key(d)))
                .collect();
            match ready.as_slice() {
                [] => break,
                [n] => {
                    let (state, key) = self.stage(*n, &stages[*n], stages.len())?;
                    self.done.insert(*n, (state, key));
                }
                many => self.parallel(&stages, many)?,
            }
        }
        Ok(self
            .done
            .remove(&target)
            .map(|(s, _)| s)
            .unwrap_or_default())
    }

    /// The stages `target` depends on (FROM a stage, COPY --from, RUN --mount from=).
    fn needed(&self, stages: &[Stage], target: usize) -> Result<BTreeSet<usize>, BuildError> {
        let mut need = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(n) = todo.pop() {
            if need.insert(n) {
                todo.extend(self.stage_deps(stages, n)?);
            }
        }
        Ok(need)
    }

    /// The stages stage `n` reads directly.
    fn stage_deps(&self, stages: &[Stage], n: usize) -> Result<Vec<usize>, BuildError> {
        let s = &stages[n];
        let mut refs = vec![self.base_name(&s.from)?];
        for i in &s.body {
            if let Some(f) = i.flag("from") {
                refs.push(f.to_owned());
            }
            for m in i.flag_all("mount") {
                if let Some(f) = m.split(',').find_map(|kv| kv.strip_prefix("from=")) {
                    refs.push(f.to_owned());
                }
            }
        }
        Ok(refs.iter().filter_map(|r| self.stage_ref(r, n)).collect())
    }

    /// Builds independent stages at once, each by a worker builder on its own thread that
    /// shares this build's settings and finished stages. Their output is replayed in stage
    /// order once all are done.
    fn parallel(&mut self, stages: &[Stage], ready: &[usize]) -> Result<(), BuildError> {
        type Outcome = (
            Result<(StepState, String), BuildError>,
            usize,
            usize,
            Vec<(bool, String)>,
        );
        let results: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
            let handles: Vec<_> = ready
                .iter()
                .map(|&n| {
                    let (paths, opts) = (self.paths, self.opts);
                    let (file, escape, ignore) =
                        (self.file.clone(), self.escape, self.ignore.clone());
                    let (global_args, names, done) = (
                        self.global_args.clone(),
                        self.names.clone(),
                        self.done.clone(),
                    );
                    let stage = &stages[n];
                    let total = stages.len();
                    scope.spawn(move || -> Outcome {
                        let lines = Lines::default();
                        let outcome =
                            Builder::new(paths, opts, &lines, file, escape, ignore).map(|mut w| {
                                w.global_args = global_args;
                                w.names = names;
                                w.done = done;
                                let r = w.stage(n, stage, total);
                                (r, w.steps, w.cached)
                            });
                        let lines = lines.0.into_inner();
                        match outcome {
                            Ok((r, steps, cached)) => (r, steps, cached, lines),
                            Err(e) => (Err(e), 0, 0, lines),
                        }
                    })
                })
                .collect();
            ready
                .iter()
                .zip(handles)
                .map(|(&n, h)| {
                    let out = h.join().unwrap_or_else(|_| {
                        (
                            Err(BuildError::Other(format!("stage {n}: the worker panicked"))),
                            0,
                            0,
                            Vec::new(),
                        )
                    });
                    (n, out)
                })
                .collect()
        });
        let mut first_error = None;
        for (n, (result, steps, cached, lines)) in results {
            for (is_step, l) in lines {
                if is_step {
                    self.rep.step(&l);
                } else {
                    self.rep.output(&l);
                }
            }
            self.steps += steps;
            self.cached += cached;
            match result {
                Ok(done) => {
                    self.done.insert(n, done);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn stage_ref(&self, r: &str, before: usize) -> Option<usize> {
        let n = self
            .names
            .get(&r.to_ascii_lowercase())
            .copied()
            .or_else(|| r.parse().ok())?;
        (n < before).then_some(n)
    }

    fn base_name(&self, from: &Instruction) -> Result<String, BuildError> {
        let words = split_raw(&from.text, self.escape);
        let env = |k: &str| self.global_args.get(k).cloned();
        expand_word(
            words.first().map(String::as_str).unwrap_or(""),
            self.escape,
            &env,
        )
        .map_err(|e| self.err(from, e))
    }

    fn stage(
        &mut self,
        n: usize,
        stage: &Stage,
        total: usize,
    ) -> Result<(StepState, String), BuildError> {
        let base = self.base_name(&stage.from)?;
        if base.is_empty() {
            return Err(self.err(&stage.from, "FROM needs an image name"));
        }
        self.rep.step(&format!(
            "[{}/{}] FROM {}{}",
            n + 1,
            total,
            base,
            stage
                .name
                .as_ref()
                .map(|s| format!(" AS {s}"))
                .unwrap_or_default()
        ));
        let (state, key) = if base == "scratch" {
            let mut config = ImageConfig {
                architecture: host_arch().into(),
                os: "linux".into(),
                ..Default::default()
            };
            config.config.env_set("PATH", DEFAULT_PATH);
            (
                StepState {
                    layers: Vec::new(),
                    config,
                },
                "scratch".to_string(),
            )
        } else if let Some(d) = self.stage_ref(&base, n) {
            let (s, k) = self
                .done
                .get(&d)
                .cloned()
                .ok_or_else(|| self.err(&stage.from, format!("stage {base} was not built")))?;
            (s, k)
        } else {
            self.image_state(&base)
                .map_err(|e| self.err(&stage.from, e))?
        };
        let mut cur = Current {
            state,
            key,
            args: BTreeMap::new(),
            cmd_set: false,
        };
        // ONBUILD triggers of the base run first and are not inherited.
        let triggers = cur.state.config.config.on_build.take().unwrap_or_default();
        for t in triggers {
            let df = super::parser::parse(&t, &self.file)
                .map_err(|e| self.err(&stage.from, e.message))?;
            for mut i in df.instructions {
                i.line = stage.from.line;
                self.step(&mut cur, &i, true)?;
            }
        }
        for i in &stage.body {
            self.step(&mut cur, i, false)?;
        }
        Ok((cur.state, cur.key))
    }

    /// A base image: from the store, pulled first when missing (or always with `--pull`).
    fn image_state(&self, name: &str) -> Result<(StepState, String), String> {
        let fresh = self.pulled.borrow().contains(name);
        let image = match self.store.resolve(name) {
            Ok(image) if !self.opts.pull || fresh => image,
            Err(ImageError::NotFound { .. }) | Ok(_) if !fresh => {
                self.rep.step(&format!("pulling {name}"));
                super::pull_image(&self.store, name)?;
                self.pulled.borrow_mut().insert(name.to_owned());
                self.store.resolve(name).map_err(|e| e.to_string())?
            }
            Ok(image) => image,
            Err(e) => return Err(e.to_string()),
        };
        let bytes = self
            .store
            .blob_bytes(&image.id)
            .map_err(|e| e.to_string())?;
        let config: ImageConfig =
            serde_json::from_slice(&bytes).map_err(|e| format!("image config of {name}: {e}"))?;
        let layers = self.store.image_layers(&image).map_err(|e| e.to_string())?;
        Ok((StepState { layers, config }, image.id))
    }

    /// `ARG a=1 b` → [(a, Some(1)), (b, None)].
    fn arg_decls(&self, i: &Instruction) -> Result<Vec<(String, Option<String>)>, BuildError> {
        let env = |_: &str| None;
        split_raw(&i.text, self.escape)
            .into_iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => Ok((
                    k.to_owned(),
                    Some(expand_word(v, self.escape, &env).map_err(|e| self.err(i, e))?),
                )),
                None => Ok((w, None)),
            })
            .collect()
    }

    /// Runs one instruction, or takes its result from the cache.
    fn step(
        &mut self,
        cur: &mut Current,
        i: &Instruction,
        trigger: bool,
    ) -> Result<(), BuildError> {
        self.steps += 1;
        let esc = self.escape;
        let lookup_env = {
            let args = cur.args.clone();
            let cfg = cur.state.config.config.clone();
            move |k: &str| cfg.env_get(k).or_else(|| args.get(k).cloned())
        };
        let word = |s: &str| expand_word(s, esc, &lookup_env).map_err(|e| self.err(i, e));
        let words = |s: &str| expand_words(s, esc, &lookup_env).map_err(|e| self.err(i, e));
        let label = format!("{}{}", if trigger { "ONBUILD " } else { "" }, i.display());
        // Inputs beyond the instruction text: args in scope and content read from outside.
        let mut inputs = serde_json::to_string(&cur.args).unwrap_or_default();
        let kw = i.keyword.as_str();
        let cfg = &mut cur.state.config.config;
        let mut empty_layer = true;
        match kw {
            "ARG" => {
                for (k, v) in self.arg_decls(i)? {
                    let v = self
                        .opts
                        .build_args
                        .get(&k)
                        .cloned()
                        .or(v)
                        .or_else(|| self.global_args.get(&k).cloned())
                        .or_else(|| predefined(&k))
                        .unwrap_or_default();
                    cur.args.insert(k, v);
                }
                cur.key = hash(&[
                    &cur.key,
                    &label,
                    &serde_json::to_string(&cur.args).unwrap_or_default(),
                ]);
                return Ok(());
            }
            "ENV" | "LABEL" => {
                for (k, v) in self.pairs(i, &word)? {
                    if kw == "ENV" {
                        cfg.env_set(&k, &v);
                    } else {
                        cfg.labels.get_or_insert_with(BTreeMap::new).insert(k, v);
                    }
                }
            }
            "MAINTAINER" => cur.state.config.author = Some(i.text.clone()),
            "EXPOSE" => {
                let ports = cfg.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in words(&i.text)? {
                    for p in expand_port(&p).map_err(|e| self.err(i, e))? {
                        ports.insert(p, serde_json::json!({}));
                    }
                }
            }
            "WORKDIR" => {
                let w = word(&i.text)?;
                let base = cfg.working_dir.clone().unwrap_or_else(|| "/".into());
                let w = clean_abs(&if w.starts_with('/') {
                    w
                } else {
                    format!("{base}/{w}")
                });
                cfg.working_dir = Some(w);
                empty_layer = false;
                inputs.push_str("mkdir");
            }
            "USER" => cfg.user = Some(word(&i.text)?),
            "VOLUME" => {
                let list = match &i.args {
                    Args::Json(v) => v.clone(),
                    Args::Shell(s) => words(s)?,
                };
                let vols = cfg.volumes.get_or_insert_with(BTreeMap::new);
                for v in list {
                    if v.is_empty() {
                        return Err(self.err(i, "VOLUME specified can not be an empty string"));
                    }
                    vols.insert(v, serde_json::json!({}));
                }
            }
            "STOPSIGNAL" => cfg.stop_signal = Some(word(&i.text)?),
            "SHELL" => match &i.args {
                Args::Json(v) if !v.is_empty() => cfg.shell = Some(v.clone()),
                _ => return Err(self.err(i, "SHELL requires the arguments to be in JSON form")),
            },
            "CMD" | "ENTRYPOINT" => {
                let shell = cfg.shell.clone().unwrap_or_else(default_shell);
                let v = match &i.args {
                    Args::Json(v) => v.clone(),
                    Args::Shell(s) => shell.into_iter().chain([s.clone()]).collect(),
                };
                if kw == "CMD" {
                    cfg.cmd = Some(v);
                    cur.cmd_set = true;
                } else {
                    cfg.entrypoint = Some(v);
                    if !cur.cmd_set {
                        cfg.cmd = None;
                    }
                }
            }
            "HEALTHCHECK" => cfg.healthcheck = Some(self.healthcheck(i)?),
            "ONBUILD" => {
                let inner = i
                    .text
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(self.err(i, format!("{inner} isn't allowed as an ONBUILD trigger")));
                }
                cfg.on_build
                    .get_or_insert_with(Vec::new)
                    .push(i.text.clone());
            }
            "RUN" | "COPY" | "ADD" => {
                empty_layer = false;
                if kw != "RUN" {
                    inputs.push_str(&self.copy_inputs(cur, i, &word, &words)?);
                } else {
                    inputs.push_str(&self.mount_inputs(i)?);
                    // The build's default network is part of what the step ran in (a
                    // `--network` flag of the instruction is in its text already).
                    if let Some(n) = &self.opts.network {
                        inputs.push_str(&format!("network={n}\n"));
                    }
                }
            }
            _ => return Err(self.err(i, format!("{kw} is not supported"))),
        }
        let key = hash(&[&cur.key, &label, &inputs]);
        let created_by = match (kw, &i.args) {
            ("RUN", Args::Shell(s)) => {
                let sh = cur
                    .state
                    .config
                    .config
                    .shell
                    .clone()
                    .unwrap_or_else(default_shell);
                format!("RUN {} {s}", sh.join(" "))
            }
            _ => label.clone(),
        };
        self.rep.step(&created_by);
        if !self.opts.no_cache
            && let Some(hit) = self.cache_get(&key)
        {
            self.cached += 1;
            self.rep.output("CACHED");
            cur.state = hit;
            cur.key = key;
            return Ok(());
        }
        if !empty_layer {
            let layer = match kw {
                "RUN" => self.run(cur, i)?,
                "WORKDIR" => {
                    let w = cur
                        .state
                        .config
                        .config
                        .working_dir
                        .clone()
                        .unwrap_or_default();
                    self.fs_step(cur, i, &mut |root| fsops::ensure_dir(root, &w))?
                }
                _ => self.copy(cur, i, &word, &words)?,
            };
            if let Some(l) = layer {
                cur.state.layers.push(l);
            } else {
                empty_layer = true;
            }
        }
        cur.state.config.history.push(History {
            created: Some(crate::engine::logs::now()),
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer,
        });
        cur.key = key;
        self.cache_put(&cur.key, &cur.state);
        Ok(())
    }

    /// ENV and LABEL: `k=v` pairs, or the legacy `ENV k v`.
    fn pairs(
        &self,
        i: &Instruction,
        word: &dyn Fn(&str) -> Result<String, BuildError>,
    ) -> Result<Vec<(String, String)>, BuildError> {
        let raw = split_raw(&i.text, self.escape);
        if raw.first().is_some_and(|w| !w.contains('=')) {
            if i.keyword == "LABEL" || raw.len() < 2 {
                return Err(self.err(i, format!("{} names must be followed by =value", i.keyword)));
            }
            let rest = i.text[raw[0].len()..].trim();
            return Ok(vec![(word(&raw[0])?, word(rest)?)]);
        }
        raw.iter()
            .map(|w| {
                let (k, v) = w.split_once('=').ok_or_else(|| {
                    self.err(
                        i,
                        format!("{w:?}: {} pairs must have the form key=value", i.keyword),
                    )
                })?;
                let k = word(k)?;
                if k.is_empty() {
                    return Err(self.err(i, format!("{} names can not be blank", i.keyword)));
                }
                Ok((k, word(v)?))
            })
            .collect()
    }

    fn healthcheck(&self, i: &Instruction) -> Result<Healthcheck, BuildError> {
        let (first, rest) = i
            .text
            .split_once(char::is_whitespace)
            .unwrap_or((&i.text, ""));
        let mut h = Healthcheck::default();
        match first.to_ascii_uppercase().as_str() {
            "NONE" => {
                h.test = vec!["NONE".into()];
                return Ok(h);
            }
            "CMD" => {
                let rest = rest.trim();
                h.test = match serde_json::from_str::<Vec<String>>(rest) {
                    Ok(v) if rest.starts_with('[') => {
                        ["CMD".to_string()].into_iter().chain(v).collect()
                    }
                    _ => vec!["CMD-SHELL".into(), rest.into()],
                };
            }
            _ => return Err(self.err(i, "HEALTHCHECK must be NONE or CMD …")),
        }
        let dur = |name: &str| -> Result<Option<u64>, BuildError> {
            i.flag(name)
                .map(|v| {
                    parse_duration(v).ok_or_else(|| self.err(i, format!("invalid --{name} {v:?}")))
                })
                .transpose()
        };
        h.interval = dur("interval")?;
        h.timeout = dur("timeout")?;
        h.start_period = dur("start-period")?;
        h.start_interval = dur("start-interval")?;
        h.retries = i
            .flag("retries")
            .map(|v| {
                v.parse()
                    .map_err(|_| self.err(i, format!("invalid --retries {v:?}")))
            })
            .transpose()?;
        Ok(h)
    }

    fn cache_dir(&self) -> PathBuf {
        self.paths.data.join("build-cache")
    }

    fn cache_get(&self, key: &str) -> Option<StepState> {
        let s: StepState =
            crate::state::read_json(&self.cache_dir().join(format!("{key}.json"))).ok()??;
        s.layers
            .iter()
            .all(|l| self.store.has_blob(&l.digest))
            .then_some(s)
    }

    fn cache_put(&self, key: &str, s: &StepState) {
        let _ = crate::state::write_json(&self.cache_dir().join(format!("{key}.json")), s);
    }

    fn layer_dirs(&self, s: &StepState) -> Result<Vec<PathBuf>, BuildError> {
        s.layers
            .iter()
            .map(|l| self.store.layer_dir(l).map_err(BuildError::from))
            .collect()
    }

    fn new_tmp(&self, what: &str) -> PathBuf {
        self.tmp
            .join(format!("{what}-{:016x}", rand::random::<u64>()))
    }

    /// Runs `f` on a throwaway overlay of the state's layers; the upper dir becomes the layer.
    fn fs_step(
        &self,
        cur: &Current,
        i: &Instruction,
        f: &mut dyn FnMut(&Path) -> Result<(), String>,
    ) -> Result<Option<StoredLayer>, BuildError> {
        let dir = self.new_tmp("fs");
        let mut lowers = self.layer_dirs(&cur.state)?;
        if lowers.is_empty() {
            lowers.push(self.empty.clone());
        }
        let ov = Overlay::new(&dir);
        ov.mount(&lowers, false)
            .map_err(|e| self.err(i, e.to_string()))?;
        let r = f(&ov.merged);
        ov.unmount().map_err(|e| self.err(i, e.to_string()))?;
        r.map_err(|e| self.err(i, e))?;
        let tar = dir.join("layer.tar");
        let changed = super::layer::write_layer(&ov.upper, &tar, false)
            .map_err(|e| self.err(i, format!("writing the layer: {e}")))?;
        let layer = if changed {
            Some(self.store.add_layer(&tar)?)
        } else {
            None
        };
        let _ = fs::remove_dir_all(&dir);
        Ok(layer)
    }

    fn run(&self, cur: &Current, i: &Instruction) -> Result<Option<StoredLayer>, BuildError> {
        let cfg = &cur.state.config.config;
        let shell = cfg.shell.clone().unwrap_or_else(default_shell);
        let args = match &i.args {
            Args::Json(v) => v.clone(),
            Args::Shell(s) => {
                let script = match i.heredocs.as_slice() {
                    [h] if s.trim() == format!("<<{}", h.name)
                        || s.trim() == format!("<<-{}", h.name) =>
                    {
                        h.content.clone()
                    }
                    [] => s.clone(),
                    hs => {
                        let mut all = s.clone();
                        for h in hs {
                            all.push('\n');
                            all.push_str(&h.content);
                            all.push_str(&h.name);
                        }
                        all
                    }
                };
                shell.into_iter().chain([script]).collect()
            }
        };
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &cur.args {
            env.insert(k.clone(), v.clone());
        }
        for e in cfg.env.clone().unwrap_or_default() {
            if let Some((k, v)) = e.split_once('=') {
                env.insert(k.into(), v.into());
            }
        }
        env.entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        let network = i
            .flag("network")
            .or(self.opts.network.as_deref())
            .unwrap_or("default");
        let network = super::run::RunNetwork::parse(network).ok_or_else(|| {
            self.err(
                i,
                format!("unsupported --network={network} (default, host or none)"),
            )
        })?;
        let spec = super::run::RunSpec {
            args,
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: cfg
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            user: cfg.user.clone().unwrap_or_default(),
            network,
            extra_hosts: self.opts.extra_hosts.clone(),
            shm_size: self.opts.shm_size,
            mounts: Vec::new(),
            tmpfs: Vec::new(),
            owner: self.id.clone(),
        };
        let mut spec = spec;
        let mut overlays = Vec::new();
        let cwd = spec.cwd.clone();
        let prepared = self.run_mounts(i, &cwd, &mut spec, &mut overlays);
        let result = prepared.and_then(|()| self.run_in(cur, i, &spec));
        for ov in overlays {
            let _ = ov.unmount();
        }
        result
    }

    /// The mounts of RUN `--mount` flags, into `spec`; overlays of stages and images bound
    /// from go into `overlays`, for the caller to unmount.
    fn run_mounts(
        &self,
        i: &Instruction,
        cwd: &str,
        spec: &mut super::run::RunSpec,
        overlays: &mut Vec<Overlay>,
    ) -> Result<(), BuildError> {
        use super::mounts::{MountKind, parse};
        use crate::engine::container::Mount;
        for raw in i.flag_all("mount") {
            let m = parse(raw).map_err(|e| self.err(i, e))?;
            let target = if m.target.starts_with('/') {
                m.target.clone()
            } else {
                format!("{}/{}", cwd.trim_end_matches('/'), m.target)
            };
            let bind = |source: PathBuf, read_only: bool| Mount {
                source,
                target: target.clone(),
                read_only,
                ..Default::default()
            };
            match m.kind {
                MountKind::Bind => {
                    let src = m.source.as_deref().unwrap_or(".");
                    let host = match &m.from {
                        None => {
                            let found = self.context.sources(src).map_err(|e| self.err(i, e))?;
                            match found.as_slice() {
                                [one] => one.host.clone(),
                                _ => {
                                    return Err(self.err(
                                        i,
                                        format!("--mount source {src:?} must name one path"),
                                    ));
                                }
                            }
                        }
                        Some(f) => {
                            let state = match self.stage_ref(f, usize::MAX) {
                                Some(n) => {
                                    self.done.get(&n).map(|(s, _)| s.clone()).ok_or_else(|| {
                                        self.err(i, format!("stage {f} was not built"))
                                    })?
                                }
                                None => self.image_state(f).map_err(|e| self.err(i, e))?.0,
                            };
                            let mut lowers = self.layer_dirs(&state)?;
                            if lowers.is_empty() {
                                lowers.push(self.empty.clone());
                            }
                            let ov = Overlay::new(&self.new_tmp("mount"));
                            ov.mount(&lowers, false)
                                .map_err(|e| self.err(i, e.to_string()))?;
                            let merged = ov.merged.clone();
                            overlays.push(ov);
                            fsops::resolve_in(&merged, src).ok_or_else(|| {
                                self.err(i, format!("--mount source {src:?} is outside stage {f}"))
                            })?
                        }
                    };
                    if !host.exists() {
                        return Err(self.err(i, format!("--mount source {src:?} does not exist")));
                    }
                    let host = if m.read_write {
                        // Writes are discarded: the step gets a copy.
                        let copy = self.new_tmp("rw");
                        let out = std::process::Command::new("cp")
                            .arg("-a")
                            .arg(&host)
                            .arg(&copy)
                            .output()
                            .map_err(|e| self.err(i, format!("copying {src:?}: {e}")))?;
                        if !out.status.success() {
                            return Err(self.err(
                                i,
                                format!(
                                    "copying {src:?}: {}",
                                    String::from_utf8_lossy(&out.stderr).trim()
                                ),
                            ));
                        }
                        copy
                    } else {
                        host
                    };
                    spec.mounts.push(bind(host, !m.read_write));
                }
                MountKind::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let dir = self
                        .paths
                        .data
                        .join("build-cache-mounts")
                        .join(crate::state::short_hash(id.as_bytes(), 32));
                    fs::create_dir_all(&dir).map_err(|e| BuildError::Io {
                        path: dir.clone(),
                        source: e,
                    })?;
                    spec.mounts.push(bind(dir, false));
                }
                MountKind::Tmpfs => spec.tmpfs.push(crate::engine::hostconfig::Tmpfs {
                    target: target.clone(),
                    size: m.size,
                    mode: m.mode,
                    ..Default::default()
                }),
                MountKind::Secret => {
                    let id = m.id.clone().unwrap_or_default();
                    let Some(content) = self.opts.secrets.get(&id) else {
                        if m.required {
                            return Err(self.err(
                                i,
                                format!("secret {id} is required but was not given (--secret id={id},src=FILE)"),
                            ));
                        }
                        continue;
                    };
                    let file = self.new_tmp("secret");
                    write_private(&file, content, m.mode.unwrap_or(0o400)).map_err(|e| {
                        BuildError::Io {
                            path: file.clone(),
                            source: e,
                        }
                    })?;
                    spec.mounts.push(bind(file, true));
                }
            }
        }
        Ok(())
    }

    /// Runs a prepared RUN step on the current state's layers.
    fn run_in(
        &self,
        cur: &Current,
        i: &Instruction,
        spec: &super::run::RunSpec,
    ) -> Result<Option<StoredLayer>, BuildError> {
        let lowers = self.layer_dirs(&cur.state)?;
        let tar = self.new_tmp("run");
        let rep = self.rep;
        let changed =
            super::run::run_step(self.paths, &lowers, &self.empty, spec, &tar, &mut |l| {
                rep.output(l)
            })
            .map_err(|e| self.err(i, e))?;
        let layer = if changed {
            Some(self.store.add_layer(&tar)?)
        } else {
            None
        };
        let _ = fs::remove_file(&tar);
        Ok(layer)
    }

    /// What RUN's bind mounts read, for the cache key: context content or the stage's key.
    fn mount_inputs(&self, i: &Instruction) -> Result<String, BuildError> {
        let mut out = String::new();
        for raw in i.flag_all("mount") {
            let m = super::mounts::parse(raw).map_err(|e| self.err(i, e))?;
            if m.kind != super::mounts::MountKind::Bind {
                continue;
            }
            match &m.from {
                Some(f) => match self.stage_ref(f, usize::MAX) {
                    Some(n) => out.push_str(
                        &self
                            .done
                            .get(&n)
                            .map(|(_, k)| k.clone())
                            .unwrap_or_default(),
                    ),
                    None => out.push_str(&self.image_state(f).map_err(|e| self.err(i, e))?.1),
                },
                None => {
                    let src = m.source.as_deref().unwrap_or(".");
                    let found = self.context.sources(src).map_err(|e| self.err(i, e))?;
                    out.push_str(&self.context.hash(&found).map_err(|e| self.err(i, e))?);
                }
            }
        }
        Ok(out)
    }

    /// The content hash of what COPY/ADD read, for the cache key.
    fn copy_inputs(
        &self,
        _cur: &Current,
        i: &Instruction,
        word: &dyn Fn(&str) -> Result<String, BuildError>,
        words: &dyn Fn(&str) -> Result<Vec<String>, BuildError>,
    ) -> Result<String, BuildError> {
        let (srcs, _) = self.copy_args(i, word, words)?;
        let mut out = String::new();
        for h in &i.heredocs {
            out.push_str(&hash(&[&h.content]));
        }
        match i.flag("from") {
            Some(f) => {
                let f = word(f)?;
                match self.stage_ref(&f, usize::MAX) {
                    Some(n) => out.push_str(
                        &self
                            .done
                            .get(&n)
                            .map(|(_, k)| k.clone())
                            .unwrap_or_default(),
                    ),
                    None => out.push_str(&self.image_state(&f).map_err(|e| self.err(i, e))?.1),
                }
            }
            None => {
                for s in &srcs {
                    if is_url(s) {
                        out.push_str(&hash(&[&String::from_utf8_lossy(&self.fetch(i, s)?)]));
                    } else if !i.heredocs.iter().any(|h| s == &format!("<<{}", h.name)) {
                        let found = self.context.sources(s).map_err(|e| self.err(i, e))?;
                        out.push_str(&self.context.hash(&found).map_err(|e| self.err(i, e))?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Sources and destination of COPY/ADD, expanded.
    fn copy_args(
        &self,
        i: &Instruction,
        word: &dyn Fn(&str) -> Result<String, BuildError>,
        words: &dyn Fn(&str) -> Result<Vec<String>, BuildError>,
    ) -> Result<(Vec<String>, String), BuildError> {
        let mut all = match &i.args {
            Args::Json(v) => v.iter().map(|w| word(w)).collect::<Result<Vec<_>, _>>()?,
            Args::Shell(s) => {
                // Heredoc markers stay as written.
                split_raw(s, self.escape)
                    .into_iter()
                    .map(|w| {
                        if w.starts_with("<<") {
                            Ok(vec![w])
                        } else {
                            words(&w)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .concat()
            }
        };
        if all.len() < 2 {
            return Err(self.err(i, format!("{} requires at least two arguments", i.keyword)));
        }
        let dest = all.pop().unwrap_or_default();
        let srcs = all
            .into_iter()
            .map(|s| match s.strip_prefix("<<-").or(s.strip_prefix("<<")) {
                Some(n) => format!("<<{}", n.trim_matches(|c| c == '"' || c == '\'')),
                None => s,
            })
            .collect();
        Ok((srcs, dest))
    }

    fn copy(
        &self,
        cur: &Current,
        i: &Instruction,
        word: &dyn Fn(&str) -> Result<String, BuildError>,
        words: &dyn Fn(&str) -> Result<Vec<String>, BuildError>,
    ) -> Result<Option<StoredLayer>, BuildError> {
        let (srcs, dest) = self.copy_args(i, word, words)?;
        let workdir = cur
            .state
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let dest_abs = if dest.starts_with('/') {
            dest.clone()
        } else {
            format!("{workdir}/{dest}")
        };
        let dir_syntax = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
        let add = i.keyword == "ADD";
        let chmod = i
            .flag("chmod")
            .map(|m| {
                u32::from_str_radix(m, 8).map_err(|_| self.err(i, format!("invalid --chmod {m:?}")))
            })
            .transpose()?;
        let chown = i.flag("chown").map(word).transpose()?;
        // Sources: the context, or another stage's or image's root filesystem.
        let from = i.flag("from").map(word).transpose()?;
        let mut mount: Option<(PathBuf, Overlay)> = None;
        let root = match &from {
            None => None,
            Some(f) => {
                let layers = match self.stage_ref(f, usize::MAX) {
                    Some(n) => self
                        .done
                        .get(&n)
                        .map(|(s, _)| s.clone())
                        .ok_or_else(|| self.err(i, format!("stage {f} was not built")))?,
                    None => self.image_state(f).map_err(|e| self.err(i, e))?.0,
                };
                let dirs = self.layer_dirs(&layers)?;
                let dir = self.new_tmp("from");
                let ov = Overlay::new(&dir);
                let lowers = if dirs.is_empty() {
                    vec![self.empty.clone()]
                } else {
                    dirs
                };
                ov.mount(&lowers, false)
                    .map_err(|e| self.err(i, e.to_string()))?;
                let r = SourceRoot::rootfs(&ov.merged).map_err(|e| self.err(i, e))?;
                mount = Some((dir, ov));
                Some(r)
            }
        };
        let src_root = root.as_ref().unwrap_or(&self.context);
        let mut resolved = Vec::new();
        for s in &srcs {
            if let Some(name) = s.strip_prefix("<<") {
                let h = i
                    .heredocs
                    .iter()
                    .find(|h| h.name == name)
                    .ok_or_else(|| self.err(i, format!("heredoc {name} not found")))?;
                let content = if h.expand {
                    word(&format!("\"{}\"", h.content.replace('"', "\\\"")))?
                } else {
                    h.content.clone()
                };
                resolved.push(Src::Bytes(name.to_owned(), content.into_bytes()));
            } else if add && is_url(s) {
                let name = s
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("download")
                    .to_owned();
                resolved.push(Src::Bytes(name, self.fetch(i, s)?));
            } else {
                for f in src_root.sources(s).map_err(|e| self.err(i, e))? {
                    resolved.push(Src::Path(f));
                }
            }
        }
        let multiple = resolved.len() > 1;
        let tar_path = self.new_tmp("copy");
        let lbl = i.clone();
        let result = self.fs_step(cur, i, &mut |merged| {
            let (uid, gid) = match &chown {
                Some(c) => fsops::resolve_user(merged, c)?,
                None => (0, 0),
            };
            let a = Attrs { uid, gid, chmod };
            let into_dir = dir_syntax || multiple || fsops::is_dir(merged, &dest_abs);
            let mut ch = Changes::new(&tar_path).map_err(|e| e.to_string())?;
            let mut archives = Vec::new();
            for s in &resolved {
                match s {
                    Src::Bytes(name, data) => {
                        let d = if into_dir {
                            format!("{dest_abs}/{name}")
                        } else {
                            dest_abs.clone()
                        };
                        let mode = if add && chmod.is_none() && is_url(&srcs[0]) {
                            0o600
                        } else {
                            0o644
                        };
                        ch.bytes(&d, data, mode, a).map_err(|e| e.to_string())?;
                    }
                    Src::Path(src) => {
                        let meta =
                            fs::metadata(&src.host).map_err(|e| format!("{}: {e}", src.rel))?;
                        if add && meta.is_file() && is_archive(&src.host) {
                            archives.push(src.host.clone());
                            continue;
                        }
                        let base = if meta.is_dir() {
                            dest_abs.clone()
                        } else if into_dir {
                            let n = Path::new(&src.rel)
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            format!("{dest_abs}/{n}")
                        } else {
                            dest_abs.clone()
                        };
                        src_root.walk(src, &mut |p, r, m| {
                            if r.is_empty() && m.is_dir() {
                                return Ok(()); // the directory's contents are copied, not itself
                            }
                            let d = if r.is_empty() {
                                base.clone()
                            } else {
                                format!("{base}/{r}")
                            };
                            ch.host(p, m, &d, a)
                                .map_err(|e| format!("{}: {e}", lbl.text))
                        })?;
                    }
                }
            }
            if into_dir {
                fsops::ensure_dir(merged, &dest_abs)?;
            }
            ch.apply(merged)?;
            for ar in archives {
                fsops::ensure_dir(merged, &dest_abs)?;
                let target = fsops::resolve_in(merged, &dest_abs).ok_or("destination vanished")?;
                let f = fs::File::open(&ar).map_err(|e| format!("{}: {e}", ar.display()))?;
                let r = crate::engine::image::unpack::decompress(std::io::BufReader::new(f))
                    .map_err(|e| e.to_string())?;
                crate::engine::image::unpack::unpack_tar(r, &target).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let _ = fs::remove_file(&tar_path);
        if let Some((dir, ov)) = mount {
            let _ = ov.unmount();
            let _ = fs::remove_dir_all(dir);
        }
        result
    }

    /// ADD of a URL: a plain HTTP/1.0 GET (https is not supported yet).
    fn fetch(&self, i: &Instruction, url: &str) -> Result<Vec<u8>, BuildError> {
        super::fetch::get(url).map_err(|e| self.err(i, format!("ADD {url}: {e}")))
    }
}

/// A reporter that keeps lines (`true` for steps) for replay: a parallel stage's output.
#[derive(Default)]
struct Lines(std::cell::RefCell<Vec<(bool, String)>>);

impl Reporter for Lines {
    fn step(&self, line: &str) {
        self.0.borrow_mut().push((true, line.to_owned()));
    }
    fn output(&self, line: &str) {
        self.0.borrow_mut().push((false, line.to_owned()));
    }
}

enum Src {
    Path(super::context::Source),
    Bytes(String, Vec<u8>),
}

/// Writes a file only its owner can read (a secret for one step).
fn write_private(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(content)
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Whether a file is a tar archive (plain, gzip or zstd), which ADD unpacks.
fn is_archive(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 262];
    let n = f.read(&mut head).unwrap_or(0);
    head[..n].starts_with(&[0x1f, 0x8b])
        || head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &head[257..262] == b"ustar")
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

fn predefined(k: &str) -> Option<String> {
    let arch = host_arch();
    Some(match k {
        "TARGETPLATFORM" | "BUILDPLATFORM" => format!("linux/{arch}"),
        "TARGETOS" | "BUILDOS" => "linux".into(),
        "TARGETARCH" | "BUILDARCH" => arch.into(),
        "HTTP_PROXY" | "HTTPS_PROXY" | "FTP_PROXY" | "NO_PROXY" | "ALL_PROXY" | "http_proxy"
        | "https_proxy" | "ftp_proxy" | "no_proxy" | "all_proxy" => std::env::var(k).ok()?,
        _ => return None,
    })
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `80` → `80/tcp`; `8000-8001/udp` → both ports.
fn expand_port(p: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let bad = || format!("invalid containerPort: {p}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let n = ports.parse::<u16>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

/// Cleans an absolute path: `/a/./b/../c` → `/a/c`.
fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

impl Drop for Builder<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.tmp);
        let _ = fs::remove_file(self.tmp.with_extension("lock"));
        // RUN containers leave this root's cgroup parents; rmdir only removes empty ones.
        // (Same rule as `down`; project::down's helper is not reachable from the engine.)
        let parent = self.paths.cgroup_parent();
        if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let _ = fs::remove_dir(e.path().join(&parent));
            }
        }
        let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(&parent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_paths() {
        assert_eq!(expand_port("80").unwrap(), ["80/tcp"]);
        assert_eq!(expand_port("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expand_port("8000-8001").unwrap(), ["8000/tcp", "8001/tcp"]);
        assert!(expand_port("x").is_err());
        assert_eq!(clean_abs("/a/b/../c/./d"), "/a/c/d");
        assert_eq!(clean_abs("/"), "/");
    }
}
