//! Bounded fuzzing that CI runs: random bytes, YAML-ish text built from
//! Kubernetes vocabulary, and mutated seed manifests go through
//! `parse_manifests` and then `admit` as every resource type. Nothing may
//! panic, and every call must return promptly. (The open-ended fuzzer is
//! `fuzz/fuzz_targets/manifest.rs`.)

use std::time::{Duration, Instant};

use aos_types::{admit, parse_manifests, resource, table};
use proptest::prelude::*;
use serde_json::Value;

const SEEDS: &[&str] = &[
    include_str!("../testdata/seed/corrected/deployment.yaml"),
    include_str!("../testdata/seed/corrected/destinationrule.yaml"),
    include_str!("../testdata/seed/corrected/hpa.yaml"),
    include_str!("../testdata/seed/corrected/virtualservice.yaml"),
    include_str!("../testdata/seed/verbatim/virtualservice.yaml"),
];

/// Parse, then admit every document as every type (with itself as `old` too),
/// and render a table row: none of it may panic.
fn exercise(text: &str) {
    let started = Instant::now();
    let Ok(docs) = parse_manifests("fuzz.yaml", text) else {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "slow parse error"
        );
        return;
    };
    for doc in docs.iter().take(4) {
        for rt in resource::all() {
            let mut obj = doc.value.clone();
            if let Value::Object(map) = &mut obj {
                // Also try it with the type's own apiVersion and kind, to get past the type check.
                if map.contains_key("spec") && !map.contains_key("kind") {
                    map.insert("apiVersion".into(), Value::String(rt.api_version()));
                    map.insert("kind".into(), Value::String(rt.kind.into()));
                }
            }
            let old = obj.clone();
            let _ = admit(rt, &mut obj, None);
            let mut again = old.clone();
            let _ = admit(rt, &mut again, Some(&old));
            let _ = table::row(rt, &obj, 1_700_000_000);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "slow input: {text:?}"
    );
}

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "apiVersion: apps/v1\n",
        "kind: Deployment\n",
        "kind: Pod\n",
        "kind: Service\n",
        "kind: VirtualService\n",
        "apiVersion: networking.istio.io/v1beta1\n",
        "apiVersion: v1\n",
        "metadata:\n",
        "  name: x\n",
        "  labels: {app: a}\n",
        "spec:\n",
        "  replicas: 3\n",
        "  replicas: -1\n",
        "  selector:\n",
        "    matchLabels:\n",
        "      app: a\n",
        "  template:\n",
        "    spec:\n",
        "      containers:\n",
        "      - name: c\n",
        "        image: i\n",
        "        ports:\n",
        "        - containerPort: 80\n",
        "        resources: {limits: {cpu: 2}}\n",
        "  hosts: [a]\n",
        "  http:\n",
        "  - route:\n",
        "    - destination: {host: h}\n",
        "      weight: 50\n",
        "  ports: [{port: 80}]\n",
        "- ",
        "  ",
        "    ",
        ": ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a ",
        "*a",
        "!!str ",
        "---\n",
        "...\n",
        "\"",
        "'",
        "|\n",
        ">-\n",
        "# c\n",
        "\n",
        "\t",
        "~",
        "null",
        "1e999",
        "-0",
        "0x1F",
        "<<: *a\n",
        "? k\n",
        ": v\n",
        "%YAML 1.2\n",
        "\u{feff}",
        "ü",
        "\\u0000",
    ]);
    prop::collection::vec(token, 0..60).prop_map(|parts| parts.concat())
}

fn mutated_seed() -> impl Strategy<Value = String> {
    (
        prop::sample::select(SEEDS.to_vec()),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    )
        .prop_map(|(seed, edits)| {
            let mut bytes = seed.as_bytes().to_vec();
            for (at, byte, op) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => {
                        bytes.remove(i);
                    }
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 800,
        max_shrink_time: 10_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yamlish_text_never_panics(text in yamlish()) {
        exercise(&text);
    }

    #[test]
    fn mutated_seeds_never_panic(text in mutated_seed()) {
        exercise(&text);
    }
}

#[test]
fn deep_and_wide_values_do_not_overflow() {
    // As deep as the parsers allow, through admission.
    for depth in [60, 63] {
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {}{}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        exercise(&text);
        let json = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"p\"}},\"spec\":{}1{}}}",
            "{\"a\":".repeat(depth),
            "}".repeat(depth)
        );
        exercise(&json);
    }
    let wide: String = (0..5_000).map(|i| format!("k{i}: v\n")).collect();
    exercise(&wide);
}
