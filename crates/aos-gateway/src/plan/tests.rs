//! Table tests of the route compiler.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::snapshot::Snapshot;

/// The seed's corrected VirtualService and DestinationRule.
const SEED: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: agent-registry
  namespace: agent-os
spec:
  hosts:
  - agent-registry.agent-os.svc.cluster.local
  - agent-registry.example.com
  gateways:
  - agent-os-gateway
  http:
  - match:
    - uri:
        prefix: /api/v1/agent-registry
    route:
    - destination:
        host: agent-registry
        port:
          number: 3000
      weight: 100
    - destination:
        host: agent-registry-canary
        port:
          number: 3000
      weight: 0
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream
    fault:
      delay:
        percentage:
          value: 0.1
        fixedDelay: 2s
      abort:
        percentage:
          value: 0.01
        httpStatus: 503
    timeout: 5s
    corsPolicy:
      allowOrigins:
      - exact: https://example.com
      allowMethods: [GET, POST, PUT, DELETE]
      allowHeaders: [content-type, authorization]
  - match:
    - uri:
        prefix: /metrics
    route:
    - destination:
        host: agent-registry
        port:
          number: 3000
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: agent-registry
  namespace: agent-os
spec:
  host: agent-registry
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        tcpKeepalive:
          time: 7200s
          interval: 75s
      http:
        http1MaxPendingRequests: 100
        http2MaxRequests: 1000
        idleTimeout: 90s
        h2UpgradePolicy: UPGRADE
    outlierDetection:
      consecutiveGatewayErrors: 5
      consecutive5xxErrors: 5
      interval: 30s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
      minHealthPercent: 50
      splitExternalLocalOriginErrors: true
  subsets:
  - name: v1
    labels:
      version: v1.0.0
  - name: v2
    labels:
      version: v2.0.0
"#;

fn service(ns: &str, name: &str, ports: &[(&str, u16)], selector: bool) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "port": p}))
        .collect();
    let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": {"ports": ports}});
    if selector {
        s["spec"]["selector"] = json!({"app": name});
    }
    s
}

fn endpoints(ns: &str, name: &str, addrs: &[(&str, Option<&str>)], ports: &[(&str, u16)]) -> Value {
    let addresses: Vec<Value> = addrs
        .iter()
        .map(|(ip, pod)| match pod {
            Some(p) => json!({"ip": ip, "targetRef": {"kind": "Pod", "name": p, "namespace": ns}}),
            None => json!({"ip": ip}),
        })
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "port": p}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns},
           "subsets": [{"addresses": addresses, "ports": ports}]})
}

fn pod(ns: &str, name: &str, version: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns,
        "labels": {"app": "agent-registry", "version": version},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "agent-registry-7c9f8d6b5", "controller": true}]}})
}

fn compile_objects(objects: Vec<Value>) -> Plan {
    let (snap, other) = Snapshot::from_objects(objects);
    assert!(other.is_empty());
    compile(&snap)
}

fn seed_plan() -> Plan {
    let mut snap = Snapshot::from_yaml("seed.yaml", SEED).unwrap();
    snap.services.push(service(
        "agent-os",
        "agent-registry",
        &[("http", 3000)],
        true,
    ));
    snap.endpoints.push(endpoints(
        "agent-os",
        "agent-registry",
        &[
            ("10.0.0.1", Some("p1")),
            ("10.0.0.2", Some("p2")),
            ("10.0.0.3", Some("p3")),
        ],
        &[("http", 3000)],
    ));
    snap.pods.push(pod("agent-os", "p1", "v1.0.0"));
    snap.pods.push(pod("agent-os", "p2", "v1.0.0"));
    snap.pods.push(pod("agent-os", "p3", "v2.0.0"));
    compile(&snap)
}

fn has_warning(plan: &Plan, needle: &str) -> bool {
    plan.warnings.iter().any(|w| w.contains(needle))
}

fn route_clusters<'a>(plan: &'a Plan, route: &RoutePlan) -> Vec<(&'a ClusterPlan, u32)> {
    match &route.action {
        Action::Route(ds) => ds
            .iter()
            .map(|d| (&plan.clusters[d.cluster], d.weight))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn seed_virtual_service_compiles_with_istio_semantics() {
    let plan = seed_plan();
    let vh = plan
        .vhost_for("agent-registry.example.com")
        .expect("ingress host");
    for alias in [
        "agent-registry.agent-os.svc.cluster.local",
        "agent-registry.agent-os.svc",
        "agent-registry.agent-os",
    ] {
        assert_eq!(plan.vhost_for(alias), Some(vh), "{alias}");
    }
    assert_eq!(plan.vhost_for("agent-registry"), None);
    let routes = &plan.vhosts[vh].routes;
    assert_eq!(routes.len(), 2);

    let api = &routes[0];
    assert_eq!(api.timeout, Some(Duration::from_secs(5)));
    assert_eq!(api.retry.attempts, 3);
    assert_eq!(api.retry.per_try_timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        api.retry.on,
        RetryOn(RetryOn::GATEWAY_ERROR | RetryOn::CONNECT_FAILURE | RetryOn::REFUSED_STREAM)
    );
    let fault = api.fault.as_ref().unwrap();
    assert_eq!(fault.delay, Some((Duration::from_secs(2), 0.001)));
    assert_eq!(fault.abort, Some((StatusCode::SERVICE_UNAVAILABLE, 0.0001)));
    let cors = api.cors.as_ref().unwrap();
    assert!(cors.allows("https://example.com") && !cors.allows("https://example.org"));
    assert_eq!(cors.allow_methods.as_ref().unwrap(), "GET,POST,PUT,DELETE");

    let dests = route_clusters(&plan, api);
    assert_eq!(dests.len(), 2);
    let (main, w) = dests[0];
    assert_eq!(w, 100);
    assert_eq!(
        main.name,
        "outbound|3000||agent-registry.agent-os.svc.cluster.local"
    );
    assert_eq!(main.endpoints.len(), 3);
    assert_eq!(
        main.endpoints[0].pod,
        Some(PodInfo {
            namespace: "agent-os".into(),
            name: "p1".into(),
            workload: "agent-registry".into()
        })
    );
    let (canary, w) = dests[1];
    assert_eq!((w, canary.endpoints.len()), (0, 0));
    assert!(has_warning(
        &plan,
        "agent-registry-canary.agent-os.svc.cluster.local is not a known Service"
    ));
    assert!(has_warning(
        &plan,
        "gateway agent-os/agent-os-gateway is not defined by any Gateway object"
    ));
    assert!(has_warning(
        &plan,
        "connectionPool.tcp.tcpKeepalive: not implemented"
    ));

    // The DestinationRule's policies.
    let p = &main.policy;
    assert_eq!(p.lb, LbPolicy::RoundRobin);
    assert_eq!(
        p.pool,
        PoolSettings {
            max_connections: 100,
            connect_timeout: Duration::from_millis(30),
            max_pending_requests: 100,
            max_requests: 1000,
            idle_timeout: Duration::from_secs(90),
            http2: true,
        }
    );
    assert_eq!(
        p.outlier,
        Some(OutlierSettings {
            consecutive_5xx: 5,
            consecutive_gateway: 5,
            consecutive_local_origin: 5,
            split_local_origin: true,
            interval: Duration::from_secs(30),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 50,
            min_health_percent: 50,
        })
    );

    // The /metrics route has no retries block: Istio's default policy.
    assert_eq!(routes[1].retry, RetryPolicy::istio_default());
    assert_eq!(routes[1].timeout, None);
    assert!(routes[1].fault.is_none());
}

#[test]
fn subsets_select_endpoints_by_pod_labels_and_merge_policies() {
    let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "r", "namespace": "agent-os"},
    "spec": {"hosts": ["r.example.com"], "http": [{"route": [
        {"destination": {"host": "agent-registry", "subset": "v1"}, "weight": 90},
        {"destination": {"host": "agent-registry.agent-os.svc.cluster.local", "subset": "v2"}, "weight": 10},
        {"destination": {"host": "agent-registry", "subset": "v3"}, "weight": 0},
    ]}]}});
    let dr = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
    "metadata": {"name": "r", "namespace": "agent-os"},
    "spec": {"host": "agent-registry",
        "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"},
            "portLevelSettings": [{"port": {"number": 3000}, "loadBalancer": {"simple": "RANDOM"}}]},
        "subsets": [
            {"name": "v1", "labels": {"version": "v1.0.0"}},
            {"name": "v2", "labels": {"version": "v2.0.0"},
             "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "X-User"}}}},
        ]}});
    let plan = compile_objects(vec![
        service("agent-os", "agent-registry", &[("http", 3000)], true),
        endpoints(
            "agent-os",
            "agent-registry",
            &[
                ("10.0.0.1", Some("p1")),
                ("10.0.0.2", Some("p2")),
                ("10.0.0.3", Some("p3")),
                ("10.0.0.4", None),
            ],
            &[("http", 3000)],
        ),
        pod("agent-os", "p1", "v1.0.0"),
        pod("agent-os", "p2", "v1.0.0"),
        pod("agent-os", "p3", "v2.0.0"),
        vs,
        dr,
    ]);
    let vh = plan.vhost_for("r.example.com").unwrap();
    let dests = route_clusters(&plan, &plan.vhosts[vh].routes[0]);
    let ips = |c: &ClusterPlan| {
        c.endpoints
            .iter()
            .map(|e| e.addr.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        dests[0].0.name,
        "outbound|3000|v1|agent-registry.agent-os.svc.cluster.local"
    );
    assert_eq!(ips(dests[0].0), ["10.0.0.1:3000", "10.0.0.2:3000"]);
    assert_eq!(
        dests[0].0.policy.lb,
        LbPolicy::Random,
        "port level overrides top level"
    );
    assert_eq!(ips(dests[1].0), ["10.0.0.3:3000"]);
    assert_eq!(
        dests[1].0.policy.lb,
        LbPolicy::ConsistentHash(HashKey::Header(HeaderName::from_static("x-user"))),
        "subset overrides port level"
    );
    assert!(dests[2].0.endpoints.is_empty());
    assert!(has_warning(&plan, "subset \"v3\" is not defined"));
}

#[test]
fn gateway_objects_decide_what_the_builtin_gateway_serves() {
    let vs = |name: &str, hosts: Value, gateways: Value| {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "web"},
            "spec": {"hosts": hosts, "gateways": gateways, "http": [{"route": [{"destination": {"host": "app"}}]}]}})
    };
    let gw = |name: &str, selector: Value, hosts: Value| {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "web"},
            "spec": {"selector": selector, "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": hosts}]}})
    };
    let plan = compile_objects(vec![
        service("web", "app", &[("http", 80)], true),
        gw(
            "ours",
            json!({"istio": "ingressgateway"}),
            json!(["*.example.com"]),
        ),
        gw("theirs", json!({"istio": "egressgateway"}), json!(["*"])),
        vs(
            "a",
            json!(["a.example.com", "a.example.org"]),
            json!(["ours"]),
        ),
        vs("b", json!(["b.example.com"]), json!(["web/theirs"])),
        vs("c", json!(["c.example.com"]), json!(["theirs", "mesh"])),
    ]);
    assert!(plan.vhost_for("a.example.com").is_some());
    assert!(
        plan.vhost_for("a.example.org").is_none(),
        "not admitted by the Gateway's hosts"
    );
    assert!(
        plan.vhost_for("b.example.com").is_none(),
        "the Gateway selects another proxy"
    );
    assert!(plan.vhost_for("c.example.com").is_some(), "mesh");
    assert!(has_warning(
        &plan,
        "gateway web/theirs does not select the built-in gateway"
    ));
    // The service itself answers on its names.
    assert!(plan.vhost_for("app.web.svc.cluster.local").is_some());
}

#[test]
fn hosts_wildcards_and_conflicts() {
    let vs = |name: &str, created: &str, hosts: Value| {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "web", "creationTimestamp": created},
            "spec": {"hosts": hosts, "http": [{"route": [{"destination": {"host": "app"}}]}]}})
    };
    let plan = compile_objects(vec![
        service("web", "app", &[("http", 80)], true),
        vs("newer", "2025-02-01T00:00:00Z", json!(["x.example.com"])),
        vs(
            "older",
            "2025-01-01T00:00:00Z",
            json!(["x.example.com", "*.example.com"]),
        ),
        vs("any", "2025-01-01T00:00:00Z", json!(["*"])),
        vs(
            "deeper",
            "2025-03-01T00:00:00Z",
            json!(["*.api.example.com"]),
        ),
    ]);
    let name = |h: &str| plan.vhost_for(h).map(|i| plan.vhosts[i].name.clone());
    assert_eq!(
        name("x.example.com").as_deref(),
        Some("VirtualService web/older")
    );
    assert!(has_warning(
        &plan,
        "VirtualService web/newer: host x.example.com is already served by VirtualService web/older"
    ));
    assert_eq!(
        name("y.example.com").as_deref(),
        Some("VirtualService web/older")
    );
    assert_eq!(
        name("v1.api.example.com").as_deref(),
        Some("VirtualService web/deeper")
    );
    assert_eq!(
        name("elsewhere.net").as_deref(),
        Some("VirtualService web/any")
    );
}

#[test]
fn selectorless_service_with_handwritten_endpoints_and_several_ports() {
    let plan = compile_objects(vec![
        service("db", "ext", &[("http", 80), ("admin", 9000)], false),
        endpoints(
            "db",
            "ext",
            &[("192.168.1.10", None)],
            &[("http", 8080), ("admin", 9090)],
        ),
    ]);
    let vh = plan.vhost_for("ext.db.svc.cluster.local").unwrap();
    let routes = &plan.vhosts[vh].routes;
    let target = |r: &RoutePlan| route_clusters(&plan, r)[0].0.endpoints[0].addr.to_string();
    assert_eq!(routes.len(), 3);
    assert_eq!(routes[0].matches[0].port, Some(80));
    assert_eq!(target(&routes[0]), "192.168.1.10:8080");
    assert_eq!(routes[1].matches[0].port, Some(9000));
    assert_eq!(target(&routes[1]), "192.168.1.10:9090");
    assert!(
        routes[2].matches.is_empty(),
        "any other port goes to the first service port"
    );
    assert_eq!(target(&routes[2]), "192.168.1.10:8080");
    assert_eq!(
        route_clusters(&plan, &routes[0])[0].0.endpoints[0].pod,
        None
    );
}

#[test]
fn broken_routes_are_dropped_with_a_warning() {
    let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "v", "namespace": "web"},
    "spec": {"hosts": ["v.example.com"], "http": [
        {"match": [{"uri": {"regex": "("}}], "route": [{"destination": {"host": "app"}}]},
        {"route": [{"destination": {"host": "app"}, "weight": 0}]},
        {"mirror": {"host": "app"}, "route": [{"destination": {"host": "app"}}],
         "retries": {"attempts": 2, "retryOn": "5xx,bogus,409"}},
    ]}});
    let plan = compile_objects(vec![service("web", "app", &[("http", 80)], true), vs]);
    let vh = plan.vhost_for("v.example.com").unwrap();
    assert_eq!(plan.vhosts[vh].routes.len(), 1);
    assert!(has_warning(
        &plan,
        "spec.http[0].match[0].uri: invalid regex"
    ));
    assert!(has_warning(&plan, "spec.http[1].route: every weight is 0"));
    assert!(has_warning(&plan, "spec.http[2].mirror: not implemented"));
    assert!(has_warning(
        &plan,
        "retry condition \"bogus\" is not implemented"
    ));
    let r = &plan.vhosts[vh].routes[0].retry;
    assert_eq!(r.attempts, 2);
    assert_eq!(r.status_codes, [409]);
    assert!(r.on.has(RetryOn::FIVE_XX) && r.on.has(RetryOn::STATUS_CODES));
}

#[test]
fn istio_defaults() {
    let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "v", "namespace": "web"},
    "spec": {"hosts": ["app"], "http": [
        {"route": [{"destination": {"host": "app"}}],
         "fault": {"abort": {"httpStatus": 500}}, "retries": {"attempts": 0}},
    ]}});
    let dr = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "v", "namespace": "web"},
        "spec": {"host": "app.web.svc.cluster.local", "trafficPolicy": {"outlierDetection": {}}}});
    let plan = compile_objects(vec![service("web", "app", &[("http", 80)], true), vs, dr]);
    // A short VirtualService host means the Service in the VirtualService's namespace.
    let vh = plan.vhost_for("app.web.svc.cluster.local").unwrap();
    assert_eq!(plan.vhosts[vh].name, "VirtualService web/v");
    let route = &plan.vhosts[vh].routes[0];
    assert_eq!(route.retry.attempts, 0);
    assert_eq!(
        route.fault.as_ref().unwrap().abort,
        Some((StatusCode::INTERNAL_SERVER_ERROR, 1.0))
    );
    let c = route_clusters(&plan, route)[0].0;
    assert_eq!(c.policy.pool, PoolSettings::default());
    assert_eq!(
        c.policy.outlier,
        Some(OutlierSettings {
            consecutive_5xx: 5,
            consecutive_gateway: 0,
            consecutive_local_origin: 5,
            split_local_origin: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
            min_health_percent: 0,
        })
    );
}

#[test]
fn compile_is_deterministic() {
    let a = seed_plan();
    let b = seed_plan();
    assert_eq!(a.warnings, b.warnings);
    assert_eq!(a.hosts, b.hosts);
    let names = |p: &Plan| {
        p.clusters
            .iter()
            .map(|c| (c.name.clone(), c.endpoints.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
}

/// Istio's `ConvertPolicy`: no block → the default policy; a block with attempts keeps the
/// default's conditions unless `retryOn` replaces them (codes included); `attempts: 0` or an
/// empty block → no retries.
#[test]
fn retry_blocks_convert_like_istio() {
    let routes = json!([
        {"route": [{"destination": {"host": "app"}}]},
        {"route": [{"destination": {"host": "app"}}], "retries": {"attempts": 3, "perTryTimeout": "2s"}},
        {"route": [{"destination": {"host": "app"}}], "retries": {"attempts": 1, "retryOn": "retriable-status-codes"}},
        {"route": [{"destination": {"host": "app"}}], "retries": {"attempts": 1, "retryOn": "5xx"}},
        {"route": [{"destination": {"host": "app"}}], "retries": {}},
    ]);
    let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "v", "namespace": "web"},
        "spec": {"hosts": ["app"], "http": routes}});
    let plan = compile_objects(vec![service("web", "app", &[("http", 80)], true), vs]);
    let vh = plan.vhost_for("app.web.svc.cluster.local").unwrap();
    let r: Vec<&RetryPolicy> = plan.vhosts[vh].routes.iter().map(|r| &r.retry).collect();
    let default = RetryPolicy::istio_default();
    assert_eq!(default.attempts, 2);
    assert_eq!(default.status_codes, [503]);
    for bit in [
        RetryOn::CONNECT_FAILURE,
        RetryOn::REFUSED_STREAM,
        RetryOn::UNAVAILABLE,
        RetryOn::CANCELLED,
        RetryOn::STATUS_CODES,
    ] {
        assert!(default.on.has(bit));
    }
    assert!(!default.on.has(RetryOn::FIVE_XX) && !default.on.has(RetryOn::RESET));
    assert_eq!(*r[0], default);
    assert_eq!(
        *r[1],
        RetryPolicy {
            attempts: 3,
            per_try_timeout: Some(Duration::from_secs(2)),
            ..default.clone()
        }
    );
    assert_eq!(
        (r[2].on, r[2].status_codes.as_slice()),
        (RetryOn(RetryOn::STATUS_CODES), &[][..])
    );
    assert_eq!(
        (r[3].on, r[3].status_codes.as_slice()),
        (RetryOn(RetryOn::FIVE_XX), &[][..])
    );
    assert_eq!(r[4].attempts, 0);
}
