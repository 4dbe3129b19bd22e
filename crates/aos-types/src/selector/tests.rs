use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::resource::by_kind;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn label_selector_strings() {
    let l = labels(&[("app", "web"), ("tier", "front"), ("env", "prod")]);
    let cases: &[(&str, bool)] = &[
        ("", true),
        ("app=web", true),
        ("app==web", true),
        ("app = web", true),
        ("app=db", false),
        ("app!=db", true),
        ("app!=web", false),
        ("missing!=x", true),
        ("app=web,tier=front", true),
        ("app=web,tier=back", false),
        ("env in (prod,staging)", true),
        ("env in (staging)", false),
        ("env notin (staging)", true),
        ("env notin (prod, staging)", false),
        ("missing notin (x)", true),
        ("missing in (x)", false),
        ("app", true),
        ("missing", false),
        ("!missing", true),
        ("!app", false),
        ("app,!missing,env in (prod)", true),
        ("app.kubernetes.io/name=web", false),
        ("missing=", false),
        ("missing!=", true),
    ];
    for (s, want) in cases {
        let sel = LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(sel.matches(&l), *want, "{s}");
    }
}

#[test]
fn label_selector_errors() {
    for s in [
        "app=",
        "=web",
        "app in ()",
        "app in (a",
        "app in a",
        "app foo",
        "app=web,",
        ",app",
        "bad key=x",
        "app=bad value",
        "app=(x)",
        "!",
        "app notin",
        "-app=x",
    ] {
        // `app=` alone is valid (empty value); everything else is not.
        let result = LabelSelector::parse(s);
        if s == "app=" {
            assert!(result.is_ok());
        } else {
            assert!(result.is_err(), "{s:?} parsed as {result:?}");
        }
    }
}

#[test]
fn from_object() {
    let l = labels(&[("app", "web"), ("tier", "front")]);
    let cases = [
        (json!({}), true),
        (json!({"matchLabels": {"app": "web"}}), true),
        (json!({"matchLabels": {"app": "db"}}), false),
        (
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}),
            false,
        ),
        (
            json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
            false,
        ),
        (
            json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
            true,
        ),
        (json!(null), false),
    ];
    for (obj, want) in cases {
        assert_eq!(
            LabelSelector::from_object(&obj).unwrap().matches(&l),
            want,
            "{obj}"
        );
    }
    for bad in [
        json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
        json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
        json!({"matchLabels": {"a": 1}}),
        json!("app=web"),
    ] {
        assert!(LabelSelector::from_object(&bad).is_err(), "{bad}");
    }
    let pod = json!({"metadata": {"labels": {"app": "web"}}});
    assert!(
        LabelSelector::parse("app=web")
            .unwrap()
            .matches_object(&pod)
    );
}

#[test]
fn field_selectors() {
    let pods = by_kind("v1", "Pod").unwrap();
    let pod = json!({"metadata": {"name": "p", "namespace": "d"},
        "spec": {"nodeName": "node-1", "restartPolicy": "Always"},
        "status": {"phase": "Running", "podIP": "10.0.0.2"}});
    let cases: &[(&str, bool)] = &[
        ("", true),
        ("metadata.name=p", true),
        ("metadata.name==p", true),
        ("metadata.name!=p", false),
        ("metadata.namespace=d,spec.nodeName=node-1", true),
        ("spec.nodeName=node-2", false),
        ("spec.nodeName!=", true),
        ("status.phase=Running", true),
        ("status.podIP=10.0.0.2", true),
        ("spec.schedulerName=", true),
        ("spec.hostNetwork=false", true),
    ];
    for (s, want) in cases {
        let sel = FieldSelector::parse(pods, s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(sel.matches(&pod), *want, "{s}");
    }
    let unbound = json!({"metadata": {"name": "q"}, "spec": {}});
    assert!(
        FieldSelector::parse(pods, "spec.nodeName=")
            .unwrap()
            .matches(&unbound)
    );

    assert_eq!(
        FieldSelector::parse(pods, "spec.containers=x").unwrap_err(),
        SelectorError("field label not supported: spec.containers".into())
    );
    assert!(FieldSelector::parse(pods, "metadata.name").is_err());

    let events = by_kind("v1", "Event").unwrap();
    let ev = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"},
        "reason": "Started", "type": "Normal", "source": {"component": "kubelet"}});
    for (s, want) in [
        ("involvedObject.kind=Pod,involvedObject.name=p", true),
        ("reason=Started,type=Normal", true),
        ("source=kubelet", true),
        ("type=Warning", false),
    ] {
        assert_eq!(
            FieldSelector::parse(events, s).unwrap().matches(&ev),
            want,
            "{s}"
        );
    }
    assert!(FieldSelector::parse(events, "spec.nodeName=x").is_err());

    let nodes = by_kind("v1", "Node").unwrap();
    let node = json!({"metadata": {"name": "n"}, "spec": {}});
    assert!(
        FieldSelector::parse(nodes, "spec.unschedulable=false")
            .unwrap()
            .matches(&node)
    );
    let rs = by_kind("apps/v1", "ReplicaSet").unwrap();
    assert!(
        FieldSelector::parse(rs, "status.replicas=0")
            .unwrap()
            .matches(&json!({"status": {}}))
    );
    assert!(
        FieldSelector::parse(rs, "status.replicas!=0")
            .unwrap()
            .matches(&json!({"status": {"replicas": 2}}))
    );
    let secrets = by_kind("v1", "Secret").unwrap();
    assert!(
        FieldSelector::parse(secrets, "type=Opaque")
            .unwrap()
            .matches(&json!({"type": "Opaque"}))
    );
    let ns = by_kind("v1", "Namespace").unwrap();
    assert!(
        FieldSelector::parse(ns, "status.phase=Active")
            .unwrap()
            .matches(&json!({"status": {"phase": "Active"}}))
    );
    let cms = by_kind("v1", "ConfigMap").unwrap();
    assert!(FieldSelector::parse(cms, "status.phase=x").is_err());
    // Escaped separators in values.
    let sel = FieldSelector::parse(cms, r"metadata.name=a\,b").unwrap();
    assert!(sel.matches(&json!({"metadata": {"name": "a,b"}})));
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,8}",
        "[a-z]{1,5}\\.[a-z]{2,4}/[a-z][a-z0-9-]{0,6}[a-z0-9]",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?"
    ]
}

fn requirement() -> impl Strategy<Value = Requirement> {
    let set = prop::collection::btree_set("[a-z0-9]{1,6}", 1..4);
    prop_oneof![
        (key(), value()).prop_map(|(k, v)| Requirement::Equals(k, v)),
        (key(), value()).prop_map(|(k, v)| Requirement::NotEquals(k, v)),
        (key(), set.clone()).prop_map(|(k, s)| Requirement::In(k, s)),
        (key(), set).prop_map(|(k, s)| Requirement::NotIn(k, s)),
        key().prop_map(Requirement::Exists),
        key().prop_map(Requirement::DoesNotExist),
    ]
}

proptest! {
    #[test]
    fn label_selector_round_trips(reqs in prop::collection::vec(requirement(), 0..6)) {
        let sel = LabelSelector { requirements: reqs, nothing: false };
        let text = sel.to_string();
        let back = LabelSelector::parse(&text).unwrap();
        prop_assert_eq!(&back, &sel, "{}", text);
    }

    #[test]
    fn parsed_selectors_match_like_their_requirements(
        reqs in prop::collection::vec(requirement(), 0..4),
        labels in prop::collection::btree_map(key(), value(), 0..4),
    ) {
        let sel = LabelSelector::parse(&LabelSelector { requirements: reqs.clone(), nothing: false }.to_string()).unwrap();
        prop_assert_eq!(sel.matches(&labels), reqs.iter().all(|r| r.matches(&labels)));
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,40}") {
        let _ = LabelSelector::parse(&s);
        let _ = FieldSelector::parse(by_kind("v1", "Pod").unwrap(), &s);
    }
}
