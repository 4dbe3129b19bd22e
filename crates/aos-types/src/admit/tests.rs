use serde_json::{Value, json};

use super::*;
use crate::{parse_manifests, resource};

fn fixture(name: &str) -> Value {
    let text = match name {
        "deployment" => include_str!("../../testdata/seed/corrected/deployment.yaml"),
        "destinationrule" => include_str!("../../testdata/seed/corrected/destinationrule.yaml"),
        "hpa" => include_str!("../../testdata/seed/corrected/hpa.yaml"),
        "virtualservice" => include_str!("../../testdata/seed/corrected/virtualservice.yaml"),
        other => panic!("no fixture {other}"),
    };
    parse_manifests(name, text).unwrap().remove(0).value
}

fn rt_of(obj: &Value) -> &'static ResourceType {
    resource::by_kind(
        obj["apiVersion"].as_str().unwrap(),
        obj["kind"].as_str().unwrap(),
    )
    .unwrap()
}

fn admit_ok(mut obj: Value) -> (Value, Vec<Warning>) {
    let rt = rt_of(&obj);
    match admit(rt, &mut obj, None) {
        Ok(w) => (obj, w),
        Err(e) => panic!("unexpected errors: {e:#?}"),
    }
}

/// Set (or, with `null`, remove) the field at a JSON pointer, creating parents.
fn edit(obj: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let mut cur = &mut *obj;
    for part in parent.split('/').skip(1) {
        cur = match cur {
            Value::Array(items) => &mut items[part.parse::<usize>().unwrap()],
            Value::Object(map) => map.entry(part).or_insert_with(|| json!({})),
            _ => panic!("cannot descend into {pointer}"),
        };
    }
    match cur {
        Value::Array(items) => {
            let i: usize = key.parse().unwrap();
            if value.is_null() {
                items.remove(i);
            } else if i == items.len() {
                items.push(value);
            } else {
                items[i] = value;
            }
        }
        Value::Object(map) => {
            if value.is_null() {
                map.remove(key);
            } else {
                map.insert(key.to_string(), value);
            }
        }
        _ => panic!("cannot set {pointer}"),
    }
}

fn errors_of(base: &str, edits: &[(&str, Value)]) -> Vec<FieldError> {
    let mut obj = fixture(base);
    for (pointer, value) in edits {
        edit(&mut obj, pointer, value.clone());
    }
    let rt = rt_of(&fixture(base));
    match admit(rt, &mut obj, None) {
        Ok(w) => panic!("expected an error for {edits:?}, got warnings {w:?}"),
        Err(e) => e,
    }
}

#[test]
fn corrected_seed_admits_cleanly() {
    for name in ["deployment", "destinationrule", "hpa", "virtualservice"] {
        admit_ok(fixture(name));
    }
}

#[test]
fn seed_deployment_warns_exactly_about_misplaced_fields() {
    let (_, warnings) = admit_ok(fixture("deployment"));
    let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.template.spec.securityContext.readOnlyRootFilesystem",
            "spec.template.spec.securityContext.allowPrivilegeEscalation",
            "spec.template.spec.securityContext.capabilities",
        ]
    );
    for w in &warnings {
        let field = w.path.rsplit('.').next().unwrap();
        let intended = format!("spec.template.spec.containers[*].securityContext.{field}");
        assert!(w.message.contains(&intended), "{w}");
        assert!(w.message.contains("already sets it"), "{w}");
        assert!(w.message.starts_with("unknown field"), "{w}");
    }
}

#[test]
fn misplaced_fields_are_dropped_and_say_when_the_container_lacks_them() {
    let mut d = fixture("deployment");
    edit(
        &mut d,
        "/spec/template/spec/containers/0/securityContext/readOnlyRootFilesystem",
        Value::Null,
    );
    let (admitted, warnings) = admit_ok(d);
    let pod = &admitted["spec"]["template"]["spec"];
    assert!(
        pod["securityContext"]
            .get("readOnlyRootFilesystem")
            .is_none()
    );
    assert!(pod["securityContext"].get("capabilities").is_none());
    assert_eq!(pod["securityContext"]["runAsUser"], json!(1001));
    let w = warnings
        .iter()
        .find(|w| w.path.ends_with("readOnlyRootFilesystem"))
        .unwrap();
    assert!(w.message.contains("not set there"), "{w}");

    // A bare Pod: `spec.securityContext.privileged`.
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"securityContext": {"privileged": true},
                 "containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1",
                                 "securityContext": {"privileged": true}}]}});
    let w = admit(rt_of(&pod), &mut pod, None).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].path, "spec.securityContext.privileged");
    assert!(
        w[0].message
            .contains("spec.containers[*].securityContext.privileged")
    );
    assert!(
        w[0].message
            .contains("spec.containers[1].securityContext.privileged already set"),
        "{}",
        w[0]
    );
    assert!(
        w[0].message
            .contains("not set at spec.containers[0].securityContext.privileged"),
        "{}",
        w[0]
    );

    // The reverse: a pod-level field written on a container.
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "x:1", "securityContext": {"fsGroup": 2000}}]}});
    let w = admit(rt_of(&pod), &mut pod, None).unwrap();
    assert_eq!(w[0].path, "spec.containers[0].securityContext.fsGroup");
    assert!(
        w[0].message
            .contains("belongs in spec.securityContext.fsGroup"),
        "{}",
        w[0]
    );
}

#[test]
fn unknown_fields_warn_with_paths_and_are_pruned() {
    let mut d = fixture("deployment");
    edit(&mut d, "/spec/replicaz", json!(3));
    edit(
        &mut d,
        "/spec/template/spec/containers/0/imagePolicy",
        json!("x"),
    );
    edit(
        &mut d,
        "/spec/template/spec/containers/0/ports/0/hostIp",
        json!({"a": 1}),
    );
    edit(&mut d, "/metadata/label", json!({"a": "b"}));
    let (admitted, warnings) = admit_ok(d);
    let mut unknown: Vec<&str> = warnings
        .iter()
        .filter(|w| w.message == "unknown field")
        .map(|w| w.path.as_str())
        .collect();
    unknown.sort();
    assert_eq!(
        unknown,
        [
            "metadata.label",
            "spec.replicaz",
            "spec.template.spec.containers[0].imagePolicy",
            "spec.template.spec.containers[0].ports[0].hostIp",
        ]
    );
    assert!(admitted["spec"].get("replicaz").is_none());
    assert!(
        admitted["spec"]["template"]["spec"]["containers"][0]
            .get("imagePolicy")
            .is_none()
    );
    assert!(admitted["metadata"].get("label").is_none());

    let mut vs = fixture("virtualservice");
    edit(&mut vs, "/spec/http/0/route/1/destination/weight", json!(5));
    edit(&mut vs, "/spec/http/1/retry", json!({"attempts": 2}));
    let (_, warnings) = admit_ok(vs);
    let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.http[0].route[1].destination.weight",
            "spec.http[1].retry"
        ]
    );
}

#[test]
fn unimplemented_fields_warn() {
    let (_, warnings) = admit_ok(fixture("destinationrule"));
    let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive",
            "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy",
        ]
    );
    assert!(
        warnings
            .iter()
            .all(|w| w.message == "not implemented by aos; ignored")
    );

    let mut d = fixture("deployment");
    let pod = "/spec/template/spec";
    edit(&mut d, &format!("{pod}/hostNetwork"), json!(true));
    edit(&mut d, &format!("{pod}/dnsPolicy"), json!("ClusterFirst"));
    edit(
        &mut d,
        &format!("{pod}/affinity"),
        json!({"nodeAffinity": {}}),
    );
    edit(
        &mut d,
        &format!("{pod}/volumes/2"),
        json!({"name": "host", "hostPath": {"path": "/x"}}),
    );
    let (_, warnings) = admit_ok(d);
    let mut paths: Vec<&str> = warnings
        .iter()
        .filter(|w| w.message.starts_with("not implemented"))
        .map(|w| w.path.as_str())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "spec.template.spec.affinity",
            "spec.template.spec.hostNetwork",
            "spec.template.spec.volumes[2].hostPath",
        ]
    );

    let mut vs = fixture("virtualservice");
    edit(&mut vs, "/spec/http/1/mirror", json!({"host": "shadow"}));
    let (_, warnings) = admit_ok(vs);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].path, "spec.http[1].mirror");
}

#[test]
fn deployment_defaults() {
    let (d, _) = admit_ok(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [
                                  {"name": "web", "image": "nginx",
                                   "ports": [{"containerPort": 80}],
                                   "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m"}},
                                   "readinessProbe": {"httpGet": {"port": 80}},
                                   "env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]},
                                  {"name": "side", "image": "busybox:1.36"}],
                                       "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}]}}}
    }));
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], json!(1));
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(spec["revisionHistoryLimit"], json!(10));
    assert_eq!(spec["progressDeadlineSeconds"], json!(600));
    assert!(spec.get("minReadySeconds").is_none());
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], json!("Always"));
    assert_eq!(pod["terminationGracePeriodSeconds"], json!(30));
    assert_eq!(pod["dnsPolicy"], json!("ClusterFirst"));
    assert_eq!(pod["schedulerName"], json!("default-scheduler"));
    assert_eq!(pod["securityContext"], json!({}));
    assert_eq!(
        pod["volumes"][0],
        json!({"name": "scratch", "emptyDir": {}})
    );
    assert_eq!(pod["volumes"][1]["configMap"]["defaultMode"], json!(420));
    let c = &pod["containers"][0];
    assert_eq!(c["imagePullPolicy"], json!("Always"));
    assert_eq!(
        pod["containers"][1]["imagePullPolicy"],
        json!("IfNotPresent")
    );
    assert_eq!(c["terminationMessagePath"], json!("/dev/termination-log"));
    assert_eq!(c["terminationMessagePolicy"], json!("File"));
    assert_eq!(c["ports"][0]["protocol"], json!("TCP"));
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
               "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "100m", "memory": "1Gi"})
    );
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
        json!("v1")
    );
}

#[test]
fn other_defaults() {
    let (ns, _) = admit_ok(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "agent-os"}}),
    );
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], json!("Active"));

    let (svc, _) = admit_ok(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}, {"name": "m", "port": 9090, "targetPort": "metrics"}]}}),
    );
    let spec = &svc["spec"];
    assert_eq!(spec["type"], json!("ClusterIP"));
    assert_eq!(spec["sessionAffinity"], json!("None"));
    assert_eq!(
        spec["ports"][0],
        json!({"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80})
    );
    assert_eq!(spec["ports"][1]["targetPort"], json!("metrics"));

    let (secret, _) = admit_ok(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "stringData": {"database-url": "postgres://x"}, "data": {"other": "eA=="}}),
    );
    assert_eq!(secret["type"], json!("Opaque"));
    assert!(secret.get("stringData").is_none());
    assert_eq!(
        secret["data"],
        json!({"other": "eA==", "database-url": "cG9zdGdyZXM6Ly94"})
    );

    let (rs, _) = admit_ok(
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}),
    );
    assert_eq!(rs["spec"]["replicas"], json!(1));

    // HPA: minReplicas; behavior rules filled in when behavior is given.
    let mut hpa = fixture("hpa");
    edit(&mut hpa, "/spec/minReplicas", Value::Null);
    edit(&mut hpa, "/spec/behavior/scaleDown", Value::Null);
    edit(&mut hpa, "/spec/behavior/scaleUp/selectPolicy", Value::Null);
    let (hpa, _) = admit_ok(hpa);
    assert_eq!(hpa["spec"]["minReplicas"], json!(1));
    assert_eq!(
        hpa["spec"]["behavior"]["scaleDown"],
        hpa_default_scale_down()
    );
    assert_eq!(
        hpa["spec"]["behavior"]["scaleUp"]["selectPolicy"],
        json!("Max")
    );
    assert_eq!(
        hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"],
        json!(60)
    );
    let (bare, _) = admit_ok(
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d", "apiVersion": "apps/v1"},
        "maxReplicas": 3, "behavior": {}}}),
    );
    assert_eq!(bare["spec"]["behavior"], hpa_default_behavior());
    assert_eq!(
        bare["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        json!(80)
    );
}

/// (base fixture, edits, expected path, expected message prefix)
type Case = (
    &'static str,
    Vec<(&'static str, Value)>,
    &'static str,
    &'static str,
);

#[test]
fn single_errors_have_kubernetes_paths() {
    let cases: Vec<Case> = vec![
        (
            "deployment",
            vec![("/spec/replicas", json!(-1))],
            "spec.replicas",
            "Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            "deployment",
            vec![("/spec/selector/matchLabels/app", json!("other"))],
            "spec.template.metadata.labels",
            "Invalid value: {\"app\":\"agent-registry\",\"version\":\"v1.0.0\"}: selector does not match template labels",
        ),
        (
            "deployment",
            vec![("/kind", json!("Deploymnt"))],
            "kind",
            "Invalid value: \"Deploymnt\"",
        ),
        (
            "deployment",
            vec![("/apiVersion", json!("apps/v1beta2"))],
            "apiVersion",
            "Invalid value: \"apps/v1beta2\"",
        ),
        (
            "deployment",
            vec![("/spec/replicas", json!("three"))],
            "spec.replicas",
            "Invalid value: \"three\": invalid type",
        ),
        (
            "deployment",
            vec![("/metadata/name", Value::Null)],
            "metadata.name",
            "Required value",
        ),
        (
            "deployment",
            vec![("/metadata/name", json!("Agent_Registry"))],
            "metadata.name",
            "Invalid value: \"Agent_Registry\": a lowercase RFC 1123 subdomain",
        ),
        (
            "deployment",
            vec![("/metadata/namespace", json!("agent.os"))],
            "metadata.namespace",
            "Invalid value: \"agent.os\"",
        ),
        (
            "deployment",
            vec![("/metadata/labels/bad key", json!("x"))],
            "metadata.labels",
            "Invalid value: \"bad key\"",
        ),
        (
            "deployment",
            vec![("/metadata/labels/app", json!("-x"))],
            "metadata.labels",
            "Invalid value: \"-x\"",
        ),
        (
            "deployment",
            vec![("/spec/selector", Value::Null)],
            "spec.selector",
            "Required value",
        ),
        (
            "deployment",
            vec![("/spec/selector/matchLabels", json!({}))],
            "spec.selector",
            "Invalid value: {\"matchLabels\":{}}: empty selector is invalid for deployment",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/0/resources/requests/cpu",
                json!("2"),
            )],
            "spec.template.spec.containers[0].resources.requests",
            "Invalid value: \"2\": must be less than or equal to cpu limit of 500m",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/0/resources/limits/cpu",
                json!("lots"),
            )],
            "spec.template.spec.containers[0].resources.limits[cpu]",
            "Invalid value: \"lots\": quantities must match",
        ),
        (
            "deployment",
            vec![("/spec/template/spec/containers/0/image", Value::Null)],
            "spec.template.spec.containers[0].image",
            "Required value",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/1",
                json!({"name": "agent-registry", "image": "x:1"}),
            )],
            "spec.template.spec.containers[1].name",
            "Duplicate value: \"agent-registry\"",
        ),
        (
            "deployment",
            vec![("/spec/template/spec/containers", json!([]))],
            "spec.template.spec.containers",
            "Required value",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/0/ports/0/containerPort",
                json!(70000),
            )],
            "spec.template.spec.containers[0].ports[0].containerPort",
            "Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/0/ports/0/name",
                json!("http-metrics-port"),
            )],
            "spec.template.spec.containers[0].ports[0].name",
            "Invalid value: \"http-metrics-port\": must be no more than 15 characters",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/0/ports/1",
                json!({"containerPort": 3001, "name": "http"}),
            )],
            "spec.template.spec.containers[0].ports[1].name",
            "Duplicate value: \"http\"",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/0/ports/0/protocol",
                json!("HTTP"),
            )],
            "spec.template.spec.containers[0].ports[0].protocol",
            "Unsupported value: \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
        ),
        (
            "deployment",
            vec![(
                "/spec/strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
            )],
            "spec.strategy.rollingUpdate.maxUnavailable",
            "Invalid value: \"0%\": may not be 0 when `maxSurge` is 0",
        ),
        (
            "deployment",
            vec![("/spec/template/spec/restartPolicy", json!("Never"))],
            "spec.template.spec.restartPolicy",
            "Unsupported value: \"Never\": supported values: \"Always\"",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/0/livenessProbe/tcpSocket",
                json!({"port": 3000}),
            )],
            "spec.template.spec.containers[0].livenessProbe.tcpSocket",
            "Forbidden: may not specify more than 1 handler type",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/0/readinessProbe/httpGet",
                Value::Null,
            )],
            "spec.template.spec.containers[0].readinessProbe",
            "Required value: must specify a handler type",
        ),
        (
            "deployment",
            vec![("/spec/template/spec/containers/0/env/0/name", json!("A=B"))],
            "spec.template.spec.containers[0].env[0].name",
            "Invalid value: \"A=B\"",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/0/env/1/valueFrom/secretKeyRef/key",
                Value::Null,
            )],
            "spec.template.spec.containers[0].env[1].valueFrom.secretKeyRef.key",
            "Required value",
        ),
        (
            "deployment",
            vec![(
                "/spec/template/spec/containers/0/volumeMounts/1/name",
                json!("cachee"),
            )],
            "spec.template.spec.containers[0].volumeMounts[1].name",
            "Invalid value: \"cachee\"",
        ),
        (
            "deployment",
            vec![
                ("/spec/template/spec/volumes/1/name", json!("tmp")),
                (
                    "/spec/template/spec/containers/0/volumeMounts/1",
                    Value::Null,
                ),
            ],
            "spec.template.spec.volumes[1].name",
            "Duplicate value: \"tmp\"",
        ),
        (
            "deployment",
            vec![("/spec/template/spec/tolerations/0/value", json!("linux"))],
            "spec.template.spec.tolerations[0].operator",
            "Invalid value: \"linux\": value must be empty when `operator` is 'Exists'",
        ),
        (
            "deployment",
            vec![
                ("/spec/progressDeadlineSeconds", json!(10)),
                ("/spec/minReadySeconds", json!(10)),
            ],
            "spec.progressDeadlineSeconds",
            "Invalid value: 10: must be greater than minReadySeconds",
        ),
        (
            "virtualservice",
            vec![("/spec/http/0/route/1/weight", json!(10))],
            "spec.http[0].route",
            "Invalid value: 110: total destination weight must be 100",
        ),
        (
            "virtualservice",
            vec![("/spec/http/0/route/0/destination/host", Value::Null)],
            "spec.http[0].route[0].destination.host",
            "Required value",
        ),
        (
            "virtualservice",
            vec![("/spec/http/0/retries/perTryTimeout", json!("2 seconds"))],
            "spec.http[0].retries.perTryTimeout",
            "Invalid value: \"2 seconds\"",
        ),
        (
            "virtualservice",
            vec![("/spec/http/0/retries/attempts", json!(-1))],
            "spec.http[0].retries.attempts",
            "Invalid value: -1",
        ),
        (
            "virtualservice",
            vec![("/spec/http/0/fault/abort/percentage/value", json!(150))],
            "spec.http[0].fault.abort.percentage.value",
            "Invalid value: 150",
        ),
        (
            "virtualservice",
            vec![("/spec/http/0/timeout", json!("5"))],
            "spec.http[0].timeout",
            "Invalid value: \"5\"",
        ),
        (
            "virtualservice",
            vec![("/spec/http/0/match/0/uri", json!({"regex": "(unclosed"}))],
            "spec.http[0].match[0].uri.regex",
            "Invalid value: \"(unclosed\": invalid regular expression",
        ),
        (
            "virtualservice",
            vec![("/spec/http/0/match/0/uri/regex", json!("^/api"))],
            "spec.http[0].match[0].uri.regex",
            "Forbidden: only one of exact, prefix or regex",
        ),
        (
            "virtualservice",
            vec![("/spec/hosts", json!([]))],
            "spec.hosts",
            "Required value",
        ),
        (
            "virtualservice",
            vec![("/spec/http/0/corsPolicy/allowMethods/0", json!("FETCH"))],
            "spec.http[0].corsPolicy.allowMethods[0]",
            "Unsupported value: \"FETCH\"",
        ),
        (
            "destinationrule",
            vec![("/spec/host", Value::Null)],
            "spec.host",
            "Required value",
        ),
        (
            "destinationrule",
            vec![("/spec/subsets/1/name", json!("v1"))],
            "spec.subsets[1].name",
            "Duplicate value: \"v1\"",
        ),
        (
            "destinationrule",
            vec![(
                "/spec/trafficPolicy/outlierDetection/maxEjectionPercent",
                json!(150),
            )],
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "Invalid value: 150: must be between 0 and 100",
        ),
        (
            "destinationrule",
            vec![(
                "/spec/trafficPolicy/connectionPool/tcp/connectTimeout",
                json!("soon"),
            )],
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "Invalid value: \"soon\"",
        ),
        (
            "destinationrule",
            vec![(
                "/spec/trafficPolicy/loadBalancer",
                json!({"simple": "FASTEST"}),
            )],
            "spec.trafficPolicy.loadBalancer.simple",
            "Unsupported value: \"FASTEST\"",
        ),
        (
            "hpa",
            vec![("/spec/maxReplicas", json!(2))],
            "spec.maxReplicas",
            "Invalid value: 2: must be greater than or equal to `minReplicas`",
        ),
        (
            "hpa",
            vec![("/spec/minReplicas", json!(0))],
            "spec.minReplicas",
            "Invalid value: 0",
        ),
        (
            "hpa",
            vec![("/spec/scaleTargetRef/name", Value::Null)],
            "spec.scaleTargetRef.name",
            "Required value",
        ),
        (
            "hpa",
            vec![("/spec/metrics/0/type", json!("Memory"))],
            "spec.metrics[0].type",
            "Unsupported value: \"Memory\"",
        ),
        (
            "hpa",
            vec![(
                "/spec/metrics/0/resource/target/averageUtilization",
                json!(0),
            )],
            "spec.metrics[0].resource.target.averageUtilization",
            "Invalid value: 0: must be greater than 0",
        ),
        (
            "hpa",
            vec![(
                "/spec/behavior/scaleDown/policies/0/periodSeconds",
                json!(4000),
            )],
            "spec.behavior.scaleDown.policies[0].periodSeconds",
            "Invalid value: 4000",
        ),
    ];
    for (base, edits, path, message) in cases {
        let errors = errors_of(base, &edits);
        assert_eq!(errors.len(), 1, "{base} {edits:?}: {errors:#?}");
        assert_eq!(errors[0].path, path, "{base} {edits:?}: {}", errors[0]);
        assert!(
            errors[0].message.starts_with(message),
            "{base} {edits:?}:\n got: {}\nwant: {message}",
            errors[0].message
        );
    }
}

#[test]
fn services_validate() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"ports": [{"name": "a", "port": 80}, {"port": 81}]}),
            "spec.ports[1].name",
            "Required value",
        ),
        (
            json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
            "spec.ports[1].name",
            "Duplicate value: \"a\"",
        ),
        (
            json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}),
            "spec.ports[1]",
            "Duplicate value",
        ),
        (
            json!({"ports": [{"port": 0, "targetPort": 8080}]}),
            "spec.ports[0].port",
            "Invalid value: 0",
        ),
        (
            json!({"ports": [{"port": 80, "targetPort": "Not_Valid"}]}),
            "spec.ports[0].targetPort",
            "Invalid value: \"Not_Valid\"",
        ),
        (
            json!({"ports": [{"port": 80}], "selector": {"app": "bad value"}}),
            "spec.selector",
            "Invalid value: \"bad value\"",
        ),
        (
            json!({"ports": [{"port": 80}], "type": "Ingress"}),
            "spec.type",
            "Unsupported value: \"Ingress\"",
        ),
        (
            json!({"ports": [{"port": 80, "nodePort": 30000}]}),
            "spec.ports[0].nodePort",
            "Forbidden",
        ),
        (json!({}), "spec.ports", "Required value"),
    ];
    for (spec, path, message) in cases {
        let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec});
        let errors = admit(rt_of(&svc), &mut svc, None).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].path, path);
        assert!(errors[0].message.starts_with(message), "{}", errors[0]);
    }
    // Service names are DNS labels: no dots.
    let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a.b"}, "spec": {"ports": [{"port": 80}]}});
    assert_eq!(
        admit(rt_of(&svc), &mut svc, None).unwrap_err()[0].path,
        "metadata.name"
    );
    // Cluster-scoped kinds may not carry a namespace.
    let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "namespace": "b"}});
    assert_eq!(
        admit(rt_of(&ns), &mut ns, None).unwrap_err()[0].path,
        "metadata.namespace"
    );
}

#[test]
fn selector_is_immutable_on_update() {
    let (old, _) = admit_ok(fixture("deployment"));
    let mut new = fixture("deployment");
    edit(
        &mut new,
        "/spec/selector/matchLabels/version",
        json!("v1.0.0"),
    );
    let errors = admit(rt_of(&new), &mut new, Some(&old)).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "spec.selector");
    assert!(errors[0].message.ends_with("field is immutable"));
    // Same selector, other changes: fine.
    let mut same = fixture("deployment");
    edit(&mut same, "/spec/replicas", json!(5));
    admit(rt_of(&same), &mut same, Some(&old)).unwrap();
}

#[test]
fn type_errors_and_bad_shapes() {
    let rt = resource::by_kind("v1", "ConfigMap").unwrap();
    let mut not_object = json!(["a"]);
    assert_eq!(
        admit(rt, &mut not_object, None).unwrap_err()[0].kind,
        FieldErrorKind::TypeInvalid
    );
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"n": 1}}});
    let e = admit(rt, &mut cm, None).unwrap_err();
    assert_eq!(e[0].path, "metadata.labels.n");
    assert_eq!(e[0].kind, FieldErrorKind::TypeInvalid);
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"bad/key": "x"}});
    assert_eq!(
        admit(rt, &mut cm, None).unwrap_err()[0].path,
        "data[bad/key]"
    );
    // Nulls are "not set".
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": null}, "data": null});
    assert!(admit(rt, &mut cm, None).unwrap().is_empty());
    assert!(cm.get("data").is_none());
}

#[test]
fn istio_versions_are_both_served() {
    let mut vs = fixture("virtualservice");
    edit(&mut vs, "/apiVersion", json!("networking.istio.io/v1"));
    admit_ok(vs);
}

#[test]
fn every_kind_admits_a_minimal_object() {
    let objects = [
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a.conf": "x"}}),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e.1", "namespace": "d"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d"}, "reason": "Started", "type": "Normal"}),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g"}, "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}),
    ];
    for obj in objects {
        let (_, warnings) = admit_ok(obj);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
