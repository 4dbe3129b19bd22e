//! The Dockerfile builder: FROM (scratch, a stored image, an earlier stage), COPY/ADD of local
//! files, and the configuration instructions, producing reproducible OCI images.
//!
//! Same inputs give the same digest: layer tars list entries sorted by path with a fixed mtime
//! (`SOURCE_DATE_EPOCH`, else 0), uid/gid 0 unless `--chown`, no atime/ctime, and are gzipped with
//! a fixed header and level; configs and manifests are serialized with a fixed key order, and
//! `created` is `SOURCE_DATE_EPOCH` (else the Unix epoch). File mtimes in the context do not
//! matter; contents, modes and the Dockerfile do.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::dockerfile::{self, Cmdline, Instruction, Kind};
use crate::dockerignore::{DockerIgnore, clean_rel, glob_match, has_meta};
use crate::oci::{
    self, Descriptor, Empty, Healthcheck, History, ImageConfigFile, Index, LayerCompression,
    Manifest, Platform, RootFs,
};
use crate::store::{ImageStore, LayerInfo, StoreError, WriteTxn};

/// The message for RUN, which needs the sandbox runtime.
pub const RUN_UNSUPPORTED: &str = "RUN is not supported yet: aos runs RUN steps in its sandbox runtime, which arrives with the node agent";

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile is wrong at a line (`Dockerfile:7: ...`).
    #[error("{file}:{line}: {message}")]
    Dockerfile {
        /// The Dockerfile as the user named it.
        file: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The options are wrong.
    #[error("{0}")]
    Options(String),
    /// Reading the context or the Dockerfile failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// The image store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile (default `CONTEXT/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// `name:tag` references to point at the result.
    pub tags: Vec<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// Target platforms (empty: the host's). More than one makes an index.
    pub platforms: Vec<Platform>,
    /// The stage to build (default: the last).
    pub target: Option<String>,
    /// Timestamp for `created` and layer mtimes (default: `$SOURCE_DATE_EPOCH`, else 0).
    pub source_date_epoch: Option<i64>,
}

/// A lint finding, hadolint-style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    /// The Dockerfile name.
    pub file: String,
    /// The line.
    pub line: usize,
    /// The rule code (`DL3020`).
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} {} warning: {}",
            self.file, self.line, self.code, self.message
        )
    }
}

/// Progress of a build, for display.
#[derive(Debug, Clone)]
pub enum BuildEvent {
    /// A step starts: `[index/total] text`; `platform` is set for multi-platform builds.
    Step {
        /// The platform, when building for several.
        platform: Option<String>,
        /// 1-based step number.
        index: usize,
        /// Steps in the build.
        total: usize,
        /// The instruction.
        text: String,
    },
    /// A layer was written.
    Layer {
        /// Bytes of file content in the layer.
        content_bytes: u64,
        /// Files, directories and links in the layer.
        entries: usize,
        /// The compressed blob.
        descriptor: Descriptor,
    },
    /// A lint warning.
    Warning(Lint),
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// What the tags point at: a manifest, or an index for several platforms.
    pub descriptor: Descriptor,
    /// The manifest of each platform.
    pub manifests: Vec<(Platform, Digest)>,
    /// The tags set.
    pub tags: Vec<String>,
    /// Lint warnings.
    pub warnings: Vec<Lint>,
}

/// Builds an image into the store.
pub fn build(
    store: &ImageStore,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(BuildEvent),
) -> Result<BuildOutput, BuildError> {
    let context = fs::canonicalize(&opts.context)
        .map_err(io_ctx(format!("build context {}", opts.context.display())))?;
    if !context.is_dir() {
        return Err(BuildError::Options(format!(
            "build context {} is not a directory",
            opts.context.display()
        )));
    }
    let (df_path, df_name) = match &opts.dockerfile {
        Some(p) => (p.clone(), p.display().to_string()),
        None => (context.join("Dockerfile"), "Dockerfile".to_owned()),
    };
    let source = fs::read_to_string(&df_path)
        .map_err(io_ctx(format!("cannot read {}", df_path.display())))?;
    let parsed = dockerfile::parse(&source).map_err(|e| BuildError::Dockerfile {
        file: df_name.clone(),
        line: e.line,
        message: e.message,
    })?;
    // `Dockerfile.dockerignore` next to the Dockerfile wins over the context's `.dockerignore`.
    let specific = PathBuf::from(format!("{}.dockerignore", df_path.display()));
    let ignore_text = fs::read_to_string(&specific)
        .or_else(|_| fs::read_to_string(context.join(".dockerignore")))
        .unwrap_or_default();
    let ignore = DockerIgnore::parse(&ignore_text);
    for t in &opts.tags {
        crate::reference::Reference::parse(t)
            .ok()
            .and_then(|r| r.name_tag())
            .ok_or_else(|| {
                BuildError::Options(format!("invalid tag {t:?}: expected name[:tag]"))
            })?;
    }
    let epoch = match opts.source_date_epoch {
        Some(e) => e,
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| {
                BuildError::Options(format!(
                    "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
                ))
            })?,
            _ => 0,
        },
    };
    let created = jiff::Timestamp::from_second(epoch)
        .map_err(|e| BuildError::Options(format!("SOURCE_DATE_EPOCH {epoch}: {e}")))?
        .to_string();
    let platforms = if opts.platforms.is_empty() {
        vec![Platform::host()]
    } else {
        opts.platforms.clone()
    };
    let plan = Plan::new(&parsed, &df_name, opts, &platforms[0])?;

    let txn = store.begin_write()?;
    let mut warnings = Vec::new();
    let mut manifests = Vec::new();
    // Layers with identical inputs (the same files for every platform) are written once.
    let mut layer_cache: HashMap<String, (LayerInfo, u64)> = HashMap::new();
    let multi = platforms.len() > 1;
    for (i, platform) in platforms.iter().enumerate() {
        let mut b = Builder {
            store,
            txn: &txn,
            plan: &plan,
            escape: parsed.escape,
            file: &df_name,
            context: &context,
            ignore: &ignore,
            opts,
            platform,
            epoch: epoch.max(0) as u64,
            created: &created,
            results: HashMap::new(),
            layer_cache: &mut layer_cache,
            flattened: HashMap::new(),
            step: 0,
            platform_label: multi.then(|| platform.to_string()),
            lints: i == 0,
            warnings: Vec::new(),
            consumed: BTreeSet::new(),
        };
        let result = b.build_stage(plan.target, progress)?;
        b.final_lints(&result);
        if i == 0 {
            let unused: Vec<_> = opts
                .build_args
                .keys()
                .filter(|k| !b.consumed.contains(*k))
                .cloned()
                .collect();
            if !unused.is_empty() {
                b.warnings.push(Lint {
                    file: df_name.clone(),
                    line: 1,
                    code: "AOS0001",
                    message: format!(
                        "build-args were not consumed by any ARG: {}",
                        unused.join(", ")
                    ),
                });
            }
        }
        warnings.extend(std::mem::take(&mut b.warnings));
        let desc = b.write_image(&result)?;
        manifests.push((platform.clone(), desc));
    }
    for w in &warnings {
        progress(BuildEvent::Warning(w.clone()));
    }
    let descriptor = if multi {
        let index = Index {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_OCI_INDEX.to_owned()),
            manifests: manifests
                .iter()
                .map(|(p, d)| {
                    let mut d = d.clone();
                    d.platform = Some(p.clone());
                    d
                })
                .collect(),
            annotations: None,
        };
        let bytes = oci::to_canonical_json(&index);
        let digest = txn.put_bytes(&bytes)?;
        Descriptor::new(oci::MEDIA_TYPE_OCI_INDEX, digest, bytes.len() as u64)
    } else {
        manifests[0].1.clone()
    };
    txn.sync()?;
    if opts.tags.is_empty() {
        store.add_untagged(&descriptor)?;
    } else {
        let refs: Vec<_> = opts
            .tags
            .iter()
            .map(|t| (Some(t.clone()), descriptor.clone()))
            .collect();
        store.set_refs(&refs)?;
    }
    drop(txn);
    Ok(BuildOutput {
        descriptor,
        manifests: manifests.into_iter().map(|(p, d)| (p, d.digest)).collect(),
        tags: opts.tags.clone(),
        warnings,
    })
}

/// The stages of a Dockerfile and which are needed.
struct Plan {
    global_args: Vec<(String, Option<String>, usize)>,
    stages: Vec<Stage>,
    target: usize,
    total_steps: usize,
}

struct Stage {
    from: Instruction,
    alias: Option<String>,
    body: Vec<Instruction>,
}

impl Plan {
    fn new(
        df: &dockerfile::Dockerfile,
        file: &str,
        opts: &BuildOptions,
        platform: &Platform,
    ) -> Result<Self, BuildError> {
        let derr = |line: usize, message: String| BuildError::Dockerfile {
            file: file.to_owned(),
            line,
            message,
        };
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for ins in &df.instructions {
            match (&ins.kind, stages.last_mut()) {
                (Kind::Run(_), _) => return Err(derr(ins.line, RUN_UNSUPPORTED.to_owned())),
                (Kind::Onbuild(_), _) => {
                    return Err(derr(ins.line, "ONBUILD is not supported".to_owned()));
                }
                (Kind::From { alias, .. }, _) => {
                    if let Some(a) = alias
                        && stages.iter().any(|s| s.alias.as_deref() == Some(a))
                    {
                        return Err(derr(ins.line, format!("duplicate stage name {a:?}")));
                    }
                    stages.push(Stage {
                        from: ins.clone(),
                        alias: alias.clone(),
                        body: Vec::new(),
                    });
                }
                (Kind::Arg(args), None) => {
                    global_args.extend(args.iter().map(|(n, d)| (n.clone(), d.clone(), ins.line)));
                }
                (_, None) => {
                    return Err(derr(
                        ins.line,
                        format!(
                            "{} before the first FROM: only ARG may come before FROM",
                            ins.keyword
                        ),
                    ));
                }
                (_, Some(stage)) => stage.body.push(ins.clone()),
            }
        }
        if stages.is_empty() {
            return Err(derr(1, "the Dockerfile has no FROM instruction".to_owned()));
        }
        let target = match &opts.target {
            Some(t) => stages
                .iter()
                .position(|s| s.alias.as_deref() == Some(t.to_ascii_lowercase().as_str()))
                .ok_or_else(|| {
                    BuildError::Options(format!("target stage {t:?} not found in {file}"))
                })?,
            None => stages.len() - 1,
        };
        let mut plan = Self {
            global_args,
            stages,
            target,
            total_steps: 0,
        };
        // Count the steps of the stages the target needs, for the progress display.
        let meta = plan.meta_args(opts, platform);
        let lookup = |n: &str| meta.get(n).cloned();
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !needed.insert(i) {
                continue;
            }
            let stage = &plan.stages[i];
            let mut refs = Vec::new();
            if let Kind::From { image, .. } = &stage.from.kind {
                refs.push(dockerfile::expand_word(image, &lookup, df.escape).unwrap_or_default());
            }
            for ins in &stage.body {
                if let Some(from) = ins.flag("from") {
                    refs.push(
                        dockerfile::expand_word(from, &lookup, df.escape).unwrap_or_default(),
                    );
                }
            }
            for r in refs {
                if let Some(j) = plan.stage_index(&r, i) {
                    todo.push(j);
                }
            }
        }
        plan.total_steps = needed.iter().map(|i| 1 + plan.stages[*i].body.len()).sum();
        Ok(plan)
    }

    /// The stage a name refers to (by alias or number), if it is before `before`.
    fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        if let Some(i) = self.stages[..before]
            .iter()
            .position(|s| s.alias.as_deref() == Some(lower.as_str()))
        {
            return Some(i);
        }
        name.parse::<usize>().ok().filter(|i| *i < before)
    }

    /// Values visible to FROM lines: global ARGs (with build-arg overrides) and platform args.
    fn meta_args(&self, opts: &BuildOptions, platform: &Platform) -> BTreeMap<String, String> {
        let mut m = platform_args(platform);
        for (name, default, _) in &self.global_args {
            let value = opts.build_args.get(name).cloned().or_else(|| {
                default.as_ref().map(|d| {
                    dockerfile::expand_word(d, &|n| m.get(n).cloned(), '\\')
                        .unwrap_or_else(|_| d.clone())
                })
            });
            if let Some(v) = value {
                m.insert(name.clone(), v);
            }
        }
        m
    }
}

fn platform_args(target: &Platform) -> BTreeMap<String, String> {
    let host = Platform::host();
    let mut m = BTreeMap::new();
    m.insert("TARGETPLATFORM".into(), target.to_string());
    m.insert("TARGETOS".into(), target.os.clone());
    m.insert("TARGETARCH".into(), target.architecture.clone());
    m.insert(
        "TARGETVARIANT".into(),
        target.variant.clone().unwrap_or_default(),
    );
    m.insert("BUILDPLATFORM".into(), host.to_string());
    m.insert("BUILDOS".into(), host.os.clone());
    m.insert("BUILDARCH".into(), host.architecture.clone());
    m.insert(
        "BUILDVARIANT".into(),
        host.variant.clone().unwrap_or_default(),
    );
    m
}

/// A built stage: its configuration and layers.
#[derive(Clone)]
struct StageResult {
    config: ImageConfigFile,
    layers: Vec<LayerInfo>,
    /// Directories known in the stage's filesystem (path → mode, uid, gid).
    dirs: BTreeMap<String, (u32, u64, u64)>,
    /// Line of the last USER instruction in this stage (or the FROM line).
    user_line: usize,
    from_line: usize,
}

struct Builder<'a> {
    store: &'a ImageStore,
    txn: &'a WriteTxn<'a>,
    plan: &'a Plan,
    escape: char,
    file: &'a str,
    context: &'a Path,
    ignore: &'a DockerIgnore,
    opts: &'a BuildOptions,
    platform: &'a Platform,
    epoch: u64,
    created: &'a str,
    results: HashMap<usize, StageResult>,
    layer_cache: &'a mut HashMap<String, (LayerInfo, u64)>,
    flattened: HashMap<String, tempfile::TempDir>,
    step: usize,
    platform_label: Option<String>,
    lints: bool,
    warnings: Vec<Lint>,
    consumed: BTreeSet<String>,
}

/// One entry of a layer being made.
#[derive(Debug, Clone)]
enum Content {
    Dir,
    File { source: PathBuf, size: u64 },
    Symlink(PathBuf),
}

#[derive(Debug, Clone)]
struct Entry {
    content: Content,
    mode: u32,
    uid: u64,
    gid: u64,
}

impl<'a> Builder<'a> {
    fn derr(&self, line: usize, message: impl Into<String>) -> BuildError {
        BuildError::Dockerfile {
            file: self.file.to_owned(),
            line,
            message: message.into(),
        }
    }

    fn lint(&mut self, line: usize, code: &'static str, message: impl Into<String>) {
        if self.lints {
            self.warnings.push(Lint {
                file: self.file.to_owned(),
                line,
                code,
                message: message.into(),
            });
        }
    }

    fn announce(&mut self, ins: &Instruction, progress: &mut dyn FnMut(BuildEvent)) {
        self.step += 1;
        progress(BuildEvent::Step {
            platform: self.platform_label.clone(),
            index: self.step,
            total: self.plan.total_steps,
            text: format!(
                "{} {}",
                ins.keyword,
                ins.text.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
        });
    }

    fn build_stage(
        &mut self,
        idx: usize,
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<StageResult, BuildError> {
        if let Some(r) = self.results.get(&idx) {
            return Ok(r.clone());
        }
        let stage = &self.plan.stages[idx];
        let meta = self.plan.meta_args(self.opts, self.platform);
        for (name, _, _) in &self.plan.global_args {
            self.consumed.insert(name.clone());
        }
        let escape = self.escape;
        let from = &stage.from;
        let Kind::From { image, .. } = &from.kind else {
            unreachable!("stages start with FROM")
        };
        let image = dockerfile::expand_word(image, &|n| meta.get(n).cloned(), escape)
            .map_err(|e| self.derr(from.line, format!("FROM: {e}")))?;
        let base_platform = match from.flag("platform") {
            Some(p) => {
                let p = dockerfile::expand_word(p, &|n| meta.get(n).cloned(), escape)
                    .map_err(|e| self.derr(from.line, format!("FROM --platform: {e}")))?;
                Platform::parse(&p).map_err(|e| self.derr(from.line, e.to_string()))?
            }
            None => self.platform.clone(),
        };
        // A referenced earlier stage is built first.
        let mut result = if image.eq_ignore_ascii_case("scratch") {
            self.announce(from, progress);
            StageResult {
                config: ImageConfigFile {
                    architecture: self.platform.architecture.clone(),
                    os: self.platform.os.clone(),
                    variant: self.platform.variant.clone(),
                    rootfs: RootFs::default(),
                    ..Default::default()
                },
                layers: Vec::new(),
                dirs: BTreeMap::new(),
                user_line: from.line,
                from_line: from.line,
            }
        } else if let Some(j) = self.plan.stage_index(&image, idx) {
            let r = self.build_stage(j, progress)?;
            self.announce(from, progress);
            r
        } else {
            self.announce(from, progress);
            if self.lints && !image.contains('@') {
                match crate::reference::Reference::parse(&image) {
                    Ok(crate::reference::Reference::Named { tag: Some(t), .. }) if t == "latest" && image.contains(':') => {
                        self.lint(from.line, "DL3007", "Using latest is prone to errors if the image will ever update. Pin the version explicitly to a release tag")
                    }
                    Ok(crate::reference::Reference::Named { .. }) if !image.rsplit('/').next().unwrap_or("").contains(':') => {
                        self.lint(from.line, "DL3006", "Always tag the version of an image explicitly")
                    }
                    _ => {}
                }
            }
            let info = self.store.resolve_for(&image, Some(&base_platform)).map_err(|e| match e {
                StoreError::NotFound(_) => self.derr(
                    from.line,
                    format!("FROM {image}: image not found in the image store (aos does not pull from registries yet: build it or aos image import it first)"),
                ),
                other => self.derr(from.line, format!("FROM {image}: {other}")),
            })?;
            let dirs = self.scan_dirs(&info.layers)?;
            let mut config = info.config.clone();
            config.created = None;
            StageResult {
                config,
                layers: info.layers.clone(),
                dirs,
                user_line: from.line,
                from_line: from.line,
            }
        };
        result.from_line = from.line;
        result.user_line = from.line;
        if !image.eq_ignore_ascii_case("scratch") && self.plan.stage_index(&image, idx).is_none() {
            // A stored base keeps its platform; the image is for the target platform.
            result.config.architecture = self.platform.architecture.clone();
            result.config.os = self.platform.os.clone();
            result.config.variant = self.platform.variant.clone();
        }
        let mut st = StageState {
            args: BTreeMap::new(),
            shell: result
                .config
                .config
                .shell
                .clone()
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]),
            cmd_set: false,
        };
        let body = stage.body.clone();
        for ins in &body {
            self.announce(ins, progress);
            self.instruction(ins, &mut result, &mut st, &meta, progress)?;
        }
        self.results.insert(idx, result.clone());
        Ok(result)
    }

    /// Directories of a stored base image, so COPY keeps their metadata and knows `dest` is a dir.
    fn scan_dirs(
        &self,
        layers: &[LayerInfo],
    ) -> Result<BTreeMap<String, (u32, u64, u64)>, BuildError> {
        let mut dirs = BTreeMap::new();
        for layer in layers {
            let compression =
                LayerCompression::of_media_type(&layer.media_type).ok_or_else(|| {
                    StoreError::Unsupported(format!(
                        "layer {} has media type {}",
                        layer.digest, layer.media_type
                    ))
                })?;
            let file = BufReader::with_capacity(1 << 20, self.store.open_blob(&layer.digest)?);
            let stream = crate::store::open_layer_stream(file, compression)
                .map_err(io_ctx(format!("layer {}", layer.digest)))?;
            let mut archive = tar::Archive::new(stream);
            for e in archive
                .entries()
                .map_err(io_ctx(format!("layer {}", layer.digest)))?
            {
                let e = e.map_err(io_ctx(format!("layer {}", layer.digest)))?;
                let path = clean_rel(&String::from_utf8_lossy(&e.path_bytes()));
                let h = e.header();
                if h.entry_type() == tar::EntryType::Directory {
                    dirs.insert(
                        path,
                        (
                            h.mode().unwrap_or(0o755) & 0o7777,
                            h.uid().unwrap_or(0),
                            h.gid().unwrap_or(0),
                        ),
                    );
                } else if let Some(hidden) =
                    path.rsplit('/').next().and_then(|n| n.strip_prefix(".wh."))
                {
                    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    if hidden != ".wh..opq" {
                        let gone = if parent.is_empty() {
                            hidden.to_owned()
                        } else {
                            format!("{parent}/{hidden}")
                        };
                        dirs.retain(|k, _| k != &gone && !k.starts_with(&format!("{gone}/")));
                    }
                } else {
                    dirs.remove(&path);
                }
            }
        }
        Ok(dirs)
    }

    fn vars<'v>(
        &self,
        result: &'v StageResult,
        st: &'v StageState,
    ) -> impl Fn(&str) -> Option<String> + 'v {
        let pargs = platform_args(self.platform);
        move |name: &str| {
            if let Some(v) = result.config.config.env_var(name) {
                return Some(v.to_owned());
            }
            if let Some(v) = st.args.get(name) {
                return v.clone();
            }
            pargs.get(name).cloned()
        }
    }

    fn expand(
        &self,
        line: usize,
        raw: &str,
        result: &StageResult,
        st: &StageState,
    ) -> Result<String, BuildError> {
        let vars = self.vars(result, st);
        dockerfile::expand_word(raw, &vars, self.escape).map_err(|e| self.derr(line, e.to_string()))
    }

    fn instruction(
        &mut self,
        ins: &Instruction,
        result: &mut StageResult,
        st: &mut StageState,
        meta: &BTreeMap<String, String>,
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<(), BuildError> {
        let line = ins.line;
        let mut made_layer = false;
        match &ins.kind {
            Kind::Env(pairs) => {
                for (k, v) in pairs {
                    let k = self.expand(line, k, result, st)?;
                    let v = self.expand(line, v, result, st)?;
                    result.config.config.set_env(&k, &v);
                }
            }
            Kind::Arg(args) => {
                for (name, default) in args {
                    self.consumed.insert(name.clone());
                    let value = match self.opts.build_args.get(name) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(self.expand(line, d, result, st)?),
                            None => meta.get(name).cloned().filter(|_| {
                                self.plan.global_args.iter().any(|(n, _, _)| n == name)
                                    || platform_args(self.platform).contains_key(name)
                            }),
                        },
                    };
                    st.args.insert(name.clone(), value);
                }
            }
            Kind::Label(pairs) => {
                for (k, v) in pairs {
                    let k = self.expand(line, k, result, st)?;
                    let v = self.expand(line, v, result, st)?;
                    result.config.config.labels.insert(k, v);
                }
            }
            Kind::Maintainer(name) => {
                self.lint(line, "DL4000", "MAINTAINER is deprecated");
                result.config.author = Some(name.clone());
            }
            Kind::User(raw) => {
                let user = self.expand(line, raw, result, st)?;
                if user.is_empty() {
                    return Err(self.derr(line, "USER needs a user name or uid"));
                }
                result.config.config.user = Some(user);
                result.user_line = line;
            }
            Kind::Workdir(raw) => {
                let dir = self.expand(line, raw, result, st)?;
                if !dir.starts_with('/') {
                    self.lint(line, "DL3000", "Use absolute WORKDIR");
                }
                let joined = join_dest(
                    result.config.config.working_dir.as_deref().unwrap_or("/"),
                    &dir,
                );
                result.config.config.working_dir = Some(joined);
            }
            Kind::Expose(raw) => {
                for w in raw {
                    let w = self.expand(line, w, result, st)?;
                    for port in expose_ports(&w).map_err(|m| self.derr(line, m))? {
                        result.config.config.exposed_ports.insert(port, Empty {});
                    }
                }
            }
            Kind::Volume(raw) => {
                for w in raw {
                    let v = self.expand(line, w, result, st)?;
                    if v.is_empty() {
                        return Err(self.derr(line, "VOLUME paths must not be empty"));
                    }
                    result.config.config.volumes.insert(v, Empty {});
                }
            }
            Kind::StopSignal(raw) => {
                let sig = self.expand(line, raw, result, st)?;
                if !valid_signal(&sig) {
                    return Err(self.derr(line, format!("STOPSIGNAL: invalid signal {sig:?}")));
                }
                result.config.config.stop_signal = Some(sig);
            }
            Kind::Shell(v) => {
                st.shell = v.clone();
                result.config.config.shell = Some(v.clone());
            }
            Kind::Entrypoint(c) => {
                if matches!(c, Cmdline::Shell(_)) {
                    self.lint(
                        line,
                        "DL3025",
                        "Use arguments JSON notation for CMD and ENTRYPOINT arguments",
                    );
                }
                let v = self.command(c, st);
                result.config.config.entrypoint = if v.is_empty() { None } else { Some(v) };
                if !st.cmd_set {
                    // As Docker: an ENTRYPOINT resets a CMD inherited from the base image.
                    result.config.config.cmd = None;
                }
            }
            Kind::Cmd(c) => {
                if matches!(c, Cmdline::Shell(_)) {
                    self.lint(
                        line,
                        "DL3025",
                        "Use arguments JSON notation for CMD and ENTRYPOINT arguments",
                    );
                }
                let v = self.command(c, st);
                result.config.config.cmd = if v.is_empty() { None } else { Some(v) };
                st.cmd_set = true;
            }
            Kind::Healthcheck(None) => {
                result.config.config.healthcheck = Some(Healthcheck {
                    test: vec!["NONE".into()],
                    ..Default::default()
                });
            }
            Kind::Healthcheck(Some(c)) => {
                let test = match c {
                    Cmdline::Exec(v) => std::iter::once("CMD".to_owned())
                        .chain(v.iter().cloned())
                        .collect(),
                    Cmdline::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
                };
                let dur = |name: &str| -> Result<u64, BuildError> {
                    match ins.flag(name) {
                        None => Ok(0),
                        Some(v) => parse_duration(v)
                            .map_err(|m| self.derr(line, format!("HEALTHCHECK --{name}: {m}"))),
                    }
                };
                let retries = match ins.flag("retries") {
                    None => 0,
                    Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        self.derr(
                            line,
                            format!("HEALTHCHECK --retries: {v:?} is not a positive number"),
                        )
                    })?,
                };
                result.config.config.healthcheck = Some(Healthcheck {
                    test,
                    interval: dur("interval")?,
                    timeout: dur("timeout")?,
                    start_period: dur("start-period")?,
                    start_interval: dur("start-interval")?,
                    retries,
                });
            }
            Kind::Copy { add, args } => {
                self.copy(ins, *add, args, result, st, progress)?;
                made_layer = true;
            }
            Kind::From { .. } | Kind::Run(_) | Kind::Onbuild(_) => {
                unreachable!("handled by the plan")
            }
        }
        result.config.history.push(History {
            created: Some(self.created.to_owned()),
            created_by: Some(format!(
                "{} {}",
                ins.keyword,
                ins.text.split_whitespace().collect::<Vec<_>>().join(" ")
            )),
            comment: Some("aos.dockerfile.v0".to_owned()),
            empty_layer: !made_layer,
        });
        Ok(())
    }

    fn command(&self, c: &Cmdline, st: &StageState) -> Vec<String> {
        match c {
            Cmdline::Exec(v) => v.clone(),
            Cmdline::Shell(s) if s.is_empty() => Vec::new(),
            Cmdline::Shell(s) => st
                .shell
                .iter()
                .cloned()
                .chain(std::iter::once(s.clone()))
                .collect(),
        }
    }

    fn copy(
        &mut self,
        ins: &Instruction,
        add: bool,
        raw: &[String],
        result: &mut StageResult,
        st: &StageState,
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<(), BuildError> {
        let line = ins.line;
        let kw = &ins.keyword;
        for f in ["parents", "exclude", "checksum", "keep-git-dir"] {
            if ins.flags.iter().any(|fl| fl.name == f) {
                return Err(self.derr(line, format!("{kw} --{f} is not supported")));
            }
        }
        let mut words = Vec::with_capacity(raw.len());
        for w in raw {
            words.push(self.expand(line, w, result, st)?);
        }
        let dest_raw = words
            .pop()
            .expect("the parser requires a source and a destination");
        let sources = words;
        if add && let Some(url) = sources.iter().find(|s| is_url(s)) {
            return Err(self.derr(
                    line,
                    format!("ADD {url}: downloading is not supported (aos builds without network access): download it into the build context and COPY it"),
                ));
        }
        let (uid, gid) = match ins.flag("chown") {
            Some(c) => {
                let c = self.expand(line, c, result, st)?;
                parse_chown(&c).map_err(|m| self.derr(line, m))?
            }
            None => (0, 0),
        };
        let chmod = match ins.flag("chmod") {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        self.derr(
                            line,
                            format!("{kw} --chmod={m}: expected an octal mode such as 0755"),
                        )
                    })?,
            ),
            None => None,
        };
        // Where sources come from: the context (minus .dockerignore) or another stage/image.
        let (root, use_ignore, from_label): (PathBuf, bool, String) = match ins.flag("from") {
            Some(f) => {
                let f = self.expand(line, f, result, st)?;
                (
                    self.source_root(line, &f, progress)?,
                    false,
                    format!("--from={f}"),
                )
            }
            None => (self.context.to_path_buf(), true, "build context".to_owned()),
        };
        let mut resolved: Vec<(String, PathBuf)> = Vec::new();
        for src in &sources {
            let rel = clean_rel(src.trim_start_matches('/'));
            if rel == ".." || rel.starts_with("../") {
                return Err(self.derr(
                    line,
                    format!("{kw} {src}: the source is outside the build context"),
                ));
            }
            if has_meta(&rel) {
                let matches = self.glob(&root, &rel, use_ignore)?;
                if matches.is_empty() {
                    return Err(self.derr(line, format!("{kw} {src}: no source files were specified (nothing in the {from_label} matches)")));
                }
                for m in matches {
                    let path = self.follow(line, &root, &m)?;
                    resolved.push((m, path));
                }
            } else {
                if use_ignore && !rel.is_empty() && self.ignore.is_excluded(&rel) {
                    return Err(self.derr(
                        line,
                        format!("{kw} {src}: not found: it is excluded by .dockerignore"),
                    ));
                }
                let path = self.follow(line, &root, &rel)?;
                if fs::symlink_metadata(&path).is_err() {
                    return Err(
                        self.derr(line, format!("{kw} {src}: not found in the {from_label}"))
                    );
                }
                resolved.push((rel, path));
            }
        }
        let workdir = result
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".to_owned());
        let dest_abs = join_dest(&workdir, &dest_raw);
        let dest_rel = clean_rel(&dest_abs);
        let dest_is_dir = dest_raw.ends_with('/')
            || dest_raw == "."
            || dest_rel.is_empty()
            || result.dirs.contains_key(&dest_rel);
        if resolved.len() > 1 && !dest_is_dir {
            return Err(self.derr(line, format!("When using {kw} with more than one source file, the destination must be a directory and end with a /")));
        }

        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let mut any_archive = false;
        let mut archive_dirs = Vec::new();
        for (rel, path) in &resolved {
            let meta = fs::metadata(path).map_err(io_ctx(format!("{kw} {rel}")))?;
            if meta.is_dir() {
                self.add_dir_contents(
                    path,
                    rel,
                    &dest_rel,
                    use_ignore,
                    uid,
                    gid,
                    chmod,
                    &mut entries,
                )?;
                ensure_dir(&mut entries, &dest_rel, uid, gid, chmod.unwrap_or(0o755));
            } else if add && is_local_archive(path)? {
                any_archive = true;
                let tmp = tempfile::tempdir_in(self.store.root().join("tmp"))
                    .map_err(io_ctx("cannot create a temporary directory"))?;
                let reader = crate::store::open_layer_stream(
                    BufReader::new(File::open(path).map_err(io_ctx(format!("ADD {rel}")))?),
                    LayerCompression::None,
                )
                .map_err(|e| self.derr(line, format!("ADD {rel}: {e}")))?;
                crate::unpack::extract_layer(reader, tmp.path(), crate::unpack::Whiteouts::Apply)
                    .map_err(|e| self.derr(line, format!("ADD {rel}: {e}")))?;
                self.add_dir_contents(
                    tmp.path(),
                    "",
                    &dest_rel,
                    false,
                    uid,
                    gid,
                    chmod,
                    &mut entries,
                )?;
                ensure_dir(&mut entries, &dest_rel, uid, gid, 0o755);
                archive_dirs.push(tmp);
            } else {
                let name = Path::new(rel)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| rel.clone());
                let target = if dest_is_dir {
                    join_rel(&dest_rel, &name)
                } else {
                    dest_rel.clone()
                };
                if target.is_empty() {
                    return Err(self.derr(
                        line,
                        format!(
                            "{kw} {rel}: the destination is the root directory, not a file path"
                        ),
                    ));
                }
                let entry = file_entry(path, &meta, uid, gid, chmod);
                entries.insert(target, entry);
            }
        }
        if add && !any_archive {
            self.lint(
                line,
                "DL3020",
                "Use COPY instead of ADD for files and folders",
            );
        }
        // Parent directories: keep what the base has, else root-owned 0755.
        let paths: Vec<String> = entries.keys().cloned().collect();
        for p in paths {
            let mut cur = p.as_str();
            while let Some((parent, _)) = cur.rsplit_once('/') {
                if !entries.contains_key(parent) {
                    let (mode, puid, pgid) =
                        result.dirs.get(parent).copied().unwrap_or((0o755, 0, 0));
                    entries.insert(
                        parent.to_owned(),
                        Entry {
                            content: Content::Dir,
                            mode,
                            uid: puid,
                            gid: pgid,
                        },
                    );
                }
                cur = parent;
            }
        }
        let key = layer_key(&entries);
        let (layer, content_bytes) = match self.layer_cache.get(&key) {
            Some(hit) => hit.clone(),
            None => {
                let made = self.write_layer(&entries)?;
                self.layer_cache.insert(key, made.clone());
                made
            }
        };
        drop(archive_dirs);
        for (p, e) in &entries {
            match e.content {
                Content::Dir => {
                    result.dirs.insert(p.clone(), (e.mode, e.uid, e.gid));
                }
                _ => {
                    result.dirs.remove(p);
                }
            }
        }
        progress(BuildEvent::Layer {
            content_bytes,
            entries: entries.len(),
            descriptor: Descriptor::new(&layer.media_type, layer.digest.clone(), layer.size),
        });
        result.config.rootfs.diff_ids.push(layer.diff_id.clone());
        result.layers.push(layer);
        Ok(())
    }

    /// The flattened filesystem of a stage or stored image, for `COPY --from`.
    fn source_root(
        &mut self,
        line: usize,
        from: &str,
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<PathBuf, BuildError> {
        if let Some(dir) = self.flattened.get(from) {
            return Ok(dir.path().to_path_buf());
        }
        let current = self.plan.stages.len();
        let layers = match self.plan.stage_index(from, current) {
            Some(j) => self.build_stage(j, progress)?.layers,
            None => {
                let info = self
                    .store
                    .resolve_for(from, Some(self.platform))
                    .map_err(|e| {
                        self.derr(
                            line,
                            format!("--from={from}: not a previous stage, and {e}"),
                        )
                    })?;
                info.layers
            }
        };
        let tmp = tempfile::tempdir_in(self.store.root().join("tmp"))
            .map_err(io_ctx("cannot create a temporary directory"))?;
        self.store
            .flatten_into(&layers, tmp.path())
            .map_err(|e| self.derr(line, format!("--from={from}: {e}")))?;
        let path = tmp.path().to_path_buf();
        self.flattened.insert(from.to_owned(), tmp);
        Ok(path)
    }

    /// Follows a symlink named by a COPY source, staying inside `root`.
    fn follow(&self, line: usize, root: &Path, rel: &str) -> Result<PathBuf, BuildError> {
        let mut cur = rel.to_owned();
        for _ in 0..40 {
            let mut walked = String::new();
            let mut redirected = None;
            for comp in cur.split('/').filter(|c| !c.is_empty()) {
                let next = join_rel(&walked, comp);
                let path = root.join(&next);
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => {
                        let target = fs::read_link(&path)
                            .map_err(io_ctx(format!("cannot read link {}", path.display())))?;
                        let t = target.to_string_lossy();
                        let base = if t.starts_with('/') {
                            String::new()
                        } else {
                            walked.clone()
                        };
                        let rest = cur
                            .split('/')
                            .filter(|c| !c.is_empty())
                            .skip(next.split('/').count())
                            .collect::<Vec<_>>()
                            .join("/");
                        let joined = clean_rel(&format!("{base}/{t}/{rest}"));
                        if joined == ".." || joined.starts_with("../") {
                            return Err(self.derr(line, format!("COPY {rel}: the source is a symlink that leads outside the build context")));
                        }
                        redirected = Some(joined);
                        break;
                    }
                    _ => walked = next,
                }
            }
            match redirected {
                Some(r) => cur = r,
                None => return Ok(root.join(cur)),
            }
        }
        Err(self.derr(
            line,
            format!("COPY {rel}: too many levels of symbolic links"),
        ))
    }

    fn glob(
        &self,
        root: &Path,
        pattern: &str,
        use_ignore: bool,
    ) -> Result<Vec<String>, BuildError> {
        let mut out = Vec::new();
        let depth = pattern.split('/').count();
        let mut stack = vec![(String::new(), 0usize)];
        while let Some((dir, d)) = stack.pop() {
            let path = root.join(&dir);
            let Ok(rd) = fs::read_dir(&path) else {
                continue;
            };
            for e in rd {
                let e = e.map_err(io_ctx(format!("cannot list {}", path.display())))?;
                let rel = join_rel(&dir, &e.file_name().to_string_lossy());
                if use_ignore && self.ignore.is_excluded(&rel) {
                    continue;
                }
                if d + 1 == depth {
                    if glob_match(pattern, &rel) {
                        out.push(rel);
                    }
                } else if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push((rel, d + 1));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_dir_contents(
        &self,
        dir: &Path,
        rel: &str,
        dest: &str,
        use_ignore: bool,
        uid: u64,
        gid: u64,
        chmod: Option<u32>,
        entries: &mut BTreeMap<String, Entry>,
    ) -> Result<(), BuildError> {
        let mut stack = vec![(dir.to_path_buf(), rel.to_owned(), dest.to_owned())];
        while let Some((path, rel, dest)) = stack.pop() {
            let rd =
                fs::read_dir(&path).map_err(io_ctx(format!("cannot list {}", path.display())))?;
            for e in rd {
                let e = e.map_err(io_ctx(format!("cannot list {}", path.display())))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let child_rel = join_rel(&rel, &name);
                if use_ignore && self.ignore.is_excluded(&child_rel) {
                    // An excluded directory may still hold re-included (`!`) paths.
                    if !(self.ignore.has_exceptions()
                        && e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    {
                        continue;
                    }
                }
                let child_dest = join_rel(&dest, &name);
                let meta = fs::symlink_metadata(e.path())
                    .map_err(io_ctx(format!("cannot stat {}", e.path().display())))?;
                let ft = meta.file_type();
                if ft.is_dir() {
                    let included = !(use_ignore && self.ignore.is_excluded(&child_rel));
                    if included {
                        entries.insert(
                            child_dest.clone(),
                            file_entry(&e.path(), &meta, uid, gid, chmod),
                        );
                    }
                    stack.push((e.path(), child_rel, child_dest));
                } else if ft.is_file() || ft.is_symlink() {
                    entries.insert(child_dest, file_entry(&e.path(), &meta, uid, gid, chmod));
                } else {
                    tracing::warn!(path = %e.path().display(), "skipping a special file in the build context");
                }
            }
        }
        Ok(())
    }

    /// Writes a deterministic gzipped layer tar to the store.
    fn write_layer(
        &self,
        entries: &BTreeMap<String, Entry>,
    ) -> Result<(LayerInfo, u64), BuildError> {
        let blob = self.txn.blob_writer()?;
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(blob, flate2::Compression::new(6));
        let mut tar = tar::Builder::new(HashingWriter::new(gz));
        let mut content_bytes = 0;
        for (path, e) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(self.epoch);
            h.set_uid(e.uid);
            h.set_gid(e.gid);
            h.set_mode(e.mode);
            let werr = |err: io::Error| BuildError::Io {
                context: format!("cannot write {path} to a layer"),
                source: err,
            };
            match &e.content {
                Content::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{path}/"), io::empty())
                        .map_err(werr)?;
                }
                Content::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, path, target).map_err(werr)?;
                }
                Content::File { source, size } => {
                    let file = fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                        .open(source)
                        .map_err(io_ctx(format!("cannot open {}", source.display())))?;
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(*size);
                    let reader = Exact {
                        inner: BufReader::with_capacity(1 << 20, file),
                        remaining: *size,
                        path: source.clone(),
                    };
                    tar.append_data(&mut h, path, reader).map_err(werr)?;
                    content_bytes += size;
                }
            }
        }
        let hashing = tar.into_inner().map_err(io_ctx("cannot finish a layer"))?;
        let (gz, diff_id, _) = hashing.finish();
        let blob = gz.finish().map_err(io_ctx("cannot finish a layer"))?;
        let staged = blob.finish()?;
        let size = staged.size;
        let digest = self.txn.commit(staged, "layer", None)?;
        Ok((
            LayerInfo {
                digest,
                diff_id,
                size,
                media_type: oci::MEDIA_TYPE_OCI_LAYER_GZIP.to_owned(),
            },
            content_bytes,
        ))
    }

    fn final_lints(&mut self, result: &StageResult) {
        let user = result.config.config.user.clone().unwrap_or_default();
        let name = user.split(':').next().unwrap_or("");
        if name.is_empty() || name == "root" || name == "0" {
            let msg = if user.is_empty() {
                "Last USER should not be root: the final stage sets no USER, so the image runs as root"
            } else {
                "Last USER should not be root"
            };
            self.lint(result.user_line, "DL3002", msg);
        }
        let hc = result.config.config.healthcheck.as_ref();
        if hc.is_none() || hc.is_some_and(|h| h.test.first().map(String::as_str) == Some("NONE")) {
            self.lint(
                result.from_line,
                "DL3057",
                "HEALTHCHECK instruction missing",
            );
        }
    }

    /// Writes the config and manifest of the target stage; returns the manifest descriptor.
    fn write_image(&self, result: &StageResult) -> Result<Descriptor, BuildError> {
        let mut config = result.config.clone();
        config.created = Some(self.created.to_owned());
        let config_bytes = oci::to_canonical_json(&config);
        let config_digest = self.txn.put_bytes(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_OCI_MANIFEST.to_owned()),
            config: Descriptor::new(
                oci::MEDIA_TYPE_OCI_CONFIG,
                config_digest,
                config_bytes.len() as u64,
            ),
            layers: result
                .layers
                .iter()
                .map(|l| Descriptor::new(&l.media_type, l.digest.clone(), l.size))
                .collect(),
            annotations: None,
        };
        let bytes = oci::to_canonical_json(&manifest);
        let digest = self.txn.put_bytes(&bytes)?;
        Ok(Descriptor::new(
            oci::MEDIA_TYPE_OCI_MANIFEST,
            digest,
            bytes.len() as u64,
        ))
    }
}

struct StageState {
    args: BTreeMap<String, Option<String>>,
    shell: Vec<String>,
    cmd_set: bool,
}

/// A reader that must yield exactly `remaining` bytes (a file changed during the build otherwise).
struct Exact<R> {
    inner: R,
    remaining: u64,
    path: PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being read", self.path.display()),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// What determines a layer's bytes within one build: paths, metadata and sources.
fn layer_key(entries: &BTreeMap<String, Entry>) -> String {
    let mut h = crate::digest::Hasher::new();
    for (path, e) in entries {
        let content = match &e.content {
            Content::Dir => "d".to_owned(),
            Content::File { source, size } => format!("f{}:{size}", source.display()),
            Content::Symlink(t) => format!("l{}", t.display()),
        };
        h.update(format!("{path}\0{}\0{}\0{}\0{content}\0", e.mode, e.uid, e.gid).as_bytes());
    }
    h.finish().0.to_string()
}

fn file_entry(path: &Path, meta: &fs::Metadata, uid: u64, gid: u64, chmod: Option<u32>) -> Entry {
    let ft = meta.file_type();
    let content = if ft.is_symlink() {
        Content::Symlink(fs::read_link(path).unwrap_or_default())
    } else if ft.is_dir() {
        Content::Dir
    } else {
        Content::File {
            source: path.to_path_buf(),
            size: meta.len(),
        }
    };
    let mode = match (&content, chmod) {
        (Content::Symlink(_), _) => 0o777,
        (_, Some(m)) => m,
        _ => meta.mode() & 0o7777,
    };
    Entry {
        content,
        mode,
        uid,
        gid,
    }
}

fn ensure_dir(entries: &mut BTreeMap<String, Entry>, path: &str, uid: u64, gid: u64, mode: u32) {
    if !path.is_empty() {
        entries.entry(path.to_owned()).or_insert(Entry {
            content: Content::Dir,
            mode,
            uid,
            gid,
        });
    }
}

fn join_rel(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}/{b}")
    }
}

/// Joins a destination to the working directory and cleans it (always absolute).
fn join_dest(workdir: &str, dest: &str) -> String {
    let joined = if dest.starts_with('/') {
        dest.to_owned()
    } else {
        format!("{workdir}/{dest}")
    };
    format!("/{}", clean_rel(&joined).trim_start_matches("../"))
}

fn is_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://")
        || l.starts_with("https://")
        || l.starts_with("git@")
        || l.starts_with("git://")
        || l.starts_with("ssh://")
}

/// Whether a local file is a tar archive ADD should extract (plain or gzip; by content).
fn is_local_archive(path: &Path) -> Result<bool, BuildError> {
    let mut f = File::open(path).map_err(io_ctx(format!("cannot open {}", path.display())))?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        let r = f
            .read(&mut head[n..])
            .map_err(io_ctx(format!("cannot read {}", path.display())))?;
        if r == 0 {
            break;
        }
        n += r;
    }
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        // A gzip file: extract when it holds a tar.
        let mut f = File::open(path).map_err(io_ctx(format!("cannot open {}", path.display())))?;
        io::Seek::seek(&mut f, io::SeekFrom::Start(0)).map_err(io_ctx("seek"))?;
        let mut gz = flate2::read::MultiGzDecoder::new(f);
        let mut inner = [0u8; 512];
        let mut m = 0;
        while m < inner.len() {
            match gz.read(&mut inner[m..]) {
                Ok(0) | Err(_) => break,
                Ok(r) => m += r,
            }
        }
        return Ok(m == 512 && &inner[257..262] == b"ustar");
    }
    Ok(n == 512 && &head[257..262] == b"ustar")
}

fn parse_chown(s: &str) -> Result<(u64, u64), String> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, g),
        None => (s, s),
    };
    let num = |v: &str| v.parse::<u32>().map(u64::from);
    match (num(u), num(g)) {
        (Ok(u), Ok(g)) => Ok((u, g)),
        _ if u == "root" && (g == "root" || g == u) => Ok((0, 0)),
        _ => Err(format!(
            "--chown={s}: user and group names need the image's /etc/passwd and /etc/group, which aos does not read yet; use numeric ids such as --chown=1001:1001"
        )),
    }
}

fn expose_ports(w: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match w.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (w, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("EXPOSE {w}: unknown protocol {proto:?}"));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("EXPOSE {w}: invalid port {p:?}"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(ports)?;
            (p, p)
        }
    };
    if hi < lo || hi - lo > 1024 {
        return Err(format!("EXPOSE {w}: invalid port range"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+' || c == '-')
}

/// Parses a Go duration (`30s`, `1m30s`, `500ms`, `1h`) into nanoseconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    if total > 0.0 && total < 1e6 {
        return Err(format!("duration {s:?} is below the 1ms minimum"));
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("1x").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(expose_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(expose_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expose_ports("8000-8002").unwrap().len(), 3);
        assert!(expose_ports("0").is_err());
        assert!(expose_ports("80/xyz").is_err());
    }

    #[test]
    fn dest_joins() {
        assert_eq!(join_dest("/", "app"), "/app");
        assert_eq!(join_dest("/app", "bin/"), "/app/bin");
        assert_eq!(join_dest("/app", "/etc/x"), "/etc/x");
        assert_eq!(join_dest("/", "../../x"), "/x");
    }

    #[test]
    fn chown() {
        assert_eq!(parse_chown("1001").unwrap(), (1001, 1001));
        assert_eq!(parse_chown("1001:2000").unwrap(), (1001, 2000));
        assert!(parse_chown("app").is_err());
    }
}
