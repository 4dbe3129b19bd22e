//! Kubernetes REST over the store: path resolution and the verbs.
//!
//! Semantics implemented (and where aos differs from Kubernetes):
//! - create: `generateName`; uid (v4), creationTimestamp (seconds), generation 1;
//!   status is reset on create for kinds with a status subresource (Pods start
//!   `Pending`, Namespaces `Active`), except Nodes, which keep it as in Kubernetes.
//! - update (PUT) and patch: `metadata.resourceVersion` is a precondition (409);
//!   without it the write is unconditional. Server-owned metadata is kept; for
//!   kinds with a status subresource, status comes from the stored object; a
//!   change of `spec` bumps `generation`. Writes that change nothing are not
//!   written (the resourceVersion stays).
//! - `/status`: only `status` is taken from the request. `/scale` (Deployments,
//!   ReplicaSets): an `autoscaling/v1` `Scale`. `namespaces/{n}/finalize`: only
//!   `spec.finalizers` is taken.
//! - delete: preconditions; finalizers and graceful Pod deletion keep the object
//!   with `deletionTimestamp` until the finalizers are gone (and, for a bound
//!   Pod, until its node agent deletes it with grace 0). `Orphan` removes the
//!   owner's ownerReferences from its dependents before the owner goes;
//!   `Foreground` adds the `foregroundDeletion` finalizer for the garbage
//!   collector; `Background` (default) deletes at once and leaves dependents to
//!   the garbage collector. A Namespace delete marks it `Terminating`; it goes
//!   when its `spec.finalizers` (emptied through `/finalize` by the namespace
//!   controller) and `metadata.finalizers` are empty.
//! - list: label and field selectors, `limit`/`continue` (a token of the last
//!   key and the list's revision; later pages read the current state and report
//!   the first page's revision, so a watch from it may replay changes).
//!   `resourceVersion` and `resourceVersionMatch` of a list are accepted and the
//!   latest state is served (always at least as new as asked).
//! - `fieldValidation=Strict` is accepted; unknown fields are reported as
//!   warnings (aos never fails an object for a field it does not know).

use std::sync::Arc;

use aos_store::{KeyValue, Revision, StoreError};
use aos_types::ResourceType;
use aos_types::selector::{FieldSelector, LabelSelector};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, store_error};
use crate::objects::{self, decode_kv, encode, meta_mut, meta_str};
use crate::patch::{self, PatchError};
use crate::query::Query;
use crate::router::{AppState, Labels};
use crate::table::{self, Include};

/// Largest request body accepted.
pub(crate) const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// How often a write that lost a race re-reads and retries before answering 409.
const UPDATE_ATTEMPTS: usize = 8;

/// The Kubernetes verb of a request, for authorization messages and metrics.
pub(crate) fn verb_of(method: &Method, query: &str) -> &'static str {
    match *method {
        Method::GET
            if query
                .split('&')
                .any(|p| p == "watch=true" || p == "watch=1") =>
        {
            "watch"
        }
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    }
}

/// A resolved resource path.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) rt: &'static ResourceType,
    /// The version in the path (one of `rt.versions`).
    pub(crate) version: String,
    pub(crate) ns: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) sub: Option<String>,
}

impl Target {
    pub(crate) fn resource(&self) -> String {
        objects::qualified_resource(self.rt)
    }
    fn key(&self, name: &str) -> String {
        objects::key(self.rt, self.ns.as_deref(), name)
    }
    fn api_version(&self) -> String {
        objects::api_version(self.rt, &self.version)
    }
    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(&self.resource(), name, self.rt.group)
    }
    fn store_err(&self, e: StoreError, name: &str) -> ApiError {
        store_error(e, &self.resource(), name, self.rt.group)
    }
    fn is(&self, group: &str, plural: &str) -> bool {
        self.rt.group == group && self.rt.plural == plural
    }
    /// Whether the type serves subresource `sub`.
    fn has_subresource(&self, sub: &str) -> bool {
        match sub {
            "status" => self.rt.status_subresource,
            "scale" => self.rt.scale_subresource,
            "finalize" => self.is_namespace(),
            "log" => self.is_pod(),
            _ => false,
        }
    }
    fn is_namespace(&self) -> bool {
        self.is("", "namespaces")
    }
    fn is_pod(&self) -> bool {
        self.is("", "pods")
    }
    /// Set the served apiVersion on an object read from the store.
    fn present(&self, obj: &mut Value) {
        if self.version != self.rt.version {
            obj["apiVersion"] = json!(self.api_version());
        }
    }
}

/// Resolve `/api/v1/...` or `/apis/{g}/{v}/...` (after the group-version).
fn resolve(segs: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (ns, plural, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if aos_types::resource::by_plural(group, version, plural)
                .is_some_and(|rt| rt.namespaced) =>
        {
            (Some(*ns), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return None,
    };
    let rt = aos_types::resource::by_plural(group, version, plural)?;
    if !rt.versions.contains(&version) {
        return None;
    }
    let (name, sub) = match tail {
        [] => (None, None),
        [name] => (Some(*name), None),
        [name, sub] => (Some(*name), Some(*sub)),
        _ => return None,
    };
    // A namespaced object is addressed within its namespace.
    if rt.namespaced && ns.is_none() && name.is_some() {
        return None;
    }
    Some(Target {
        rt,
        version: version.to_string(),
        ns: ns.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    })
}

/// Decode one path segment (`%XX`).
fn decode_segment(s: &str) -> String {
    crate::query::decode(&s.replace('+', "%2B"))
}

/// The fallback route: discovery and every resource path.
pub(crate) async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let decoded: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    if !matches!(segs.first(), Some(&"api") | Some(&"apis")) {
        return ApiError::no_route(&path).into_response();
    }
    if req.method() == Method::GET
        && let Some(resp) = crate::discovery::serve(&state, &req, &segs)
    {
        return resp;
    }
    if let [
        "apis",
        crate::metrics_api::GROUP,
        crate::metrics_api::VERSION,
        rest @ ..,
    ] = segs.as_slice()
        && !rest.is_empty()
    {
        return match crate::metrics_api::serve(state, req, rest).await {
            Some(resp) => resp,
            None => ApiError::no_route(&path).into_response(),
        };
    }
    let Some(target) = resolve(&segs) else {
        return ApiError::no_route(&path).into_response();
    };
    let verb = verb_of(req.method(), req.uri().query().unwrap_or(""));
    let resource = target.rt.plural;
    let mut resp = match handle(state, req, target).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let verb = match (verb, resp.extensions().get::<Labels>()) {
        (_, Some(l)) => l.verb,
        (v, None) => v,
    };
    resp.extensions_mut().insert(Labels { verb, resource });
    resp
}

fn content_type(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// Read an object body: JSON, or protobuf for the kinds kubectl's generators send so.
async fn read_object_body(req: Request) -> ApiResult<Bytes> {
    let ctype = content_type(&req);
    if ctype == PROTOBUF {
        let body = read_body(req).await?;
        let v = crate::protobuf::decode(&body).map_err(|e| match e {
            crate::protobuf::ProtobufError::Unsupported(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                e.to_string(),
            ),
            crate::protobuf::ProtobufError::Malformed(_) => ApiError::bad_request(e.to_string()),
        })?;
        return Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()));
    }
    require_json(&ctype)?;
    read_body(req).await
}

async fn read_body(req: Request) -> ApiResult<Bytes> {
    axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            use std::error::Error as _;
            let too_large = e
                .source()
                .is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            if too_large {
                ApiError::too_large()
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })
}

fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn parse_object(body: &[u8]) -> ApiResult<Value> {
    let v = parse_json(body)?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    if v.get("metadata").is_some_and(|m| !m.is_object()) {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(v)
}

/// Whether a body content type is JSON (absent counts as JSON).
fn require_json(ctype: &str) -> ApiResult<()> {
    match ctype {
        "" | "application/json" | "*/*" => Ok(()),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// One `Warning` header value: `299 - "text"`.
fn warning_header(text: &str) -> Option<HeaderValue> {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect::<String>()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    HeaderValue::from_str(&format!("299 - \"{clean}\"")).ok()
}

/// What the client asked for in `Accept`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wants {
    pub(crate) table: Option<&'static str>,
    pub(crate) include: Include,
}

fn json_bytes_response(code: StatusCode, body: Vec<u8>, content_type: &str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

pub(crate) fn table_content_type(v: &str) -> String {
    format!("application/json;as=Table;v={v};g=meta.k8s.io")
}

/// Answer one object (or a Table of it), with warnings.
fn object_response(
    t: &Target,
    code: StatusCode,
    mut obj: Value,
    wants: Wants,
    warnings: &[String],
) -> Response {
    t.present(&mut obj);
    let mut resp = match wants.table {
        Some(mv) => {
            let rv = meta_str(&obj, "resourceVersion").unwrap_or("").to_string();
            let tbl = table::table(
                t.rt,
                std::slice::from_ref(&obj),
                wants.include,
                mv,
                &rv,
                None,
                objects::now_unix(),
            );
            json_bytes_response(
                code,
                serde_json::to_vec(&tbl).unwrap_or_default(),
                &table_content_type(mv),
            )
        }
        None => json_bytes_response(
            code,
            serde_json::to_vec(&obj).unwrap_or_default(),
            "application/json",
        ),
    };
    for w in warnings {
        if let Some(h) = warning_header(w) {
            resp.headers_mut().append(header::WARNING, h);
        }
    }
    resp
}

fn labeled(mut r: Response, verb: &'static str) -> Response {
    r.extensions_mut().insert(Labels { verb, resource: "" });
    r
}

async fn handle(state: Arc<AppState>, req: Request, t: Target) -> ApiResult<Response> {
    let q = Query::parse(req.uri().query().unwrap_or(""))?;
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let wants = Wants {
        table: table::wants_table(&accept),
        include: Include::parse(q.include_object.as_deref()),
    };
    let method = req.method().clone();
    let sub = t.sub.clone();
    if sub.as_deref().is_some_and(|s| !t.has_subresource(s)) {
        return Err(ApiError::no_route(""));
    }
    match (&method, t.name.clone(), sub.as_deref()) {
        (&Method::GET, None, None) if q.watch => Ok(labeled(
            crate::watch::serve(state, t, q, wants).await?,
            "watch",
        )),
        (&Method::GET, None, None) => Ok(labeled(list(&state, &t, &q, wants).await?, "list")),
        (&Method::GET, Some(name), None | Some("status")) => {
            if sub.is_some() && !t.rt.status_subresource {
                return Err(ApiError::no_route(""));
            }
            let obj = get(&state, &t, &name).await?;
            Ok(object_response(&t, StatusCode::OK, obj, wants, &[]))
        }
        (&Method::GET, Some(name), Some("scale")) if t.rt.scale_subresource => {
            let obj = get(&state, &t, &name).await?;
            Ok(scale_response(StatusCode::OK, scale_of(&obj), &[]))
        }
        (&Method::GET, Some(name), Some("log")) if t.is_pod() => {
            let pod = get(&state, &t, &name).await?;
            let ns = t.ns.clone().unwrap_or_default();
            crate::podlogs::serve(&state, &ns, &pod, req.uri().query().unwrap_or("")).await
        }
        (&Method::POST, None, None) => {
            let body = read_object_body(req).await?;
            let (obj, warnings) = create(&state, &t, &body, q.dry_run).await?;
            Ok(object_response(
                &t,
                StatusCode::CREATED,
                obj,
                wants,
                &warnings,
            ))
        }
        (&Method::PUT, Some(name), None | Some("status")) => {
            if sub.is_some() && !t.rt.status_subresource {
                return Err(ApiError::no_route(""));
            }
            let body = read_object_body(req).await?;
            let mode = if sub.is_some() {
                Mode::Status
            } else {
                Mode::Main
            };
            let (obj, warnings) = replace(&state, &t, &name, &body, mode, q.dry_run).await?;
            Ok(object_response(&t, StatusCode::OK, obj, wants, &warnings))
        }
        (&Method::PUT, Some(name), Some("scale")) if t.rt.scale_subresource => {
            let body = read_object_body(req).await?;
            let (scale, warnings) = replace_scale(&state, &t, &name, &body, q.dry_run).await?;
            Ok(scale_response(StatusCode::OK, scale, &warnings))
        }
        (&Method::PUT, Some(name), Some("finalize")) if t.is_namespace() => {
            let body = read_object_body(req).await?;
            let obj = finalize(&state, &t, &name, &body, q.dry_run).await?;
            Ok(object_response(&t, StatusCode::OK, obj, wants, &[]))
        }
        (&Method::PATCH, Some(name), None | Some("status") | Some("scale")) => {
            let kind = match content_type(&req).as_str() {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/json-patch+json" => PatchKind::Json,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                    return Err(ApiError::unsupported_media_type(
                        "application/apply-patch+yaml (server-side apply is not supported; use client-side apply)",
                    ));
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            let body = read_body(req).await?;
            let doc = parse_json(&body)?;
            match sub.as_deref() {
                Some("scale") if t.rt.scale_subresource => {
                    let (scale, warnings) =
                        patch_scale(&state, &t, &name, kind, &doc, q.dry_run).await?;
                    Ok(scale_response(StatusCode::OK, scale, &warnings))
                }
                Some("scale") => Err(ApiError::no_route("")),
                Some(_) if !t.rt.status_subresource => Err(ApiError::no_route("")),
                s => {
                    let mode = if s.is_some() {
                        Mode::Status
                    } else {
                        Mode::Main
                    };
                    let (obj, warnings) =
                        patch_object(&state, &t, &name, kind, &doc, mode, q.dry_run).await?;
                    Ok(object_response(&t, StatusCode::OK, obj, wants, &warnings))
                }
            }
        }
        (&Method::DELETE, Some(name), None) => {
            let body = read_body(req).await?;
            let opts = DeleteOpts::parse(&body, &q)?;
            let obj = delete(&state, &t, &name, &opts, q.dry_run).await?;
            Ok(object_response(&t, StatusCode::OK, obj, wants, &[]))
        }
        (&Method::DELETE, None, None) => {
            let body = read_body(req).await?;
            let opts = DeleteOpts::parse(&body, &q)?;
            Ok(labeled(
                delete_collection(&state, &t, &q, &opts).await?,
                "deletecollection",
            ))
        }
        (m, name, s) => Err(ApiError::method_not_allowed(format!(
            "{m} is not supported on {}{}{}",
            t.resource(),
            name.map(|_| "/{name}").unwrap_or(""),
            s.map(|s| format!("/{s}")).unwrap_or_default()
        ))),
    }
}

async fn get(state: &AppState, t: &Target, name: &str) -> ApiResult<Value> {
    let kv = state
        .store
        .get(&t.key(name))
        .await
        .map_err(|e| t.store_err(e, name))?;
    let kv = kv.ok_or_else(|| t.not_found(name))?;
    decode_kv(&kv)
}

/// Check `apiVersion`/`kind` of a body against the path; set them to the storage version.
fn check_type(t: &Target, obj: &mut Value) -> ApiResult<()> {
    let want_kind = t.rt.kind;
    if let Some(kind) = obj
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        && kind != want_kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({want_kind})"
        )));
    }
    if let Some(av) = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let ok =
            t.rt.versions
                .iter()
                .any(|v| objects::api_version(t.rt, v) == av);
        if !ok {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                t.api_version()
            )));
        }
    }
    obj["apiVersion"] = json!(objects::api_version(t.rt, t.rt.version));
    obj["kind"] = json!(want_kind);
    Ok(())
}

/// The namespace in the body must match the path's (and is set from it).
fn check_namespace(t: &Target, obj: &mut Value) -> ApiResult<()> {
    let body_ns = meta_str(obj, "namespace")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if t.rt.namespaced {
        let Some(ns) = t.ns.as_deref() else {
            return Err(ApiError::method_not_allowed(format!(
                "{} must be written within a namespace: use .../namespaces/{{namespace}}/{}",
                t.resource(),
                t.rt.plural
            )));
        };
        if let Some(b) = body_ns
            && b != ns
        {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({b}) does not match the namespace sent on the request ({ns})"
            )));
        }
        meta_mut(obj).insert("namespace".into(), json!(ns));
    } else {
        meta_mut(obj).remove("namespace");
    }
    Ok(())
}

/// A namespaced object may only be created in an existing, active namespace.
async fn check_namespace_active(state: &AppState, t: &Target, name: &str) -> ApiResult<()> {
    let Some(ns) = t.ns.as_deref().filter(|_| t.rt.namespaced) else {
        return Ok(());
    };
    let key = format!("/registry/core/namespaces/{ns}");
    let kv = state
        .store
        .get(&key)
        .await
        .map_err(|e| t.store_err(e, name))?;
    let Some(kv) = kv else {
        return Err(ApiError::not_found("namespaces", ns, ""));
    };
    let nsobj = decode_kv(&kv)?;
    if objects::is_deleting(&nsobj)
        || nsobj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
    {
        return Err(ApiError::forbidden(format!(
            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            t.resource()
        )));
    }
    Ok(())
}

fn admit(t: &Target, obj: &mut Value, old: Option<&Value>) -> ApiResult<Vec<String>> {
    let name = objects::name_of(obj).to_string();
    match aos_types::admit(t.rt, obj, old) {
        Ok(warnings) => Ok(warnings
            .into_iter()
            .map(|w| format!("{}: {}", w.path, w.message))
            .collect()),
        Err(errors) => Err(ApiError::invalid(
            t.rt.kind,
            t.rt.group,
            &name,
            &errors,
            Some(obj),
        )),
    }
}

async fn create(
    state: &AppState,
    t: &Target,
    body: &[u8],
    dry_run: bool,
) -> ApiResult<(Value, Vec<String>)> {
    let mut obj = parse_object(body)?;
    check_type(t, &mut obj)?;
    check_namespace(t, &mut obj)?;
    let generate = meta_str(&obj, "generateName")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let given = meta_str(&obj, "name")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if given.is_none() && generate.is_none() {
        return Err(ApiError::invalid_field(
            t.rt.kind,
            t.rt.group,
            "",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    }
    let probe_name = given
        .clone()
        .unwrap_or_else(|| generate.clone().unwrap_or_default());
    check_namespace_active(state, t, &probe_name).await?;
    {
        let now = objects::timestamp(objects::now_unix());
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now));
        m.insert("generation".into(), json!(1));
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ] {
            m.remove(f);
        }
    }
    if t.rt.status_subresource
        && !t.is("", "nodes")
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    if t.is_pod() {
        obj["status"] = json!({"phase": "Pending"});
    }
    if t.is_namespace() {
        obj["status"] = json!({"phase": "Active"});
        if obj.pointer("/spec/finalizers").is_none() {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
    }
    // With generateName, a clash draws a new suffix (as Kubernetes retries).
    let attempts = if given.is_none() { 4 } else { 1 };
    for attempt in 0..attempts {
        let mut candidate = obj.clone();
        let name = match (&given, &generate) {
            (Some(n), _) => n.clone(),
            (None, Some(g)) => format!("{g}{}", objects::random_suffix()),
            (None, None) => unreachable!("checked above"),
        };
        meta_mut(&mut candidate).insert("name".into(), json!(name));
        let warnings = admit(t, &mut candidate, None)?;
        if dry_run {
            return Ok((candidate, warnings));
        }
        match state.store.create(&t.key(&name), encode(&candidate)).await {
            Ok(kv) => {
                objects::set_rv(&mut candidate, kv.mod_revision);
                return Ok((candidate, warnings));
            }
            Err(StoreError::AlreadyExists(_)) if given.is_none() && attempt + 1 < attempts => {
                continue;
            }
            Err(e) => return Err(t.store_err(e, &name)),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Which part of the object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The object (status comes from the stored object for kinds with a status subresource).
    Main,
    /// Only `status`.
    Status,
}

/// Compute the object to store from the stored `old` and the client's `new`.
fn prepare_update(
    t: &Target,
    name: &str,
    old: &Value,
    mut new: Value,
    mode: Mode,
) -> ApiResult<(Value, Vec<String>)> {
    if !new.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    if new.get("metadata").is_some_and(|m| !m.is_object()) {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    check_type(t, &mut new)?;
    match meta_str(&new, "name").filter(|s| !s.is_empty()) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
        None => {
            meta_mut(&mut new).insert("name".into(), json!(name));
        }
    }
    check_namespace(t, &mut new)?;
    let old_uid = meta_str(old, "uid").unwrap_or_default();
    if let Some(uid) = meta_str(&new, "uid").filter(|u| !u.is_empty())
        && uid != old_uid
    {
        return Err(ApiError::conflict_message(
            &t.resource(),
            name,
            t.rt.group,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {old_uid}"
            ),
        ));
    }
    let mut result = match mode {
        Mode::Status => {
            let mut r = old.clone();
            match new.get("status") {
                Some(s) => r["status"] = s.clone(),
                None => {
                    if let Some(o) = r.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            r
        }
        Mode::Main => {
            let m = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old.get("metadata").and_then(|om| om.get(f)) {
                    Some(v) => {
                        m.insert(f.into(), v.clone());
                    }
                    None => {
                        m.remove(f);
                    }
                }
            }
            // A deleted object cannot gain finalizers.
            if t.rt.status_subresource {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            if t.is_namespace() {
                match old.pointer("/spec/finalizers") {
                    Some(f) => {
                        if !new.get("spec").is_some_and(Value::is_object) {
                            new["spec"] = json!({});
                        }
                        new["spec"]["finalizers"] = f.clone();
                    }
                    None => {
                        if let Some(s) = new.get_mut("spec").and_then(Value::as_object_mut) {
                            s.remove("finalizers");
                        }
                    }
                }
            }
            new
        }
    };
    let warnings = admit(t, &mut result, Some(old))?;
    if mode == Mode::Main {
        let old_gen = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = if result.get("spec") != old.get("spec") {
            old_gen + 1
        } else {
            old_gen
        };
        meta_mut(&mut result).insert("generation".into(), json!(generation));
    }
    // The resourceVersion is the store's; it never goes into the stored form.
    meta_mut(&mut result).remove("resourceVersion");
    Ok((result, warnings))
}

/// Whether an object being deleted is done (nothing holds it any more).
fn ready_to_remove(t: &Target, obj: &Value) -> bool {
    if !objects::is_deleting(obj) || !objects::finalizers(obj).is_empty() {
        return false;
    }
    if t.is_namespace() {
        return obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    }
    if t.is_pod() && pod_is_bound(obj) {
        return obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0;
    }
    true
}

fn pod_is_bound(obj: &Value) -> bool {
    obj.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
}

fn strip_rv(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

/// Write `new` over `old` (read at `old_kv.mod_revision`). Removes an object whose
/// deletion is complete; skips writes that change nothing.
async fn commit(
    state: &AppState,
    t: &Target,
    key: &str,
    old_kv: &KeyValue,
    old: &Value,
    mut new: Value,
    dry_run: bool,
) -> Result<Value, StoreError> {
    if strip_rv(old) == new {
        return Ok(old.clone());
    }
    if dry_run {
        objects::set_rv(&mut new, old_kv.mod_revision);
        return Ok(new);
    }
    if ready_to_remove(t, &new) {
        let kv = state.store.delete(key, Some(old_kv.mod_revision)).await?;
        objects::set_rv(&mut new, kv.mod_revision);
        return Ok(new);
    }
    let kv = state
        .store
        .update(key, encode(&new), Some(old_kv.mod_revision))
        .await?;
    objects::set_rv(&mut new, kv.mod_revision);
    Ok(new)
}

/// Read-modify-write with retries on lost races; `precondition` (a client's
/// resourceVersion) turns a race into 409 at once.
async fn update_loop<F>(
    state: &AppState,
    t: &Target,
    name: &str,
    precondition: Option<Revision>,
    dry_run: bool,
    mut f: F,
) -> ApiResult<(Value, Vec<String>)>
where
    F: FnMut(&Value) -> ApiResult<(Value, Vec<String>)>,
{
    let key = t.key(name);
    for _ in 0..UPDATE_ATTEMPTS {
        let kv = state
            .store
            .get(&key)
            .await
            .map_err(|e| t.store_err(e, name))?
            .ok_or_else(|| t.not_found(name))?;
        if precondition.is_some_and(|p| p != kv.mod_revision) {
            return Err(ApiError::conflict(&t.resource(), name, t.rt.group));
        }
        let old = decode_kv(&kv)?;
        let (new, warnings) = f(&old)?;
        match commit(state, t, &key, &kv, &old, new, dry_run).await {
            Ok(v) => return Ok((v, warnings)),
            Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
            Err(StoreError::NotFound(_)) => return Err(t.not_found(name)),
            Err(e) => return Err(t.store_err(e, name)),
        }
    }
    Err(ApiError::conflict(&t.resource(), name, t.rt.group))
}

fn body_rv(obj: &Value) -> ApiResult<Option<Revision>> {
    meta_str(obj, "resourceVersion")
        .filter(|s| !s.is_empty())
        .map(objects::parse_rv)
        .transpose()
}

async fn replace(
    state: &AppState,
    t: &Target,
    name: &str,
    body: &[u8],
    mode: Mode,
    dry_run: bool,
) -> ApiResult<(Value, Vec<String>)> {
    let new = parse_object(body)?;
    if let Some(n) = meta_str(&new, "name").filter(|n| !n.is_empty() && *n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let precondition = body_rv(&new)?;
    update_loop(state, t, name, precondition, dry_run, |old| {
        prepare_update(t, name, old, new.clone(), mode)
    })
    .await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Strategic,
    Json,
}

fn apply_patch(kind: PatchKind, target: &mut Value, doc: &Value) -> ApiResult<()> {
    let r = match kind {
        PatchKind::Merge => {
            if !doc.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            patch::merge(target, doc);
            Ok(())
        }
        PatchKind::Strategic => patch::strategic(target, doc),
        PatchKind::Json => patch::json_patch(target, doc),
    };
    r.map_err(|e| match e {
        PatchError::Malformed(m) => ApiError::bad_request(m),
        PatchError::Failed(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", m),
    })
}

/// A resourceVersion a patch wrote into the object is a precondition.
fn patched_precondition(t: &Target, name: &str, old: &Value, patched: &Value) -> ApiResult<()> {
    let (o, p) = (
        meta_str(old, "resourceVersion"),
        meta_str(patched, "resourceVersion"),
    );
    if p.is_some_and(|p| !p.is_empty()) && o != p {
        return Err(ApiError::conflict(&t.resource(), name, t.rt.group));
    }
    Ok(())
}

async fn patch_object(
    state: &AppState,
    t: &Target,
    name: &str,
    kind: PatchKind,
    doc: &Value,
    mode: Mode,
    dry_run: bool,
) -> ApiResult<(Value, Vec<String>)> {
    update_loop(state, t, name, None, dry_run, |old| {
        let mut patched = old.clone();
        apply_patch(kind, &mut patched, doc)?;
        patched_precondition(t, name, old, &patched)?;
        prepare_update(t, name, old, patched, mode)
    })
    .await
}

/// `spec.selector` of a Deployment or ReplicaSet in its string form.
fn selector_string(obj: &Value) -> String {
    let Some(sel) = obj.pointer("/spec/selector") else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

/// The `autoscaling/v1` `Scale` of an object.
fn scale_of(obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut metadata = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(f) {
            metadata[f] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(obj),
        },
    })
}

fn scale_response(code: StatusCode, scale: Value, warnings: &[String]) -> Response {
    let mut resp = json_bytes_response(
        code,
        serde_json::to_vec(&scale).unwrap_or_default(),
        "application/json",
    );
    for w in warnings {
        if let Some(h) = warning_header(w) {
            resp.headers_mut().append(header::WARNING, h);
        }
    }
    resp
}

/// New object with `spec.replicas` from a Scale.
fn apply_scale(
    t: &Target,
    name: &str,
    old: &Value,
    scale: &Value,
) -> ApiResult<(Value, Vec<String>)> {
    let replicas = scale.pointer("/spec/replicas");
    let n = match replicas {
        Some(Value::Number(n))
            if n.as_i64()
                .is_some_and(|r| (0..=i64::from(i32::MAX)).contains(&r)) =>
        {
            n.as_i64().unwrap_or(0)
        }
        Some(other) => {
            let shown = other.to_string();
            return Err(ApiError::invalid_field(
                "Scale",
                "autoscaling",
                name,
                "spec.replicas",
                &format!("Invalid value: {shown}: must be greater than or equal to 0"),
            ));
        }
        None => old
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1),
    };
    if let Some(sn) = meta_str(scale, "name").filter(|s| !s.is_empty())
        && sn != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({sn}) does not match the name on the URL ({name})"
        )));
    }
    let mut new = old.clone();
    if !new.get("spec").is_some_and(Value::is_object) {
        new["spec"] = json!({});
    }
    new["spec"]["replicas"] = json!(n);
    prepare_update(t, name, old, new, Mode::Main)
}

async fn replace_scale(
    state: &AppState,
    t: &Target,
    name: &str,
    body: &[u8],
    dry_run: bool,
) -> ApiResult<(Value, Vec<String>)> {
    let scale = parse_object(body)?;
    let precondition = body_rv(&scale)?;
    let (obj, w) = update_loop(state, t, name, precondition, dry_run, |old| {
        apply_scale(t, name, old, &scale)
    })
    .await?;
    Ok((scale_of(&obj), w))
}

async fn patch_scale(
    state: &AppState,
    t: &Target,
    name: &str,
    kind: PatchKind,
    doc: &Value,
    dry_run: bool,
) -> ApiResult<(Value, Vec<String>)> {
    let (obj, w) = update_loop(state, t, name, None, dry_run, |old| {
        let current = scale_of(old);
        let mut patched = current.clone();
        apply_patch(kind, &mut patched, doc)?;
        patched_precondition(t, name, &current, &patched)?;
        apply_scale(t, name, old, &patched)
    })
    .await?;
    Ok((scale_of(&obj), w))
}

async fn finalize(
    state: &AppState,
    t: &Target,
    name: &str,
    body: &[u8],
    dry_run: bool,
) -> ApiResult<Value> {
    let new = parse_object(body)?;
    let precondition = body_rv(&new)?;
    if let Some(n) = meta_str(&new, "name").filter(|n| !n.is_empty() && *n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let finalizers = new
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or_else(|| json!([]));
    if !finalizers.is_array() {
        return Err(ApiError::invalid_field(
            "Namespace",
            "",
            name,
            "spec.finalizers",
            "must be a list of strings",
        ));
    }
    let (obj, _) = update_loop(state, t, name, precondition, dry_run, |old| {
        let mut r = strip_rv(old);
        if !r.get("spec").is_some_and(Value::is_object) {
            r["spec"] = json!({});
        }
        r["spec"]["finalizers"] = finalizers.clone();
        Ok((r, Vec::new()))
    })
    .await?;
    Ok(obj)
}

/// `DeleteOptions` from the body and the query.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOpts {
    grace: Option<i64>,
    policy: Policy,
    uid: Option<String>,
    rv: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Policy {
    #[default]
    Background,
    Foreground,
    Orphan,
}

impl DeleteOpts {
    fn parse(body: &[u8], q: &Query) -> ApiResult<Self> {
        let mut o = DeleteOpts {
            grace: q.grace_period_seconds,
            ..Default::default()
        };
        let mut policy = q.propagation_policy.clone();
        if q.orphan_dependents == Some(true) && policy.is_none() {
            policy = Some("Orphan".into());
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v = parse_json(body)?;
            if let Some(k) = v.get("kind").and_then(Value::as_str)
                && k != "DeleteOptions"
            {
                return Err(ApiError::bad_request(format!(
                    "the body of a delete must be DeleteOptions, not {k}"
                )));
            }
            if let Some(g) = v.get("gracePeriodSeconds") {
                o.grace = Some(g.as_i64().ok_or_else(|| {
                    ApiError::bad_request("gracePeriodSeconds must be an integer")
                })?);
            }
            if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
                policy = Some(p.to_string());
            } else if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
                policy = Some("Orphan".into());
            }
            o.uid = v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string);
            o.rv = v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        o.policy = match policy.as_deref() {
            None | Some("Background") => Policy::Background,
            Some("Foreground") => Policy::Foreground,
            Some("Orphan") => Policy::Orphan,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy {other:?} is not supported: use Background, Foreground or Orphan"
                )));
            }
        };
        if o.grace.is_some_and(|g| g < 0) {
            o.grace = Some(0);
        }
        Ok(o)
    }
}

fn add_finalizer(obj: &mut Value, f: &str) {
    let m = meta_mut(obj);
    let list = m.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut()
        && !a.iter().any(|x| x == f)
    {
        a.push(json!(f));
    }
}

async fn delete(
    state: &AppState,
    t: &Target,
    name: &str,
    opts: &DeleteOpts,
    dry_run: bool,
) -> ApiResult<Value> {
    let key = t.key(name);
    let mut orphaned = false;
    for _ in 0..UPDATE_ATTEMPTS {
        let kv = state
            .store
            .get(&key)
            .await
            .map_err(|e| t.store_err(e, name))?
            .ok_or_else(|| t.not_found(name))?;
        let old = decode_kv(&kv)?;
        let uid = meta_str(&old, "uid").unwrap_or_default().to_string();
        if let Some(pu) = opts.uid.as_deref().filter(|u| *u != uid) {
            return Err(ApiError::conflict_message(
                &t.resource(),
                name,
                t.rt.group,
                &format!(
                    "Precondition failed: UID in precondition: {pu}, UID in object meta: {uid}"
                ),
            ));
        }
        if let Some(prv) = opts
            .rv
            .as_deref()
            .filter(|r| *r != kv.mod_revision.to_string())
        {
            return Err(ApiError::conflict_message(
                &t.resource(),
                name,
                t.rt.group,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {prv}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                ),
            ));
        }
        if opts.policy == Policy::Orphan && !orphaned && !dry_run {
            orphan_dependents(state, t, &old).await?;
            orphaned = true;
        }
        let now = objects::now_unix();
        let mut new = strip_rv(&old);
        if t.is_namespace() {
            if !objects::is_deleting(&old) {
                let m = meta_mut(&mut new);
                m.insert("deletionTimestamp".into(), json!(objects::timestamp(now)));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                new["status"] = json!({"phase": "Terminating"});
            }
        } else {
            if opts.policy == Policy::Foreground {
                add_finalizer(&mut new, "foregroundDeletion");
            }
            let graceful = t.is_pod() && pod_is_bound(&old);
            let grace = if graceful {
                opts.grace
                    .or_else(|| {
                        old.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .unwrap_or(30)
                    .max(0)
            } else {
                0
            };
            let current_grace = old
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if !objects::is_deleting(&old) || current_grace.is_some_and(|c| grace < c) {
                let m = meta_mut(&mut new);
                m.insert(
                    "deletionTimestamp".into(),
                    json!(objects::timestamp(now + grace)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
        }
        if dry_run {
            objects::set_rv(&mut new, kv.mod_revision);
            return Ok(new);
        }
        let result = if ready_to_remove(t, &new) {
            state
                .store
                .delete(&key, Some(kv.mod_revision))
                .await
                .map(|d| {
                    let mut gone = new.clone();
                    objects::set_rv(&mut gone, d.mod_revision);
                    gone
                })
        } else if new == strip_rv(&old) {
            Ok(old.clone())
        } else {
            state
                .store
                .update(&key, encode(&new), Some(kv.mod_revision))
                .await
                .map(|u| {
                    objects::set_rv(&mut new, u.mod_revision);
                    new.clone()
                })
        };
        match result {
            Ok(v) => return Ok(v),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound(_)) => return Err(t.not_found(name)),
            Err(e) => return Err(t.store_err(e, name)),
        }
    }
    Err(ApiError::conflict(&t.resource(), name, t.rt.group))
}

/// Remove the owner's ownerReferences from every dependent (propagationPolicy Orphan).
async fn orphan_dependents(state: &AppState, owner_t: &Target, owner: &Value) -> ApiResult<()> {
    let Some(uid) = meta_str(owner, "uid").filter(|u| !u.is_empty()) else {
        return Ok(());
    };
    let needle = uid.as_bytes();
    let ns = meta_str(owner, "namespace").map(str::to_string);
    for rt in aos_types::resource::all() {
        // Dependents of a namespaced owner live in its namespace.
        if ns.is_some() && !rt.namespaced {
            continue;
        }
        let prefix = objects::prefix(rt, ns.as_deref().filter(|_| rt.namespaced));
        let list = state
            .store
            .list(&prefix)
            .await
            .map_err(|e| owner_t.store_err(e, objects::name_of(owner)))?;
        for kv in list.items {
            if !kv.value.windows(needle.len()).any(|w| w == needle) {
                continue;
            }
            let obj = decode_kv(&kv)?;
            let refs = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array);
            if !refs.is_some_and(|r| {
                r.iter()
                    .any(|o| o.get("uid").and_then(Value::as_str) == Some(uid))
            }) {
                continue;
            }
            let dep = Target {
                rt,
                version: rt.version.to_string(),
                ns: meta_str(&obj, "namespace").map(str::to_string),
                name: None,
                sub: None,
            };
            let dep_name = objects::name_of(&obj).to_string();
            let r = update_loop(state, &dep, &dep_name, None, false, |cur| {
                let mut new = strip_rv(cur);
                if let Some(list) = new
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    list.retain(|o| o.get("uid").and_then(Value::as_str) != Some(uid));
                    if list.is_empty() {
                        meta_mut(&mut new).remove("ownerReferences");
                    }
                }
                Ok((new, Vec::new()))
            })
            .await;
            match r {
                Ok(_) => {}
                Err(e) if e.code == StatusCode::NOT_FOUND => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Parsed selectors of a list or watch.
pub(crate) struct Selectors {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
}

impl Selectors {
    /// The label and field selectors of a list or watch of `rt`.
    pub(crate) fn parse(rt: &ResourceType, q: &Query) -> ApiResult<Self> {
        let label = q
            .label_selector
            .as_deref()
            .map(LabelSelector::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let field = q
            .field_selector
            .as_deref()
            .map(|s| FieldSelector::parse(rt, s))
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Selectors { label, field })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.label
            .as_ref()
            .is_none_or(|l| l.matches(&objects::labels(obj)))
            && self.field.as_ref().is_none_or(|f| f.matches(obj))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    /// Last key of the previous page.
    k: String,
    /// The revision of the first page.
    rv: Revision,
}

fn encode_continue(key: &str, rv: Revision) -> String {
    let json = serde_json::to_vec(&ContinueToken {
        k: key.to_string(),
        rv,
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<ContinueToken> {
    let bad = || ApiError::bad_request("invalid continue token: list again without it");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let tok: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if !tok.k.starts_with(prefix) {
        return Err(bad());
    }
    Ok(tok)
}

async fn list(state: &AppState, t: &Target, q: &Query, wants: Wants) -> ApiResult<Response> {
    let sel = Selectors::parse(t.rt, q)?;
    let prefix = objects::prefix(t.rt, t.ns.as_deref());
    let token = q
        .continue_token
        .as_deref()
        .map(|c| decode_continue(c, &prefix))
        .transpose()?;
    let res = state
        .store
        .list(&prefix)
        .await
        .map_err(|e| t.store_err(e, ""))?;
    let list_rv = token.as_ref().map(|tk| tk.rv).unwrap_or(res.revision);
    let start = match &token {
        Some(tk) => res
            .items
            .partition_point(|kv| kv.key.as_str() <= tk.k.as_str()),
        None => 0,
    };
    let limit = q.limit.unwrap_or(usize::MAX);
    let need_parse = !sel.is_empty() || wants.table.is_some() || t.version != t.rt.version;
    let mut chosen: Vec<(&KeyValue, Option<Value>)> = Vec::new();
    let mut next_key: Option<&str> = None;
    let mut remaining = 0usize;
    for kv in &res.items[start..] {
        let parsed = if need_parse {
            Some(decode_kv(kv)?)
        } else {
            None
        };
        if let Some(p) = &parsed
            && !sel.matches(p)
        {
            continue;
        }
        if chosen.len() >= limit {
            remaining += 1;
            continue;
        }
        chosen.push((kv, parsed));
    }
    if remaining > 0 {
        next_key = chosen.last().map(|(kv, _)| kv.key.as_str());
    }
    let continue_token = next_key.map(|k| encode_continue(k, list_rv));
    if let Some(mv) = wants.table {
        let items: Vec<Value> = chosen
            .into_iter()
            .filter_map(|(_, p)| p)
            .map(|mut o| {
                t.present(&mut o);
                o
            })
            .collect();
        let tbl = table::table(
            t.rt,
            &items,
            wants.include,
            mv,
            &list_rv.to_string(),
            continue_token.as_deref(),
            objects::now_unix(),
        );
        return Ok(json_bytes_response(
            StatusCode::OK,
            serde_json::to_vec(&tbl).unwrap_or_default(),
            &table_content_type(mv),
        ));
    }
    let total: usize = chosen.iter().map(|(kv, _)| kv.value.len() + 40).sum();
    let mut out = Vec::with_capacity(total + 256);
    out.extend_from_slice(b"{\"kind\":");
    out.extend_from_slice(
        serde_json::to_string(&format!("{}List", t.rt.kind))
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b",\"apiVersion\":");
    out.extend_from_slice(
        serde_json::to_string(&t.api_version())
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b",\"metadata\":{\"resourceVersion\":\"");
    out.extend_from_slice(list_rv.to_string().as_bytes());
    out.push(b'"');
    if let Some(c) = &continue_token {
        out.extend_from_slice(b",\"continue\":\"");
        out.extend_from_slice(c.as_bytes());
        out.extend_from_slice(b"\",\"remainingItemCount\":");
        out.extend_from_slice(remaining.to_string().as_bytes());
    }
    out.extend_from_slice(b"},\"items\":[");
    for (i, (kv, parsed)) in chosen.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match parsed {
            Some(mut p) => {
                t.present(&mut p);
                serde_json::to_writer(&mut out, &p)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
            }
            None => objects::write_with_rv(&kv.value, kv.mod_revision, &mut out)?,
        }
    }
    out.extend_from_slice(b"]}");
    Ok(json_bytes_response(StatusCode::OK, out, "application/json"))
}

async fn delete_collection(
    state: &AppState,
    t: &Target,
    q: &Query,
    opts: &DeleteOpts,
) -> ApiResult<Response> {
    let sel = Selectors::parse(t.rt, q)?;
    let prefix = objects::prefix(t.rt, t.ns.as_deref());
    let res = state
        .store
        .list(&prefix)
        .await
        .map_err(|e| t.store_err(e, ""))?;
    let mut items = Vec::new();
    for kv in &res.items {
        let obj = decode_kv(kv)?;
        if !sel.matches(&obj) {
            continue;
        }
        let name = objects::name_of(&obj).to_string();
        let one = Target {
            ns: meta_str(&obj, "namespace").map(str::to_string),
            name: Some(name.clone()),
            ..t.clone()
        };
        match delete(state, &one, &name, opts, q.dry_run).await {
            Ok(mut v) => {
                t.present(&mut v);
                items.push(v);
            }
            Err(e) if e.code == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    let rv = state
        .store
        .current_revision()
        .await
        .map_err(|e| t.store_err(e, ""))?;
    let list = json!({
        "kind": format!("{}List", t.rt.kind),
        "apiVersion": t.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    });
    Ok(json_bytes_response(
        StatusCode::OK,
        serde_json::to_vec(&list).unwrap_or_default(),
        "application/json",
    ))
}

/// Create the namespaces every cluster has (`default`, `kube-system`) if missing.
pub(crate) async fn ensure_builtin_namespaces(state: &AppState) -> Result<(), StoreError> {
    for ns in ["default", "kube-system"] {
        let key = format!("/registry/core/namespaces/{ns}");
        if state.store.get(&key).await?.is_some() {
            continue;
        }
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": objects::timestamp(objects::now_unix()),
                "generation": 1,
                "labels": {"kubernetes.io/metadata.name": ns},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        match state.store.create(&key, encode(&obj)).await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let tok = encode_continue("/registry/core/pods/a/b", 42);
        let back = decode_continue(&tok, "/registry/core/pods/").unwrap();
        assert_eq!((back.k.as_str(), back.rv), ("/registry/core/pods/a/b", 42));
        assert!(decode_continue(&tok, "/registry/core/secrets/").is_err());
        assert!(decode_continue("!!", "/").is_err());
    }

    #[test]
    fn scale_selector_string() {
        let d = json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "x"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}]}}});
        let s = scale_of(&d);
        assert_eq!(s["status"]["selector"], "app=x,t in (a,b)");
        assert_eq!(s["spec"]["replicas"], 3);
    }

    #[test]
    fn warning_headers_are_quoted() {
        let h = warning_header("spec.x: unknown \"field\"").unwrap();
        assert_eq!(
            h.to_str().unwrap(),
            "299 - \"spec.x: unknown \\\"field\\\"\""
        );
    }
}
