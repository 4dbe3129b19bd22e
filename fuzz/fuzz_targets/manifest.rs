//! Arbitrary bytes through `parse_manifests`, then every document through
//! `admit` as every resource type (as a create and as an update of itself),
//! and through the table printer. Run with
//! `cargo +nightly fuzz run manifest` from this directory.

#![no_main]

use aos_types::{admit, parse_manifests, resource, table};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(docs) = parse_manifests("fuzz.yaml", &text) else {
        return;
    };
    for doc in docs.iter().take(8) {
        for rt in resource::all() {
            let mut obj = doc.value.clone();
            // Give typeless documents the type's apiVersion and kind so they
            // reach the schema and validation code.
            if let Value::Object(map) = &mut obj
                && !map.contains_key("kind")
            {
                map.insert("apiVersion".into(), Value::String(rt.api_version()));
                map.insert("kind".into(), Value::String(rt.kind.into()));
            }
            let old = obj.clone();
            let _ = admit(rt, &mut obj, None);
            let mut update = old.clone();
            let _ = admit(rt, &mut update, Some(&old));
            let _ = table::row(rt, &obj, 1_700_000_000);
        }
    }
});
