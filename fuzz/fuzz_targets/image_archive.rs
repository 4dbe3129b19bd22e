//! Fuzzes the image archive importer (OCI layout and docker save, gzipped or not): no input may
//! panic, and a rejected archive leaves the store's index unchanged.
#![no_main]

use std::sync::OnceLock;

use aos_image::archive::{ImportOptions, import};
use aos_image::store::ImageStore;
use libfuzzer_sys::fuzz_target;

fn store() -> &'static (tempfile::TempDir, ImageStore) {
    static STORE: OnceLock<(tempfile::TempDir, ImageStore)> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = ImageStore::open(dir.path()).expect("an image store");
        (dir, store)
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, store) = store();
    let before = std::fs::read(store.root().join("index.json")).expect("index.json");
    match import(store, data, &ImportOptions::default()) {
        Ok(images) => {
            for img in &images {
                if let Ok(info) = store.resolve(img.descriptor.digest.as_str()) {
                    let _ = store.unpack_layers(&info);
                }
            }
            // Keep the store small between runs.
            for img in &images {
                let _ = store.remove(img.descriptor.digest.as_str());
            }
            let _ = store.prune();
        }
        Err(_) => assert_eq!(
            std::fs::read(store.root().join("index.json")).expect("index.json"),
            before
        ),
    }
});
