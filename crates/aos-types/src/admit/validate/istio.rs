//! Istio kinds, with Istio's own rules (its `validation` package), reported
//! with Kubernetes-style field paths.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::super::{Errors, names};
use super::{duration, entries, int_at, items, labels, one_of, port_number, str_at};

/// A host: `*`, `*.example.com`, a short name or an FQDN (trailing dot allowed).
fn host(h: &str, path: &str, errs: &mut Errors) {
    if h == "*" {
        return;
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    let name = name.strip_suffix('.').unwrap_or(name);
    if !names::dns1123_subdomain(&name.to_ascii_lowercase()).is_empty() || name.len() > 255 {
        errs.invalid(
            path,
            &json!(h),
            "must be a valid host name: a DNS name, optionally starting with '*.', or '*'",
        );
    }
}

/// A `StringMatch` with exactly one of exact, prefix, regex.
fn string_match(m: &Value, path: &str, errs: &mut Errors) {
    let set: Vec<&str> = ["exact", "prefix", "regex"]
        .into_iter()
        .filter(|k| m.get(*k).is_some())
        .collect();
    match set.as_slice() {
        [] => errs.required(path, "must set one of exact, prefix or regex"),
        [_] => {}
        [_, rest @ ..] => {
            for k in rest {
                errs.forbidden(
                    &format!("{path}.{k}"),
                    "only one of exact, prefix or regex may be set",
                );
            }
        }
    }
    if let Some(r) = str_at(m, "regex") {
        regex(r, &format!("{path}.regex"), errs);
    }
}

fn regex(r: &str, path: &str, errs: &mut Errors) {
    // Bounded compile: a hostile pattern fails instead of using unbounded memory.
    if let Err(e) = regex::RegexBuilder::new(r).size_limit(1 << 20).build() {
        let first = e
            .to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        errs.invalid(
            path,
            &json!(r),
            &format!("invalid regular expression: {first}"),
        );
    }
}

fn percentage(v: &Value, key: &str, path: &str, errs: &mut Errors) {
    if let Some(p) = v.get(key) {
        let pp = format!("{path}.{key}");
        let value = p.get("value").and_then(Value::as_f64).unwrap_or(0.0);
        if !(0.0..=100.0).contains(&value) {
            errs.invalid(
                &format!("{pp}.value"),
                p.get("value").unwrap_or(&json!(0)),
                "percentage must be between 0 and 100",
            );
        }
    }
}

fn header_names(ops: &Value, path: &str, errs: &mut Errors) {
    for op in ["request", "response"] {
        let Some(o) = ops.get(op) else { continue };
        for field in ["set", "add"] {
            for (k, _) in entries(o, field) {
                if !is_header_name(k) {
                    errs.invalid(
                        &format!("{path}.{op}.{field}"),
                        &json!(k),
                        "invalid header name",
                    );
                }
            }
        }
        for (i, k) in items(o, "remove").iter().enumerate() {
            if !k.as_str().is_some_and(is_header_name) {
                errs.invalid(
                    &format!("{path}.{op}.remove[{i}]"),
                    k,
                    "invalid header name",
                );
            }
        }
    }
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn destination(d: &Value, path: &str, errs: &mut Errors) {
    match str_at(d, "host") {
        None | Some("") => errs.required(&format!("{path}.host"), ""),
        Some(h) => host(h, &format!("{path}.host"), errs),
    }
    if let Some(subset) = str_at(d, "subset")
        && !subset.is_empty()
    {
        errs.invalid_all(
            &format!("{path}.subset"),
            &json!(subset),
            names::dns1123_label(subset),
        );
    }
    if let Some(port) = d.get("port") {
        port_number(port, "number", &format!("{path}.port"), errs);
    }
}

const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

pub(super) fn virtual_service(obj: &Value, errs: &mut Errors) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let hosts = items(spec, "hosts");
    if hosts.is_empty() {
        errs.required("spec.hosts", "virtual service must have at least one host");
    }
    for (i, h) in hosts.iter().enumerate() {
        host(
            h.as_str().unwrap_or_default(),
            &format!("spec.hosts[{i}]"),
            errs,
        );
    }
    for (i, g) in items(spec, "gateways").iter().enumerate() {
        let g = g.as_str().unwrap_or_default();
        let name = g.rsplit('/').next().unwrap_or(g);
        if g != "mesh" && (name.is_empty() || !names::dns1123_subdomain(name).is_empty()) {
            errs.invalid(
                &format!("spec.gateways[{i}]"),
                &json!(g),
                "must be 'mesh', a gateway name or namespace/name",
            );
        }
    }
    for (i, route) in items(spec, "http").iter().enumerate() {
        http_route(route, &format!("spec.http[{i}]"), errs);
    }
}

fn http_route(r: &Value, rp: &str, errs: &mut Errors) {
    let routes = items(r, "route");
    let has_route = !routes.is_empty();
    let redirect = r.get("redirect").is_some();
    let direct = r.get("directResponse").is_some();
    let delegate = r.get("delegate").is_some();
    if !has_route && !redirect && !direct && !delegate {
        errs.required(
            &format!("{rp}.route"),
            "an HTTP route must have a route, redirect, direct response or delegate",
        );
    }
    if has_route && redirect {
        errs.forbidden(
            &format!("{rp}.redirect"),
            "an HTTP route cannot have both route and redirect",
        );
    }
    if has_route && direct {
        errs.forbidden(
            &format!("{rp}.directResponse"),
            "an HTTP route cannot have both route and direct response",
        );
    }
    if redirect && r.get("rewrite").is_some() {
        errs.forbidden(
            &format!("{rp}.rewrite"),
            "an HTTP route cannot have both redirect and rewrite",
        );
    }
    for (j, m) in items(r, "match").iter().enumerate() {
        let mp = format!("{rp}.match[{j}]");
        for key in ["uri", "scheme", "method", "authority"] {
            if let Some(sm) = m.get(key) {
                string_match(sm, &format!("{mp}.{key}"), errs);
            }
        }
        for key in ["headers", "withoutHeaders", "queryParams"] {
            for (name, sm) in entries(m, key) {
                if key != "queryParams" && !is_header_name(name) {
                    errs.invalid(&format!("{mp}.{key}"), &json!(name), "invalid header name");
                }
                if sm.as_object().is_some_and(|o| !o.is_empty()) {
                    string_match(sm, &format!("{mp}.{key}.{name}"), errs);
                }
            }
        }
        port_number(m, "port", &mp, errs);
        if let Some(sl) = m.get("sourceLabels") {
            labels(sl, &format!("{mp}.sourceLabels"), errs);
        }
    }
    let mut total = 0i64;
    for (k, dest) in routes.iter().enumerate() {
        let dp = format!("{rp}.route[{k}]");
        match dest.get("destination") {
            None => errs.required(&format!("{dp}.destination"), ""),
            Some(d) => destination(d, &format!("{dp}.destination"), errs),
        }
        let weight = int_at(dest, "weight").unwrap_or(0);
        if !(0..=100).contains(&weight) {
            errs.invalid(
                &format!("{dp}.weight"),
                &json!(weight),
                "weight must be between 0 and 100",
            );
        }
        total += weight;
        if let Some(h) = dest.get("headers") {
            header_names(h, &format!("{dp}.headers"), errs);
        }
    }
    if routes.len() > 1 && total != 100 {
        errs.invalid(
            &format!("{rp}.route"),
            &json!(total),
            "total destination weight must be 100 when there is more than one destination",
        );
    }
    // `timeout: 0s` disables the timeout.
    duration(r, "timeout", 0, rp, errs);
    if let Some(retries) = r.get("retries") {
        let p = format!("{rp}.retries");
        if let Some(a) = int_at(retries, "attempts")
            && a < 0
        {
            errs.invalid(
                &format!("{p}.attempts"),
                &json!(a),
                "attempts cannot be negative",
            );
        }
        duration(retries, "perTryTimeout", 1, &p, errs);
        if let Some(on) = str_at(retries, "retryOn") {
            for cond in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                let is_status = cond.parse::<u16>().is_ok_and(|c| (100..600).contains(&c));
                if !is_status && !RETRY_ON.contains(&cond) {
                    errs.invalid(
                        &format!("{p}.retryOn"),
                        &json!(on),
                        &format!("{cond:?} is not a valid retry condition"),
                    );
                }
            }
        }
    }
    if let Some(fault) = r.get("fault") {
        let fp = format!("{rp}.fault");
        if fault.get("delay").is_none() && fault.get("abort").is_none() {
            errs.required(&fp, "fault must have a delay or an abort");
        }
        if let Some(delay) = fault.get("delay") {
            let dp = format!("{fp}.delay");
            if delay.get("fixedDelay").is_none() {
                errs.required(&format!("{dp}.fixedDelay"), "a delay needs fixedDelay");
            }
            duration(delay, "fixedDelay", 1, &dp, errs);
            percentage(delay, "percentage", &dp, errs);
            if let Some(p) = int_at(delay, "percent")
                && !(0..=100).contains(&p)
            {
                errs.invalid(
                    &format!("{dp}.percent"),
                    &json!(p),
                    "percentage must be between 0 and 100",
                );
            }
        }
        if let Some(abort) = fault.get("abort") {
            let ap = format!("{fp}.abort");
            let kinds = ["httpStatus", "grpcStatus", "http2Error"]
                .into_iter()
                .filter(|k| abort.get(*k).is_some())
                .count();
            if kinds == 0 {
                errs.required(
                    &format!("{ap}.httpStatus"),
                    "an abort needs httpStatus or grpcStatus",
                );
            }
            if let Some(s) = int_at(abort, "httpStatus")
                && !(200..=599).contains(&s)
            {
                errs.invalid(
                    &format!("{ap}.httpStatus"),
                    &json!(s),
                    "httpStatus must be in the range 200 - 599",
                );
            }
            percentage(abort, "percentage", &ap, errs);
        }
    }
    if let Some(cors) = r.get("corsPolicy") {
        let cp = format!("{rp}.corsPolicy");
        for (i, o) in items(cors, "allowOrigins").iter().enumerate() {
            string_match(o, &format!("{cp}.allowOrigins[{i}]"), errs);
        }
        for (i, m) in items(cors, "allowMethods").iter().enumerate() {
            if !m.as_str().is_some_and(|m| HTTP_METHODS.contains(&m)) {
                errs.not_supported(&format!("{cp}.allowMethods[{i}]"), m, HTTP_METHODS);
            }
        }
        for key in ["allowHeaders", "exposeHeaders"] {
            for (i, h) in items(cors, key).iter().enumerate() {
                if !h.as_str().is_some_and(|h| h == "*" || is_header_name(h)) {
                    errs.invalid(&format!("{cp}.{key}[{i}]"), h, "invalid header name");
                }
            }
        }
        duration(cors, "maxAge", 0, &cp, errs);
        one_of(
            cors,
            "unmatchedPreflights",
            &["UNSPECIFIED", "FORWARD", "IGNORE"],
            &cp,
            errs,
        );
    }
    if let Some(redirect) = r.get("redirect") {
        let p = format!("{rp}.redirect");
        if let Some(code) = int_at(redirect, "redirectCode")
            && !(300..=399).contains(&code)
        {
            errs.invalid(
                &format!("{p}.redirectCode"),
                &json!(code),
                "must be a 3xx status code",
            );
        }
        if redirect.get("port").is_some() && redirect.get("derivePort").is_some() {
            errs.forbidden(&format!("{p}.derivePort"), "cannot be used with port");
        }
        port_number(redirect, "port", &p, errs);
        one_of(
            redirect,
            "derivePort",
            &["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"],
            &p,
            errs,
        );
    }
    if let Some(direct) = r.get("directResponse")
        && let Some(s) = int_at(direct, "status")
        && !(200..=599).contains(&s)
    {
        errs.invalid(
            &format!("{rp}.directResponse.status"),
            &json!(s),
            "status must be in the range 200 - 599",
        );
    }
    if let Some(rewrite) = r.get("rewrite") {
        let p = format!("{rp}.rewrite");
        if rewrite.get("uri").is_some() && rewrite.get("uriRegexRewrite").is_some() {
            errs.forbidden(&format!("{p}.uriRegexRewrite"), "cannot be used with uri");
        }
        if let Some(rr) = rewrite.get("uriRegexRewrite")
            && let Some(m) = str_at(rr, "match")
        {
            regex(m, &format!("{p}.uriRegexRewrite.match"), errs);
        }
    }
    if let Some(m) = r.get("mirror") {
        destination(m, &format!("{rp}.mirror"), errs);
    }
    percentage(r, "mirrorPercentage", rp, errs);
    if let Some(h) = r.get("headers") {
        header_names(h, &format!("{rp}.headers"), errs);
    }
}

pub(super) fn destination_rule(obj: &Value, errs: &mut Errors) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    match str_at(spec, "host") {
        None | Some("") => errs.required("spec.host", ""),
        Some(h) => host(h, "spec.host", errs),
    }
    if let Some(tp) = spec.get("trafficPolicy") {
        traffic_policy(tp, "spec.trafficPolicy", errs);
    }
    let mut seen = BTreeSet::new();
    for (i, s) in items(spec, "subsets").iter().enumerate() {
        let sp = format!("spec.subsets[{i}]");
        let name = str_at(s, "name").unwrap_or_default();
        if name.is_empty() {
            errs.required(&format!("{sp}.name"), "");
        } else {
            errs.invalid_all(
                &format!("{sp}.name"),
                &json!(name),
                names::dns1123_label(name),
            );
            if !seen.insert(name) {
                errs.duplicate(&format!("{sp}.name"), &json!(name));
            }
        }
        if let Some(l) = s.get("labels") {
            labels(l, &format!("{sp}.labels"), errs);
        }
        if let Some(tp) = s.get("trafficPolicy") {
            traffic_policy(tp, &format!("{sp}.trafficPolicy"), errs);
        }
    }
    if let Some(ws) = spec
        .get("workloadSelector")
        .and_then(|w| w.get("matchLabels"))
    {
        labels(ws, "spec.workloadSelector.matchLabels", errs);
    }
}

fn non_negative(v: &Value, keys: &[&str], path: &str, errs: &mut Errors) {
    for key in keys {
        if let Some(n) = int_at(v, key)
            && n < 0
        {
            errs.invalid(
                &format!("{path}.{key}"),
                &json!(n),
                "must be greater than or equal to 0",
            );
        }
    }
}

fn percent_field(v: &Value, key: &str, path: &str, errs: &mut Errors) {
    if let Some(n) = int_at(v, key)
        && !(0..=100).contains(&n)
    {
        errs.invalid(
            &format!("{path}.{key}"),
            &json!(n),
            "must be between 0 and 100",
        );
    }
}

fn traffic_policy(tp: &Value, path: &str, errs: &mut Errors) {
    port_policy(tp, path, errs);
    for (i, pls) in items(tp, "portLevelSettings").iter().enumerate() {
        let pp = format!("{path}.portLevelSettings[{i}]");
        match pls.get("port") {
            None => errs.required(&format!("{pp}.port"), ""),
            Some(port) => {
                if port.get("number").is_none() {
                    errs.required(&format!("{pp}.port.number"), "");
                }
                port_number(port, "number", &format!("{pp}.port"), errs);
            }
        }
        port_policy(pls, &pp, errs);
    }
}

/// The parts shared by a traffic policy and a port-level one.
fn port_policy(tp: &Value, path: &str, errs: &mut Errors) {
    if let Some(lb) = tp.get("loadBalancer") {
        let lp = format!("{path}.loadBalancer");
        one_of(
            lb,
            "simple",
            &[
                "UNSPECIFIED",
                "RANDOM",
                "PASSTHROUGH",
                "ROUND_ROBIN",
                "LEAST_REQUEST",
                "LEAST_CONN",
            ],
            &lp,
            errs,
        );
        if lb.get("simple").is_some() && lb.get("consistentHash").is_some() {
            errs.forbidden(
                &format!("{lp}.consistentHash"),
                "only one of simple or consistentHash may be set",
            );
        }
        if let Some(ch) = lb.get("consistentHash") {
            let cp = format!("{lp}.consistentHash");
            let keys = [
                "httpHeaderName",
                "httpCookie",
                "useSourceIp",
                "httpQueryParameterName",
            ]
            .into_iter()
            .filter(|k| ch.get(*k).is_some())
            .count();
            if keys != 1 {
                errs.invalid(
                    &cp,
                    ch,
                    "must set exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
                );
            }
            if let Some(cookie) = ch.get("httpCookie") {
                if str_at(cookie, "name").unwrap_or_default().is_empty() {
                    errs.required(&format!("{cp}.httpCookie.name"), "");
                }
                duration(cookie, "ttl", 0, &format!("{cp}.httpCookie"), errs);
            }
        }
        duration(lb, "warmupDurationSecs", 0, &lp, errs);
    }
    if let Some(cp) = tp.get("connectionPool") {
        let pp = format!("{path}.connectionPool");
        if let Some(tcp) = cp.get("tcp") {
            let tp = format!("{pp}.tcp");
            non_negative(tcp, &["maxConnections"], &tp, errs);
            duration(tcp, "connectTimeout", 1, &tp, errs);
            duration(tcp, "idleTimeout", 0, &tp, errs);
            duration(tcp, "maxConnectionDuration", 1, &tp, errs);
            if let Some(ka) = tcp.get("tcpKeepalive") {
                let kp = format!("{tp}.tcpKeepalive");
                duration(ka, "time", 1, &kp, errs);
                duration(ka, "interval", 1, &kp, errs);
            }
        }
        if let Some(http) = cp.get("http") {
            let hp = format!("{pp}.http");
            non_negative(
                http,
                &[
                    "http1MaxPendingRequests",
                    "http2MaxRequests",
                    "maxRequestsPerConnection",
                    "maxRetries",
                    "maxConcurrentStreams",
                ],
                &hp,
                errs,
            );
            duration(http, "idleTimeout", 1, &hp, errs);
            one_of(
                http,
                "h2UpgradePolicy",
                &["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"],
                &hp,
                errs,
            );
        }
    }
    if let Some(od) = tp.get("outlierDetection") {
        let op = format!("{path}.outlierDetection");
        non_negative(
            od,
            &[
                "consecutiveErrors",
                "consecutiveGatewayErrors",
                "consecutive5xxErrors",
                "consecutiveLocalOriginFailures",
            ],
            &op,
            errs,
        );
        duration(od, "interval", 1, &op, errs);
        duration(od, "baseEjectionTime", 1, &op, errs);
        percent_field(od, "maxEjectionPercent", &op, errs);
        percent_field(od, "minHealthPercent", &op, errs);
    }
    if let Some(tls) = tp.get("tls") {
        let p = format!("{path}.tls");
        one_of(
            tls,
            "mode",
            &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"],
            &p,
            errs,
        );
        if str_at(tls, "mode") == Some("MUTUAL")
            && str_at(tls, "credentialName").unwrap_or_default().is_empty()
        {
            for key in ["clientCertificate", "privateKey"] {
                if str_at(tls, key).unwrap_or_default().is_empty() {
                    errs.required(
                        &format!("{p}.{key}"),
                        "required for MUTUAL mode without credentialName",
                    );
                }
            }
        }
    }
}

const GATEWAY_PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS",
];

pub(super) fn gateway(obj: &Value, errs: &mut Errors) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let servers = items(spec, "servers");
    if servers.is_empty() {
        errs.required("spec.servers", "gateway must have at least one server");
    }
    let mut port_names = BTreeSet::new();
    for (i, s) in servers.iter().enumerate() {
        let sp = format!("spec.servers[{i}]");
        let protocol = match s.get("port") {
            None => {
                errs.required(&format!("{sp}.port"), "");
                String::new()
            }
            Some(port) => {
                let pp = format!("{sp}.port");
                if port.get("number").is_none() {
                    errs.required(&format!("{pp}.number"), "");
                }
                port_number(port, "number", &pp, errs);
                port_number(port, "targetPort", &pp, errs);
                let protocol = str_at(port, "protocol")
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                if !GATEWAY_PROTOCOLS.contains(&protocol.as_str()) {
                    errs.not_supported(
                        &format!("{pp}.protocol"),
                        port.get("protocol").unwrap_or(&json!("")),
                        GATEWAY_PROTOCOLS,
                    );
                }
                if let Some(name) = str_at(port, "name")
                    && !name.is_empty()
                    && !port_names.insert(name)
                {
                    errs.duplicate(&format!("{pp}.name"), &json!(name));
                }
                protocol
            }
        };
        let hosts = items(s, "hosts");
        if hosts.is_empty() {
            errs.required(&format!("{sp}.hosts"), "server must have at least one host");
        }
        for (j, h) in hosts.iter().enumerate() {
            let h = h.as_str().unwrap_or_default();
            // `namespace/host`, `./host` and `*/host` are allowed.
            let bare = h.split_once('/').map_or(h, |(_, host)| host);
            host(bare, &format!("{sp}.hosts[{j}]"), errs);
        }
        match s.get("tls") {
            None if protocol == "HTTPS" || protocol == "TLS" => errs.required(
                &format!("{sp}.tls"),
                "server config must contain TLS settings for HTTPS/TLS servers",
            ),
            None => {}
            Some(tls) => {
                let tp = format!("{sp}.tls");
                one_of(
                    tls,
                    "mode",
                    &[
                        "PASSTHROUGH",
                        "SIMPLE",
                        "MUTUAL",
                        "AUTO_PASSTHROUGH",
                        "ISTIO_MUTUAL",
                        "OPTIONAL_MUTUAL",
                    ],
                    &tp,
                    errs,
                );
                let mode = str_at(tls, "mode").unwrap_or("PASSTHROUGH");
                let has_credential = !str_at(tls, "credentialName").unwrap_or_default().is_empty()
                    || !items(tls, "credentialNames").is_empty();
                if matches!(mode, "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL") && !has_credential {
                    for key in ["serverCertificate", "privateKey"] {
                        if str_at(tls, key).unwrap_or_default().is_empty() {
                            errs.required(
                                &format!("{tp}.{key}"),
                                &format!("required for {mode} mode without credentialName"),
                            );
                        }
                    }
                }
            }
        }
    }
    if let Some(sel) = spec.get("selector") {
        labels(sel, "spec.selector", errs);
    }
}
