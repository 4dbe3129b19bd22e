//! Property tests: the Dockerfile parser and the archive importer never panic on arbitrary or
//! mutated input, and a failed import leaves the store unchanged.

use std::sync::OnceLock;

use aos_image::archive::{ExportFormat, ImportOptions, export, import};
use aos_image::build::{BuildOptions, build};
use aos_image::dockerfile;
use aos_image::store::ImageStore;
use proptest::prelude::*;

const SEED_DOCKERFILE: &str = "# syntax=docker/dockerfile:1\n# escape=\\\nARG BASE=scratch\nFROM ${BASE} AS build\nCOPY --chown=1:1 --chmod=755 a b /dst/\nENV A=1 B=\"two ${A:-x}\" \\\n    C='$lit'\nLABEL k=v\nFROM scratch\nCOPY --from=build /dst /app\nHEALTHCHECK --interval=30s CMD [\"/app/x\", \"hc\"]\nEXPOSE 80/tcp 8000-8002\nUSER 1001:1001\nENTRYPOINT [\"/app/x\"]\nCMD run it\n";

/// One small exported archive per format, made once.
fn seed_archives() -> &'static [Vec<u8>; 2] {
    static ARCHIVES: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    ARCHIVES.get_or_init(|| {
        let data = tempfile::tempdir().unwrap();
        let store = ImageStore::open(data.path()).unwrap();
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("f"), "content").unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
        let opts = BuildOptions {
            context: ctx.path().into(),
            tags: vec!["seed:1".into()],
            source_date_epoch: Some(0),
            ..Default::default()
        };
        build(&store, &opts, &mut |_| {}).unwrap();
        let oci = export(&store, "seed:1", ExportFormat::Oci, None, Vec::new()).unwrap();
        let docker = export(&store, "seed:1", ExportFormat::Docker, None, Vec::new()).unwrap();
        [oci, docker]
    })
}

fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(pos, op, byte) in edits {
        if v.is_empty() {
            v.push(byte);
            continue;
        }
        let i = pos % v.len();
        match op % 4 {
            0 => v[i] = byte,
            1 => v.insert(i, byte),
            2 => {
                v.remove(i);
            }
            _ => v.truncate(i),
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parser_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = dockerfile::parse(&text);
    }

    #[test]
    fn parser_survives_mutated_dockerfiles(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), prop::sample::select(b"\\`\"'$ {}[]=:-+?#\n\tAZaz09/.<".to_vec())), 1..12)) {
        let text = String::from_utf8_lossy(&mutate(SEED_DOCKERFILE.as_bytes(), &edits)).into_owned();
        if let Ok(df) = dockerfile::parse(&text) {
            for ins in &df.instructions {
                prop_assert!(ins.line >= 1 && ins.line <= text.lines().count().max(1));
            }
        }
    }

    #[test]
    fn expansion_survives_anything(word in "[\\PC${}:\\-+?'\"\\\\]{0,40}") {
        let _ = dockerfile::expand_word(&word, &|n| (n == "A").then(|| "x".to_owned()), '\\');
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn importer_survives_mutated_archives(which in 0usize..2, edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6), gzip in any::<bool>()) {
        let seed = &seed_archives()[which];
        let mut bytes = mutate(seed, &edits);
        if gzip {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).unwrap();
            bytes = gz.finish().unwrap();
        }
        let data = tempfile::tempdir().unwrap();
        let store = ImageStore::open(data.path()).unwrap();
        let before = std::fs::read(store.root().join("index.json")).unwrap();
        match import(&store, &bytes[..], &ImportOptions::default()) {
            Ok(images) => {
                for img in images {
                    // Whatever was accepted must resolve and unpack without escaping.
                    if let Ok(info) = store.resolve(img.descriptor.digest.as_str()) {
                        let _ = store.unpack_layers(&info);
                    }
                }
            }
            Err(_) => prop_assert_eq!(std::fs::read(store.root().join("index.json")).unwrap(), before),
        }
    }

    #[test]
    fn importer_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let data = tempfile::tempdir().unwrap();
        let store = ImageStore::open(data.path()).unwrap();
        prop_assert!(import(&store, &bytes[..], &ImportOptions::default()).is_err());
    }
}
