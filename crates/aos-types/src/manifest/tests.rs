use serde_json::json;

use super::*;

const VERBATIM_VS: &str = include_str!("../../testdata/seed/verbatim/virtualservice.yaml");
const DEPLOYMENT: &str = include_str!("../../testdata/seed/corrected/deployment.yaml");

#[test]
fn verbatim_virtualservice_fails_at_line_52() {
    let e = parse_manifests("virtualservice.yaml", VERBATIM_VS).unwrap_err();
    assert_eq!(e.line, 52, "{e}");
    assert!(e.column >= 1);
    assert!(e.to_string().starts_with("virtualservice.yaml:52:"), "{e}");
    assert!(!e.message.contains('\n'), "one line: {:?}", e.message);
    assert!(
        !e.message.contains("at line"),
        "no duplicated position: {:?}",
        e.message
    );
}

#[test]
fn seed_deployment_parses() {
    let docs = parse_manifests("deployment.yaml", DEPLOYMENT).unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].index, 0);
    assert_eq!(docs[0].line, 1);
    let d = &docs[0].value;
    assert_eq!(d["spec"]["replicas"], json!(3));
    assert!(d["spec"]["replicas"].is_i64());
    // Quoted strings stay strings.
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
        json!("3000")
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["nodeSelector"]["agent.os"],
        json!("linux")
    );
}

#[test]
fn documents_lines_and_indices() {
    let text = "# leading comment\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n...\n";
    let docs = parse_manifests("f.yaml", text).unwrap();
    let got: Vec<(usize, usize, &str)> = docs
        .iter()
        .map(|d| {
            (
                d.index,
                d.line,
                d.value["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [(0, 4, "a"), (1, 11, "b")]);
}

#[test]
fn scalars_keep_their_types() {
    let text =
        "a: 3\nb: \"3\"\nc: 3.5\nd: true\ne: 'true'\nf: ~\ng: -7\nh: 1e3\ni: 0x10\nj: \"\"\n";
    let v = &parse_manifests("f", text).unwrap()[0].value;
    assert_eq!(v["a"], json!(3));
    assert!(v["a"].is_i64());
    assert_eq!(v["b"], json!("3"));
    assert_eq!(v["c"], json!(3.5));
    assert_eq!(v["d"], json!(true));
    assert_eq!(v["e"], json!("true"));
    assert!(v["f"].is_null());
    assert_eq!(v["g"], json!(-7));
    assert_eq!(v["h"].as_f64(), Some(1000.0));
    assert_eq!(v["i"], json!(16));
    assert_eq!(v["j"], json!(""));
}

#[test]
fn list_kinds_expand() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: b}\n---\napiVersion: v1\nkind: ConfigMapList\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n";
    let docs = parse_manifests("f", text).unwrap();
    let names: Vec<(usize, &str)> = docs
        .iter()
        .map(|d| (d.index, d.value["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [(0, "a"), (0, "b"), (1, "c")]);
    // An empty List is no documents.
    assert!(
        parse_manifests("f", "apiVersion: v1\nkind: List\nitems: []\n")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn json_documents() {
    let text = "  {\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"a\"}, \"data\": {\"n\": \"1\"}}\n\n{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"b\"}}";
    let docs = parse_manifests("f.json", text).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].line, 1);
    assert_eq!(docs[1].line, 3);
    assert_eq!(docs[1].index, 1);

    let e = parse_manifests("f.json", "{\n  \"a\": 1,\n  \"b\": \n}\n").unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("f.json", 4), "{e}");
    assert!(!e.message.contains("at line"), "{e}");

    // A YAML flow mapping also starts with '{'.
    let docs = parse_manifests("f", "{a: 1, b: [x, z]}").unwrap();
    assert_eq!(docs[0].value, json!({"a": 1, "b": ["x", "z"]}));
}

#[test]
fn empty_inputs() {
    for text in [
        "",
        "\n\n",
        "# only a comment\n",
        "---\n---\n",
        "\u{feff}",
        "null\n",
        "~",
    ] {
        assert!(parse_manifests("f", text).unwrap().is_empty(), "{text:?}");
    }
}

#[test]
fn errors_have_positions() {
    let cases: &[(&str, usize)] = &[
        ("a: b\nc: [1, 2\n", 2),
        ("a:\n  - b\n c: d\n", 3),
        ("a: 1\na: 2\n", 2),
        ("key: \"unterminated\n", 1),
        ("a: b\n  c: d\n", 2),
    ];
    for (text, line) in cases {
        let e = parse_manifests("x.yaml", text).unwrap_err();
        assert_eq!(e.line, *line, "{text:?}: {e}");
        assert!(e.column >= 1);
        assert!(!e.message.is_empty());
    }
}

#[test]
fn hostile_inputs_fail_cleanly() {
    // Deep nesting: an error, not a stack overflow.
    let deep_flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_manifests("f", &deep_flow).is_err());
    let deep_block: String = (0..2_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    assert!(parse_manifests("f", &deep_block).is_err());
    let deep_json = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    assert!(parse_manifests("f", &deep_json).is_err());

    // Billion laughs: alias expansion is bounded.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
    let mut prev = "a";
    for n in names {
        bomb.push_str(&format!(
            "{n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
        prev = n;
    }
    let started = std::time::Instant::now();
    assert!(parse_manifests("f", &bomb).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Too large.
    let huge = "a".repeat(MAX_MANIFEST_BYTES + 1);
    assert_eq!(parse_manifests("f", &huge).unwrap_err().line, 1);
}
