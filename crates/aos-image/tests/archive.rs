//! Import/export tests: round trips, hostile and broken archives, concurrency, skopeo interop.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use aos_image::archive::{ExportFormat, ImportOptions, export, import, import_file};
use aos_image::build::{BuildOptions, build};
use aos_image::digest::Digest;
use aos_image::store::ImageStore;

fn write(root: &Path, rel: &str, body: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

/// Builds a two-layer image tagged `tag` into `store`.
fn build_image(store: &ImageStore, tag: &str, payload: &[u8]) {
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "bin/app", payload);
    write(ctx.path(), "etc/conf", b"conf");
    write(ctx.path(), "Dockerfile", b"FROM scratch\nCOPY bin/app /app/app\nCOPY etc /etc/\nUSER 1001\nENTRYPOINT [\"/app/app\"]\n");
    let opts = BuildOptions {
        context: ctx.path().to_path_buf(),
        tags: vec![tag.to_owned()],
        source_date_epoch: Some(0),
        ..Default::default()
    };
    build(store, &opts, &mut |_| {}).unwrap();
}

fn export_to(store: &ImageStore, reference: &str, format: ExportFormat, path: &Path) {
    let f = fs::File::create(path).unwrap();
    export(store, reference, format, None, f).unwrap();
}

/// A snapshot of the store's visible state: index.json and the blob names.
fn snapshot(store: &ImageStore) -> (String, BTreeSet<String>) {
    let index = fs::read_to_string(store.root().join("index.json")).unwrap();
    let blobs = fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    (index, blobs)
}

fn tmp_is_empty(store: &ImageStore) -> bool {
    fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .next()
        .is_none()
}

/// Rewrites a tar, replacing entries through `f` (None drops an entry).
fn rewrite_tar(input: &[u8], mut f: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(input);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let mut h = e.header().clone();
        if let Some(new) = f(&path, data) {
            h.set_size(new.len() as u64);
            h.set_cksum();
            out.append_data(&mut h, &path, &new[..]).unwrap();
        }
    }
    out.into_inner().unwrap()
}

#[test]
fn oci_and_docker_round_trips() {
    let a = tempfile::tempdir().unwrap();
    let src = ImageStore::open(a.path()).unwrap();
    build_image(&src, "app:1.0", b"payload");
    let info = src.resolve("app:1.0").unwrap();
    let files = tempfile::tempdir().unwrap();

    for (format, name) in [
        (ExportFormat::Oci, "oci.tar"),
        (ExportFormat::Docker, "docker.tar"),
    ] {
        let path = files.path().join(name);
        export_to(&src, "app:1.0", format, &path);
        let b = tempfile::tempdir().unwrap();
        let dst = ImageStore::open(b.path()).unwrap();
        let imported = import_file(&dst, &path, &ImportOptions::default()).unwrap();
        assert_eq!(imported.len(), 1);
        assert_eq!(imported[0].names, vec!["app:1.0".to_owned()], "{name}");
        let got = dst.resolve("app:1.0").unwrap();
        assert_eq!(
            got.config_digest, info.config_digest,
            "{name}: the config digest survives"
        );
        assert_eq!(got.config, info.config);
        assert_eq!(
            got.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
            info.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()
        );
        if format == ExportFormat::Oci {
            assert_eq!(
                got.manifest_digest, info.manifest_digest,
                "OCI keeps the manifest digest"
            );
        }
        let dirs = dst.unpack_layers(&got).unwrap();
        assert_eq!(fs::read(dirs[0].join("app/app")).unwrap(), b"payload");
        assert!(tmp_is_empty(&dst));

        // Export is deterministic.
        let again = files.path().join(format!("again-{name}"));
        export_to(&src, "app:1.0", format, &again);
        assert_eq!(fs::read(&path).unwrap(), fs::read(&again).unwrap());
    }

    // A gzipped archive imports too (sniffed, whatever its name).
    let raw = fs::read(files.path().join("oci.tar")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let c = tempfile::tempdir().unwrap();
    let dst = ImageStore::open(c.path()).unwrap();
    let imported = import(
        &dst,
        &gz.finish().unwrap()[..],
        &ImportOptions {
            tag: Some("other:2".into()),
        },
    )
    .unwrap();
    assert_eq!(
        imported[0].names,
        vec!["app:1.0".to_owned(), "other:2".to_owned()]
    );
    assert_eq!(
        dst.resolve("other:2").unwrap().manifest_digest,
        info.manifest_digest
    );
}

#[test]
fn store_refs_ls_rm_tag_prune() {
    let a = tempfile::tempdir().unwrap();
    let store = ImageStore::open(a.path()).unwrap();
    build_image(&store, "app:1", b"one");
    build_image(&store, "app:2", b"two");
    let d1 = store.lookup("app:1").unwrap().digest;
    // Short names and their normalized forms are the same image.
    assert_eq!(store.lookup("docker.io/library/app:1").unwrap().digest, d1);
    assert_eq!(store.lookup(&format!("app@{d1}")).unwrap().digest, d1);
    assert_eq!(store.lookup(d1.as_str()).unwrap().digest, d1);
    assert_eq!(store.lookup(&d1.hex()[..12]).unwrap().digest, d1);
    assert_eq!(
        store
            .lookup(&format!("sha256:{}", &d1.hex()[..8]))
            .unwrap()
            .digest,
        d1
    );
    assert!(store.lookup("app").is_err(), "the default tag is latest");

    store.tag("app:1", "alias").unwrap();
    assert_eq!(store.lookup("alias:latest").unwrap().digest, d1);
    let list = store.list().unwrap();
    assert_eq!(
        list.iter()
            .map(|i| format!(
                "{}:{}",
                i.name.as_deref().unwrap(),
                i.tag.as_deref().unwrap()
            ))
            .collect::<Vec<_>>(),
        ["alias:latest", "app:1", "app:2"]
    );
    assert!(
        list.iter()
            .all(|i| i.size > 0 && i.created.as_deref() == Some("1970-01-01T00:00:00Z"))
    );

    // Untag one name: the image stays under the other; prune frees nothing it uses.
    assert_eq!(store.remove("app:1").unwrap(), vec!["app:1".to_owned()]);
    let report = store.prune().unwrap();
    assert_eq!(report.blobs_removed, 0);
    assert!(store.resolve("alias").is_ok());
    // Remove by digest prefix: every name goes; prune frees its unique blobs.
    store.remove(&d1.hex()[..10]).unwrap();
    let report = store.prune().unwrap();
    assert!(report.blobs_removed >= 2, "{report:?}");
    assert!(!store.has_blob(&d1));
    assert!(store.resolve("app:2").is_ok());
    let info2 = store.resolve("app:2").unwrap();
    for l in &info2.layers {
        assert!(store.has_blob(&l.digest));
    }
    assert!(matches!(
        store.remove("nope:1"),
        Err(aos_image::StoreError::NotFound(_))
    ));
}

#[test]
fn bad_archives_leave_the_store_unchanged() {
    let a = tempfile::tempdir().unwrap();
    let src = ImageStore::open(a.path()).unwrap();
    build_image(&src, "app:1", &vec![7u8; 3 << 20]);
    let files = tempfile::tempdir().unwrap();
    let oci = files.path().join("oci.tar");
    let docker = files.path().join("docker.tar");
    export_to(&src, "app:1", ExportFormat::Oci, &oci);
    export_to(&src, "app:1", ExportFormat::Docker, &docker);
    let info = src.resolve("app:1").unwrap();

    let b = tempfile::tempdir().unwrap();
    let dst = ImageStore::open(b.path()).unwrap();
    build_image(&dst, "existing:1", b"keep me");
    let before = snapshot(&dst);

    let check = |bytes: &[u8], want: &str| {
        let err = import(&dst, bytes, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "got {err:?}, want {want:?}");
        assert_eq!(
            snapshot(&dst),
            before,
            "the store is unchanged after: {err}"
        );
        assert!(tmp_is_empty(&dst));
    };

    // Truncated in the middle of the big layer, for both formats, plain and gzipped.
    for path in [&oci, &docker] {
        let raw = fs::read(path).unwrap();
        check(&raw[..raw.len() / 2], "archive is truncated at blob");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        check(&gz[..gz.len() * 2 / 3], "archive is truncated at blob");
    }

    // A layer whose bytes do not match its digest (OCI: by path; docker: by diff_id).
    let big = info.layers.iter().max_by_key(|l| l.size).unwrap();
    let tampered = rewrite_tar(&fs::read(&oci).unwrap(), |path, mut data| {
        if path.ends_with(big.digest.hex()) {
            let n = data.len() / 2;
            data[n] ^= 0xff;
        }
        Some(data)
    });
    check(
        &tampered,
        &format!("import: layer {} does not match its digest", big.digest),
    );
    let tampered = rewrite_tar(&fs::read(&docker).unwrap(), |path, mut data| {
        if path.starts_with(big.diff_id.hex()) && path.ends_with("layer.tar") {
            data[100] ^= 0xff;
        }
        Some(data)
    });
    check(
        &tampered,
        &format!("import: layer {} does not match its digest", big.diff_id),
    );
    // A config that does not match its name.
    let tampered = rewrite_tar(&fs::read(&docker).unwrap(), |path, data| {
        if path.ends_with(".json") && path != "manifest.json" {
            let mut s = String::from_utf8(data).unwrap();
            s = s.replace("1001", "1002");
            return Some(s.into_bytes());
        }
        Some(data)
    });
    check(&tampered, "import: config sha256:");
    // A blob the index needs is missing.
    let missing = rewrite_tar(&fs::read(&oci).unwrap(), |path, data| {
        (!path.ends_with(info.config_digest.hex())).then_some(data)
    });
    check(
        &missing,
        &format!("archive is truncated at blob {}", info.config_digest),
    );
    // Not an archive at all.
    check(
        b"hello, this is not a tar file at all, just some bytes that are long enough",
        "archive is not a valid tar stream",
    );
    check(&[], "import: not an image archive");
}

/// A docker-save archive with one hand-made layer.
fn docker_archive_with_layer(layer: Vec<u8>) -> Vec<u8> {
    let diff = Digest::of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
    );
    let cfg_digest = Digest::of(config.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["evil:1"],"Layers":["{}/layer.tar"]}}]"#,
        cfg_digest.hex(),
        diff.hex()
    );
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        (format!("{}.json", cfg_digest.hex()), config.into_bytes()),
        (format!("{}/layer.tar", diff.hex()), layer),
        ("manifest.json".to_owned(), manifest.into_bytes()),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn raw_layer(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        let data: &[u8] = if *kind == tar::EntryType::Regular {
            b"owned"
        } else {
            b""
        };
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn layers_escaping_the_root_are_refused() {
    use tar::EntryType::{Link, Regular, Symlink};
    let b = tempfile::tempdir().unwrap();
    let dst = ImageStore::open(b.path()).unwrap();
    let before = snapshot(&dst);
    let cases: Vec<Vec<(&str, tar::EntryType, &str)>> = vec![
        vec![("../etc/passwd", Regular, "")],
        vec![("/etc/passwd", Regular, "")],
        vec![("a", Symlink, "/"), ("a/etc/passwd", Regular, "")],
        vec![("x/../../../etc/passwd", Regular, "")],
        vec![("h", Link, "../../etc/passwd")],
    ];
    for entries in cases {
        let err = import(
            &dst,
            &docker_archive_with_layer(raw_layer(&entries))[..],
            &ImportOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("is unsafe") && err.contains("escapes the root"),
            "{entries:?}: {err}"
        );
        assert_eq!(snapshot(&dst), before);
    }
    // A benign symlink to / is fine as long as nothing is written through it.
    let ok = raw_layer(&[("a", Symlink, "/"), ("etc/passwd", Regular, "")]);
    import(
        &dst,
        &docker_archive_with_layer(ok)[..],
        &ImportOptions::default(),
    )
    .unwrap();
    let info = dst.resolve("evil:1").unwrap();
    let dirs = dst.unpack_layers(&info).unwrap();
    assert_eq!(
        fs::read_link(dirs[0].join("a")).unwrap(),
        PathBuf::from("/")
    );
    assert_eq!(fs::read(dirs[0].join("etc/passwd")).unwrap(), b"owned");
}

#[test]
fn concurrent_imports_and_prunes_stay_consistent() {
    let a = tempfile::tempdir().unwrap();
    let src = ImageStore::open(a.path()).unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut archives = Vec::new();
    for i in 0..4 {
        let tag = format!("img{i}:1");
        build_image(&src, &tag, format!("payload {i}").repeat(10_000).as_bytes());
        let p = files.path().join(format!("{i}.tar"));
        export_to(
            &src,
            &tag,
            if i % 2 == 0 {
                ExportFormat::Oci
            } else {
                ExportFormat::Docker
            },
            &p,
        );
        archives.push((tag, p));
    }
    let b = tempfile::tempdir().unwrap();
    let data = b.path().to_path_buf();
    std::thread::scope(|s| {
        for (tag, path) in &archives {
            let data = data.clone();
            s.spawn(move || {
                for _ in 0..3 {
                    let store = ImageStore::open(&data).unwrap();
                    import_file(&store, path, &ImportOptions::default()).unwrap();
                    store.resolve(tag).unwrap();
                }
            });
        }
        let data = data.clone();
        s.spawn(move || {
            let store = ImageStore::open(&data).unwrap();
            for _ in 0..20 {
                store.prune().unwrap();
                let _ = store.list().unwrap();
            }
        });
    });
    let store = ImageStore::open(&data).unwrap();
    store.prune().unwrap();
    for (tag, _) in &archives {
        let info = store.resolve(tag).unwrap();
        for l in &info.layers {
            assert!(
                store.has_blob(&l.digest),
                "{tag}: layer {} survived every prune",
                l.digest
            );
        }
        store.unpack_layers(&info).unwrap();
    }
    assert_eq!(store.list().unwrap().len(), 4);
}

fn skopeo() -> Option<PathBuf> {
    let found = |p: &str| Path::new(p).is_file().then(|| PathBuf::from(p));
    if let Some(p) = found("/usr/bin/skopeo") {
        return Some(p);
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "skipping the skopeo interop test: skopeo is not installed and we are not root to apt-get install it"
        );
        return None;
    }
    eprintln!("installing skopeo with apt-get install -y skopeo");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "skopeo"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "skipping the skopeo interop test: apt-get install -y skopeo failed (no apt repository reachable?)"
        );
        return None;
    }
    found("/usr/bin/skopeo")
}

#[test]
fn skopeo_interop() {
    let Some(skopeo) = skopeo() else { return };
    let a = tempfile::tempdir().unwrap();
    let store = ImageStore::open(a.path()).unwrap();
    build_image(&store, "agent-registry:1.0.0", b"static binary");
    let info = store.resolve("agent-registry:1.0.0").unwrap();
    let files = tempfile::tempdir().unwrap();
    let oci = files.path().join("image.oci.tar");
    export_to(&store, "agent-registry:1.0.0", ExportFormat::Oci, &oci);

    let out = Command::new(&skopeo)
        .arg("inspect")
        .arg(format!("oci-archive:{}", oci.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], info.manifest_digest.as_str());
    assert_eq!(v["Architecture"], info.config.architecture.as_str());

    let docker = files.path().join("image.docker.tar");
    let out = Command::new(&skopeo)
        .args(["--insecure-policy", "copy", "-q"])
        .arg(format!("oci-archive:{}", oci.display()))
        .arg(format!(
            "docker-archive:{}:agent-registry:1.0.0",
            docker.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let b = tempfile::tempdir().unwrap();
    let dst = ImageStore::open(b.path()).unwrap();
    let imported = import_file(&dst, &docker, &ImportOptions::default()).unwrap();
    assert_eq!(imported[0].names, vec!["agent-registry:1.0.0".to_owned()]);
    let got = dst.resolve("agent-registry:1.0.0").unwrap();
    assert_eq!(
        got.config_digest, info.config_digest,
        "the config digest survives skopeo's docker-archive"
    );
    let dirs = dst.unpack_layers(&got).unwrap();
    assert_eq!(fs::read(dirs[0].join("app/app")).unwrap(), b"static binary");

    // And back: our docker-format export is readable by skopeo.
    let ours = files.path().join("ours.docker.tar");
    export_to(&dst, "agent-registry:1.0.0", ExportFormat::Docker, &ours);
    let out = Command::new(&skopeo)
        .arg("inspect")
        .arg(format!("docker-archive:{}", ours.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect docker-archive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
