//! Builder tests: reproducibility, COPY semantics, multi-platform, stages, errors and lints.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aos_image::build::{BuildError, BuildEvent, BuildOptions, BuildOutput, build};
use aos_image::oci::Platform;
use aos_image::store::ImageStore;

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

fn opts(ctx: &Path, tag: &str) -> BuildOptions {
    BuildOptions {
        context: ctx.to_path_buf(),
        tags: vec![tag.to_owned()],
        source_date_epoch: Some(0),
        ..Default::default()
    }
}

fn run(store: &ImageStore, o: &BuildOptions) -> Result<(BuildOutput, Vec<String>), BuildError> {
    let mut log = Vec::new();
    let out = build(store, o, &mut |e| match e {
        BuildEvent::Step {
            index, total, text, ..
        } => log.push(format!("[{index}/{total}] {text}")),
        BuildEvent::Warning(w) => log.push(w.to_string()),
        BuildEvent::Layer { .. } => {}
    })?;
    Ok((out, log))
}

/// Every file path in the image's flattened filesystem, with contents for files.
fn files(store: &ImageStore, reference: &str) -> BTreeMap<String, String> {
    let info = store.resolve(reference).unwrap();
    let dir = tempfile::tempdir().unwrap();
    store.flatten_into(&info.layers, dir.path()).unwrap();
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(dir.path())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                stack.push(e.path());
            } else if ft.is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", fs::read_link(e.path()).unwrap().display()),
                );
            } else {
                out.insert(rel, fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}

const APP_DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
FROM scratch
LABEL org.opencontainers.image.title="app"
COPY bin/app /app/app
WORKDIR /app
ENV PORT=3000
USER 1001:1001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["/app/app", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/app"]
"#;

#[test]
fn same_inputs_same_digest_and_mtime_does_not_matter() {
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", APP_DOCKERFILE);
    write(ctx.path(), "bin/app", "binary v1");
    let (a, log) = run(&store, &opts(ctx.path(), "app:1")).unwrap();
    assert_eq!(log[0], "[1/10] FROM scratch");
    assert!(
        log.iter().all(|l| !l.contains(" warning: ")),
        "a clean Dockerfile has no warnings: {log:?}"
    );
    let (b, _) = run(&store, &opts(ctx.path(), "app:1")).unwrap();
    assert_eq!(a.descriptor.digest, b.descriptor.digest);

    // A fresh store and a touched file: still the same digest.
    let data2 = tempfile::tempdir().unwrap();
    let store2 = ImageStore::open(data2.path()).unwrap();
    let f = fs::File::options()
        .write(true)
        .open(ctx.path().join("bin/app"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();
    let (c, _) = run(&store2, &opts(ctx.path(), "app:1")).unwrap();
    assert_eq!(a.descriptor.digest, c.descriptor.digest);

    // Changed content: a different digest.
    write(ctx.path(), "bin/app", "binary v2");
    let (d, _) = run(&store, &opts(ctx.path(), "app:1")).unwrap();
    assert_ne!(a.descriptor.digest, d.descriptor.digest);
    // A changed mode too.
    fs::set_permissions(
        ctx.path().join("bin/app"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let (e, _) = run(&store, &opts(ctx.path(), "app:1")).unwrap();
    assert_ne!(d.descriptor.digest, e.descriptor.digest);

    let info = store.resolve("app:1").unwrap();
    let cfg = &info.config.config;
    assert_eq!(
        cfg.entrypoint.as_deref(),
        Some(&["/app/app".to_owned()][..])
    );
    assert_eq!(cfg.user.as_deref(), Some("1001:1001"));
    assert_eq!(cfg.working_dir.as_deref(), Some("/app"));
    assert_eq!(cfg.env, vec!["PORT=3000".to_owned()]);
    assert!(cfg.exposed_ports.contains_key("3000/tcp"));
    assert_eq!(cfg.stop_signal.as_deref(), Some("SIGTERM"));
    let hc = cfg.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD", "/app/app", "healthcheck"]);
    assert_eq!(
        (hc.interval, hc.timeout, hc.retries),
        (30_000_000_000, 5_000_000_000, 3)
    );
    assert_eq!(info.config.created.as_deref(), Some("1970-01-01T00:00:00Z"));
    assert_eq!(info.layers.len(), 1);
    assert_eq!(
        info.config.history.len(),
        9,
        "FROM scratch adds no history entry"
    );
    assert_eq!(
        files(&store, "app:1").get("app/app").map(String::as_str),
        Some("binary v2")
    );
}

#[test]
fn copy_semantics_and_dockerignore() {
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM scratch\nCOPY dir /d\nCOPY dir /e/\nCOPY one.txt /f\nCOPY one.txt /g/\nCOPY *.txt /txt/\nCOPY --chmod=600 --chown=7:8 one.txt /owned\nWORKDIR /w\nCOPY one.txt rel\nCOPY link /via-link\n",
    );
    write(c, "dir/a", "A");
    write(c, "dir/sub/b", "B");
    write(c, "dir/skip.md", "no");
    write(c, "one.txt", "1");
    write(c, "two.txt", "2");
    write(c, "secret.txt", "s");
    std::os::unix::fs::symlink("one.txt", c.join("link")).unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", c.join("dir/escape")).unwrap();
    write(c, ".dockerignore", "**/*.md\nsecret.txt\n");
    run(&store, &opts(c, "copy:1")).unwrap();
    let f = files(&store, "copy:1");
    for (path, want) in [
        ("d/a", "A"),
        ("d/sub/b", "B"),
        ("e/a", "A"),
        ("f", "1"),
        ("g/one.txt", "1"),
        ("txt/one.txt", "1"),
        ("txt/two.txt", "2"),
        ("w/rel", "1"),
        ("via-link", "1"),
        // A symlink inside a copied directory is copied as a symlink, never followed.
        ("d/escape", "-> ../../etc/passwd"),
    ] {
        assert_eq!(
            f.get(path).map(String::as_str),
            Some(want),
            "{path} in {f:?}"
        );
    }
    assert!(
        !f.contains_key("d/skip.md"),
        "dockerignore applies inside directories"
    );
    assert!(
        !f.contains_key("txt/secret.txt"),
        "dockerignore applies to globs"
    );

    // Ownership and mode in the layer tar.
    let info = store.resolve("copy:1").unwrap();
    let mut found = false;
    for layer in &info.layers {
        let blob = fs::File::open(store.blob_path(&layer.digest)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            if e.path().unwrap().to_str() == Some("owned") {
                let h = e.header();
                assert_eq!(
                    (h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap()),
                    (7, 8, 0o600)
                );
                assert_eq!(h.mtime().unwrap(), 0);
                found = true;
            }
        }
    }
    assert!(found);

    // Several sources need a directory destination.
    write(
        c,
        "Dockerfile",
        "FROM scratch\nCOPY one.txt two.txt /file\n",
    );
    let err = run(&store, &opts(c, "x:1")).unwrap_err().to_string();
    assert!(
        err.starts_with("Dockerfile:2: ") && err.contains("must be a directory and end with a /"),
        "{err}"
    );
    // An ignored file cannot be copied by name.
    write(c, "Dockerfile", "FROM scratch\nCOPY secret.txt /\n");
    let err = run(&store, &opts(c, "x:1")).unwrap_err().to_string();
    assert!(err.contains(".dockerignore"), "{err}");
}

#[test]
fn errors_name_file_and_line_and_leave_the_store_alone() {
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(c, "f", "x");
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret", "s");
    std::os::unix::fs::symlink(outside.path().join("secret"), c.join("abs-link")).unwrap();
    let cases = [
        (
            "FROM scratch\nCOPY f /f\n\n\n\n\nRUN echo hi\n",
            "Dockerfile:7: RUN is not supported yet: aos runs RUN steps in its sandbox runtime, which arrives with the node agent",
        ),
        (
            "FROM scratch\nFROBNICATE x\n",
            "Dockerfile:2: unknown instruction: FROBNICATE",
        ),
        (
            "FROM scratch\nCOPY ../x /x\n",
            "Dockerfile:2: COPY ../x: the source is outside the build context",
        ),
        (
            "FROM scratch\nCOPY sub/../../x /x\n",
            "Dockerfile:2: COPY sub/../../x: the source is outside the build context",
        ),
        (
            "FROM scratch\nADD https://example.com/x /x\n",
            "Dockerfile:2: ADD https://example.com/x: downloading is not supported",
        ),
        (
            "FROM scratch\nCOPY missing /x\n",
            "Dockerfile:2: COPY missing: not found in the build context",
        ),
        (
            "FROM scratch\nCOPY abs-link /x\n",
            "Dockerfile:2: COPY abs-link: ",
        ),
        (
            "FROM nosuch:1\n",
            "Dockerfile:1: FROM nosuch:1: image not found",
        ),
        ("COPY f /f\n", "Dockerfile:1: COPY before the first FROM"),
        (
            "FROM scratch\nCOPY --from=nowhere f /f\n",
            "Dockerfile:2: --from=nowhere",
        ),
        (
            "FROM scratch\nHEALTHCHECK --interval=soon CMD x\n",
            "Dockerfile:2: HEALTHCHECK --interval",
        ),
        (
            "FROM scratch\nCOPY <<EOF /x\nhi\nEOF\n",
            "Dockerfile:2: COPY with a heredoc",
        ),
    ];
    for (df, want) in cases {
        write(c, "Dockerfile", df);
        let err = run(&store, &opts(c, "bad:1")).unwrap_err().to_string();
        assert!(
            err.starts_with(want),
            "{df:?}:\n  got  {err}\n  want {want}"
        );
    }
    assert!(store.list().unwrap().is_empty());
    assert!(store.lookup("bad:1").is_err());
}

#[test]
fn lints_are_hadolint_style() {
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(c, "f", "x");
    write(c, "Dockerfile", "FROM scratch\nADD f /f\nCMD /f\n");
    let (out, log) = run(&store, &opts(c, "lint:1")).unwrap();
    let warnings: Vec<String> = out.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings.contains(
            &"Dockerfile:2 DL3020 warning: Use COPY instead of ADD for files and folders"
                .to_owned()
        ),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("DL3002 warning: Last USER should not be root")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("DL3057 warning: HEALTHCHECK instruction missing")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("Dockerfile:3 DL3025")),
        "{warnings:?}"
    );
    assert!(log.iter().any(|l| l.contains("DL3020")));

    // FROM without a tag, and with latest.
    write(c, "Dockerfile", "FROM lint:1\n");
    run(&store, &opts(c, "lint:latest")).unwrap();
    write(c, "Dockerfile", "FROM lint\nUSER 0\n");
    let (out, _) = run(&store, &opts(c, "lint:2")).unwrap();
    let w: Vec<String> = out.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter().any(|w| w.starts_with("Dockerfile:1 DL3006")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.starts_with("Dockerfile:2 DL3002")),
        "{w:?}"
    );
    write(c, "Dockerfile", "FROM lint:latest\n");
    let (out, _) = run(&store, &opts(c, "lint:3")).unwrap();
    assert!(out.warnings.iter().any(|w| w.code == "DL3007"));
}

#[test]
fn args_stages_and_stored_bases() {
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(c, "base.txt", "base");
    write(c, "v2/x", "two");
    write(
        c,
        "Dockerfile",
        "FROM scratch\nENV FROM_BASE=1\nCMD [\"base-cmd\"]\nCOPY base.txt /etc/base.txt\n",
    );
    run(&store, &opts(c, "base:1")).unwrap();

    write(
        c,
        "Dockerfile",
        "ARG BASE=base:1\nARG VERSION=v1\nFROM ${BASE} AS first\nARG VERSION\nCOPY ${VERSION}/x /x\nENV GREETING=\"hello ${VERSION:-none}\" ALT=${UNSET:+set}\n\nFROM scratch\nCOPY --from=first /x /copied\nCOPY --from=first /etc/base.txt /b\nLABEL v=${VERSION:-unset}\nENTRYPOINT [\"/copied\"]\n",
    );
    let mut o = opts(c, "multi:1");
    o.build_args.insert("VERSION".into(), "v2".into());
    run(&store, &o).unwrap();
    let f = files(&store, "multi:1");
    assert_eq!(f.get("copied").map(String::as_str), Some("two"));
    assert_eq!(f.get("b").map(String::as_str), Some("base"));
    let info = store.resolve("multi:1").unwrap();
    // The global ARG is not visible in a stage without a re-declaration.
    assert_eq!(
        info.config.config.labels.get("v").map(String::as_str),
        Some("unset")
    );
    assert!(info.config.config.env.is_empty());

    let mut o = opts(c, "first:1");
    o.target = Some("first".into());
    o.build_args.insert("VERSION".into(), "v2".into());
    run(&store, &o).unwrap();
    let info = store.resolve("first:1").unwrap();
    assert_eq!(info.config.config.env_var("GREETING"), Some("hello v2"));
    assert_eq!(info.config.config.env_var("ALT"), Some(""));
    assert_eq!(info.config.config.env_var("FROM_BASE"), Some("1"));
    assert_eq!(
        info.config.config.cmd.as_deref(),
        Some(&["base-cmd".to_owned()][..])
    );
    assert_eq!(info.layers.len(), 2, "the base layer and the COPY layer");

    // ENTRYPOINT resets an inherited CMD, as Docker does.
    write(c, "Dockerfile", "FROM base:1\nENTRYPOINT [\"/e\"]\n");
    run(&store, &opts(c, "ep:1")).unwrap();
    assert_eq!(store.resolve("ep:1").unwrap().config.config.cmd, None);
}

#[test]
fn multi_platform_builds_an_index() {
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(c, "bin/amd64/x", "amd64 binary");
    write(c, "bin/arm64/x", "arm64 binary");
    write(
        c,
        "Dockerfile",
        "FROM scratch\nARG TARGETARCH\nCOPY bin/${TARGETARCH}/x /x\nLABEL p=$TARGETPLATFORM\n",
    );
    let mut o = opts(c, "mp:1");
    o.platforms = vec![
        Platform::parse("linux/amd64").unwrap(),
        Platform::parse("linux/arm64").unwrap(),
    ];
    let (out, log) = run(&store, &o).unwrap();
    assert!(
        log.iter()
            .any(|l| l.contains("COPY bin/${TARGETARCH}/x /x"))
    );
    assert_eq!(out.manifests.len(), 2);
    assert_eq!(
        out.descriptor.media_type,
        aos_image::oci::MEDIA_TYPE_OCI_INDEX
    );
    let arm = store
        .resolve_for("mp:1", Some(&Platform::parse("linux/arm64").unwrap()))
        .unwrap();
    assert_eq!(arm.config.architecture, "arm64");
    assert_eq!(
        arm.config.config.labels.get("p").map(String::as_str),
        Some("linux/arm64")
    );
    let dir = tempfile::tempdir().unwrap();
    store.flatten_into(&arm.layers, dir.path()).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("x")).unwrap(),
        "arm64 binary"
    );
    let amd = store
        .resolve_for("mp:1", Some(&Platform::parse("linux/amd64").unwrap()))
        .unwrap();
    assert_ne!(amd.manifest_digest, arm.manifest_digest);
    assert!(
        store
            .resolve_for("mp:1", Some(&Platform::parse("linux/s390x").unwrap()))
            .is_err()
    );
    // The host platform is picked by default (the test host is one of the two or errs clearly).
    match store.resolve("mp:1") {
        Ok(i) => assert!(i.platform.matches(&Platform::host())),
        Err(e) => assert!(e.to_string().contains("has no manifest for platform")),
    }
    // Same inputs, same index digest.
    let (again, _) = run(&store, &o).unwrap();
    assert_eq!(again.descriptor.digest, out.descriptor.digest);
    // One platform: a plain manifest.
    o.platforms.truncate(1);
    let (single, _) = run(&store, &o).unwrap();
    assert_eq!(
        single.descriptor.media_type,
        aos_image::oci::MEDIA_TYPE_OCI_MANIFEST
    );
}

#[test]
fn add_extracts_local_tar_archives() {
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "pkg/readme", &b"hello"[..]).unwrap();
    let gz = b.into_inner().unwrap().finish().unwrap();
    fs::write(c.join("pkg.tar.gz"), gz).unwrap();
    write(c, "Dockerfile", "FROM scratch\nADD pkg.tar.gz /opt/\n");
    let (out, _) = run(&store, &opts(c, "add:1")).unwrap();
    assert!(!out.warnings.iter().any(|w| w.code == "DL3020"));
    let f = files(&store, "add:1");
    assert_eq!(f.get("opt/pkg/readme").map(String::as_str), Some("hello"));

    // An archive with an escaping path is refused.
    let mut raw = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    raw.append(&h, &b"x"[..]).unwrap();
    fs::write(c.join("evil.tar"), raw.into_inner().unwrap()).unwrap();
    write(c, "Dockerfile", "FROM scratch\nADD evil.tar /opt/\n");
    let err = run(&store, &opts(c, "evil:1")).unwrap_err().to_string();
    assert!(
        err.starts_with("Dockerfile:2: ADD evil.tar") && err.contains("escapes the root"),
        "{err}"
    );
}

#[test]
fn unpack_layers_into_the_cache() {
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", APP_DOCKERFILE);
    write(ctx.path(), "bin/app", "binary");
    run(&store, &opts(ctx.path(), "app:1")).unwrap();
    let info = store.resolve("app:1").unwrap();
    let dirs = store.unpack_layers(&info).unwrap();
    assert_eq!(dirs.len(), 1);
    assert!(dirs[0].starts_with(data.path().join("layers")));
    assert_eq!(
        fs::read_to_string(dirs[0].join("app/app")).unwrap(),
        "binary"
    );
    assert!(dirs[0].parent().unwrap().join(".complete").is_file());
    // A crash mid-unpack (no marker) is redone.
    fs::remove_file(dirs[0].parent().unwrap().join(".complete")).unwrap();
    fs::write(dirs[0].join("junk"), "partial").unwrap();
    let again = store.unpack_layers(&info).unwrap();
    assert_eq!(again, dirs);
    assert!(!again[0].join("junk").exists());
    let mut s = String::new();
    fs::File::open(again[0].join("app/app"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "binary");
}
