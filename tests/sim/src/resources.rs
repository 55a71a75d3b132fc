//! HTTP for the workload objects (objects.rs): Services, ConfigMaps,
//! PersistentVolumeClaims (core v1), StatefulSets (apps/v1), Roles and RoleBindings
//! (rbac.authorization.k8s.io/v1): get, list (label selectors, Tables for kubectl),
//! create (POST), server-side apply (PATCH application/apply-patch+yaml), delete; apply
//! and create of Namespaces; their discovery documents and the OpenAPI v3 documents
//! kubectl reads before `apply` to learn that the server validates fields itself.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Value};

use crate::auth::{self, Attributes};
use crate::controller;
use crate::objects::{labels_of, ApiError, Applied, Kind, KINDS, STATEFULSETS};
use crate::selector::Selector;
use crate::server::Ctx;
use crate::status::{self, json_ok, Resp};

/// The apiserver's request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

const GROUPS: [&str; 2] = ["apps", "rbac.authorization.k8s.io"];

/// One parsed request path.
enum Target {
    Collection {
        kind: Kind,
        ns: Option<String>,
    },
    Object {
        kind: Kind,
        ns: String,
        name: String,
    },
    Namespaces,
    Namespace(String),
    GroupResources(&'static str),
    OpenApiIndex,
    OpenApi(String),
}

fn parse(method: &Method, path: &str) -> Option<Target> {
    let segs: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let find = |group: &str, plural: &str| Kind::find(group, plural);
    let owned = |s: &&str| s.to_string();
    Some(match segs.as_slice() {
        // GETs of namespaces stay with the server's own handlers.
        ["api", "v1", "namespaces"] if method == Method::POST => Target::Namespaces,
        ["api", "v1", "namespaces"] => return None,
        ["api", "v1", "namespaces", name]
            if method == Method::PATCH || method == Method::DELETE =>
        {
            Target::Namespace(owned(name))
        }
        ["openapi", "v3"] => Target::OpenApiIndex,
        ["openapi", "v3", rest @ ..] => Target::OpenApi(rest.join("/")),
        ["apis", g, "v1"] => Target::GroupResources(GROUPS.into_iter().find(|x| x == g)?),
        ["api", "v1", plural] => Target::Collection {
            kind: find("", plural)?,
            ns: None,
        },
        ["apis", g, "v1", plural] => Target::Collection {
            kind: find(g, plural)?,
            ns: None,
        },
        ["api", "v1", "namespaces", ns, plural] => Target::Collection {
            kind: find("", plural)?,
            ns: Some(owned(ns)),
        },
        ["apis", g, "v1", "namespaces", ns, plural] => Target::Collection {
            kind: find(g, plural)?,
            ns: Some(owned(ns)),
        },
        ["api", "v1", "namespaces", ns, plural, name] => Target::Object {
            kind: find("", plural)?,
            ns: owned(ns),
            name: owned(name),
        },
        ["apis", g, "v1", "namespaces", ns, plural, name] => Target::Object {
            kind: find(g, plural)?,
            ns: owned(ns),
            name: owned(name),
        },
        _ => return None,
    })
}

/// Whether this module answers the request.
pub fn serves(method: &Method, path: &str) -> bool {
    parse(method, path).is_some()
}

fn error(e: ApiError) -> Resp {
    status::failure(e.code, e.reason, &e.message, Some(e.details))
}

fn refuse(
    ctx: &Ctx,
    verb: &str,
    kind: &Kind,
    ns: Option<&str>,
    name: Option<&str>,
) -> Option<Resp> {
    auth::refusal(
        &ctx.user,
        &Attributes {
            verb,
            resource: kind.plural,
            namespace: ns,
            name,
        },
    )
}

async fn body(req: Request<Incoming>) -> Result<(Value, bool), Resp> {
    let yaml = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(status::bad_request(&format!("reading the body: {e}"))),
    };
    if bytes.len() > MAX_BODY {
        return Err(status::failure(
            413,
            "RequestEntityTooLarge",
            "the request body is too large",
            None,
        ));
    }
    let parsed: Result<Value, String> = if yaml.contains("yaml") {
        serde_yaml::from_slice(&bytes).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    match parsed {
        Ok(v) if v.is_object() => Ok((v, yaml.contains("apply-patch"))),
        Ok(_) => Err(status::bad_request("the body must be an object")),
        Err(e) => Err(status::bad_request(&format!(
            "the body of the request was in an unknown format: {e}"
        ))),
    }
}

/// Answer a request `serves` said is ours.
pub async fn answer(req: Request<Incoming>, ctx: &Ctx) -> Resp {
    let method = req.method().clone();
    let Some(target) = parse(&method, req.uri().path()) else {
        return status::no_route();
    };
    let dry_run = ctx.query_all("dryRun").iter().any(|v| v == "All");
    let strict = ctx.query("fieldValidation") == Some("Strict");
    match (target, method) {
        (Target::OpenApiIndex, Method::GET) => json_ok(&openapi_index()),
        (Target::OpenApi(gv), Method::GET) => match openapi_doc(&gv) {
            Some(doc) => json_ok(&doc),
            None => status::no_route(),
        },
        (Target::GroupResources(g), Method::GET) => json_ok(&group_resources(g)),
        (Target::Collection { kind, ns }, Method::GET) => list(ctx, &kind, ns.as_deref()),
        (Target::Collection { kind, ns: Some(ns) }, Method::POST) => {
            if let Some(r) = refuse(ctx, "create", &kind, Some(&ns), None) {
                return r;
            }
            if !ctx.state.has_namespace(&ns) {
                return status::not_found("namespaces", &ns);
            }
            let (obj, _) = match body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let manager = ctx.query("fieldManager").unwrap_or("unknown").to_string();
            let made = ctx.state.workloads.store().create(
                &kind,
                &ns,
                obj,
                &manager,
                strict,
                dry_run,
                &controller::now(),
            );
            match made {
                Ok(v) => {
                    let name = v["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    after_write(ctx, &kind, &ns, &name, dry_run);
                    status::raw(
                        hyper::StatusCode::CREATED,
                        "application/json",
                        serde_json::to_vec(&render(ctx, &kind, &ns, v)).expect("json"),
                    )
                }
                Err(e) => error(e),
            }
        }
        (Target::Object { kind, ns, name }, Method::GET) => {
            if let Some(r) = refuse(ctx, "get", &kind, Some(&ns), Some(&name)) {
                return r;
            }
            match ctx.state.workloads.store().get(&kind, &ns, &name) {
                Some(v) if ctx.wants_table => json_ok(&table(ctx, &kind, &[v])),
                Some(v) => json_ok(&render(ctx, &kind, &ns, v)),
                None => error(ApiError::not_found(&kind, &name)),
            }
        }
        (Target::Object { kind, ns, name }, Method::PATCH) => {
            apply(req, ctx, &kind, &ns, &name, strict, dry_run).await
        }
        (Target::Object { kind, ns, name }, Method::DELETE) => {
            if let Some(r) = refuse(ctx, "delete", &kind, Some(&ns), Some(&name)) {
                return r;
            }
            let orphan = ctx.query("propagationPolicy") == Some("Orphan");
            let removed = if dry_run {
                ctx.state
                    .workloads
                    .store()
                    .get(&kind, &ns, &name)
                    .ok_or_else(|| ApiError::not_found(&kind, &name))
            } else {
                ctx.state.workloads.store().delete(&kind, &ns, &name)
            };
            match removed {
                Ok(v) => {
                    if !orphan {
                        after_write(ctx, &kind, &ns, &name, dry_run);
                    }
                    json_ok(&v)
                }
                Err(e) => error(e),
            }
        }
        (Target::Namespaces, Method::POST) => {
            let (obj, _) = match body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            namespace_write(ctx, &name, &obj, false, dry_run)
        }
        (Target::Namespace(name), Method::PATCH) => {
            let (obj, is_apply) = match body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            if !is_apply {
                return unsupported_patch();
            }
            namespace_write(ctx, &name, &obj, true, dry_run)
        }
        (Target::Namespace(name), Method::DELETE) => {
            let a = Attributes {
                verb: "delete",
                resource: "namespaces",
                namespace: None,
                name: Some(&name),
            };
            if let Some(r) = auth::refusal(&ctx.user, &a) {
                return r;
            }
            if !ctx.state.has_namespace(&name) {
                return status::not_found("namespaces", &name);
            }
            if !dry_run {
                // At once, with everything in it (no Terminating phase, no finalizers).
                for p in ctx.state.pods(Some(&name)) {
                    ctx.state.remove_pod(&name, &p.cfg.name);
                }
                ctx.state.workloads.store().delete_namespace(&name);
                ctx.state.remove_namespace(&name);
            }
            json_ok(&crate::api::namespace(&name, ctx.state.started))
        }
        _ => status::method_not_allowed(),
    }
}

fn unsupported_patch() -> Resp {
    status::failure(
        415,
        "UnsupportedMediaType",
        "the simulated cluster only serves server-side apply patches \
         (Content-Type: application/apply-patch+yaml)",
        None,
    )
}

fn namespace_write(ctx: &Ctx, name: &str, obj: &Value, apply: bool, dry_run: bool) -> Resp {
    let a = Attributes {
        verb: if apply { "patch" } else { "create" },
        resource: "namespaces",
        namespace: None,
        name: Some(name),
    };
    if let Some(r) = auth::refusal(&ctx.user, &a) {
        return r;
    }
    if obj["kind"] != "Namespace" || obj["apiVersion"] != "v1" {
        return status::bad_request("the body must be a v1 Namespace");
    }
    if obj.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
        return status::bad_request("the name of the object does not match the name on the URL");
    }
    let exists = ctx.state.has_namespace(name);
    if exists && !apply {
        return status::failure(
            409,
            "AlreadyExists",
            &format!("namespaces \"{name}\" already exists"),
            Some(json!({"name": name, "kind": "namespaces"})),
        );
    }
    if !exists {
        let create = Attributes {
            verb: "create",
            ..a
        };
        if let Some(r) = auth::refusal(&ctx.user, &create) {
            return r;
        }
        if !dry_run {
            ctx.state.add_namespace(name);
        }
    }
    json_ok(&crate::api::namespace(name, ctx.state.started))
}

async fn apply(
    req: Request<Incoming>,
    ctx: &Ctx,
    kind: &Kind,
    ns: &str,
    name: &str,
    strict: bool,
    dry_run: bool,
) -> Resp {
    if let Some(r) = refuse(ctx, "patch", kind, Some(ns), Some(name)) {
        return r;
    }
    let exists = ctx.state.workloads.store().get(kind, ns, name).is_some();
    // Applying an object that does not exist creates it: that needs `create` too.
    if !exists {
        if let Some(r) = refuse(ctx, "create", kind, Some(ns), Some(name)) {
            return r;
        }
    }
    if !ctx.state.has_namespace(ns) {
        return status::not_found("namespaces", ns);
    }
    let (obj, is_apply) = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !is_apply {
        return unsupported_patch();
    }
    let Some(manager) = ctx.query("fieldManager").filter(|m| !m.is_empty()) else {
        return status::failure(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            None,
        );
    };
    let manager = manager.to_string();
    let result = ctx.state.workloads.store().apply(
        kind,
        ns,
        name,
        obj,
        &manager,
        strict,
        dry_run,
        &controller::now(),
    );
    match result {
        Ok(applied) => {
            let created = matches!(applied, Applied::Created(_));
            if !matches!(applied, Applied::Unchanged(_)) {
                after_write(ctx, kind, ns, name, dry_run);
            }
            let v = render(ctx, kind, ns, applied.object().clone());
            let code = if created {
                hyper::StatusCode::CREATED
            } else {
                hyper::StatusCode::OK
            };
            status::raw(
                code,
                "application/json",
                serde_json::to_vec(&v).expect("json"),
            )
        }
        Err(e) => error(e),
    }
}

/// What a stored change sets off: the StatefulSet controller.
fn after_write(ctx: &Ctx, kind: &Kind, ns: &str, name: &str, dry_run: bool) {
    if !dry_run && *kind == STATEFULSETS {
        controller::reconcile(&ctx.state, ns, name);
    }
}

/// An object as the API answers it: a StatefulSet with its live status.
fn render(ctx: &Ctx, kind: &Kind, ns: &str, mut v: Value) -> Value {
    if *kind == STATEFULSETS {
        v["status"] = controller::status(&ctx.state, ns, &v);
    }
    v
}

fn list(ctx: &Ctx, kind: &Kind, ns: Option<&str>) -> Resp {
    let watch = ctx.query("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = if watch { "watch" } else { "list" };
    if let Some(r) = refuse(ctx, verb, kind, ns, None) {
        return r;
    }
    if watch {
        return status::bad_request(&format!(
            "the simulated cluster does not serve watches of {}: list instead",
            kind.plural
        ));
    }
    let selector = match Selector::parse(ctx.query("labelSelector").unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return status::bad_request(&e),
    };
    let (items, revision) = {
        let store = ctx.state.workloads.store();
        (store.list(kind, ns), store.revision())
    };
    let items: Vec<Value> = items
        .into_iter()
        .filter(|v| selector.matches(&labels_of(v)))
        .map(|v| {
            let ns = v["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            render(ctx, kind, &ns, v)
        })
        .collect();
    if ctx.wants_table {
        return json_ok(&table(ctx, kind, &items));
    }
    json_ok(&json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": revision.max(1).to_string()},
        "items": items,
    }))
}

fn age(v: &Value) -> String {
    let created = v
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok());
    match created {
        Some(t) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let secs = (now - t.as_second()).max(0);
            crate::table::human_duration(std::time::Duration::from_secs(secs as u64))
        }
        None => "<unknown>".into(),
    }
}

fn s(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "<none>".into(),
        Some(other) => other.to_string(),
    }
}

/// The Table kubectl asks for, with the apiserver's columns for each kind.
fn table(ctx: &Ctx, kind: &Kind, items: &[Value]) -> Value {
    let _ = ctx;
    let columns: &[&str] = match kind.kind {
        "StatefulSet" => &["Name", "Ready", "Age"],
        "Service" => &[
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
        ],
        "ConfigMap" => &["Name", "Data", "Age"],
        "PersistentVolumeClaim" => &[
            "Name",
            "Status",
            "Volume",
            "Capacity",
            "Access Modes",
            "StorageClass",
            "Age",
        ],
        "RoleBinding" => &["Name", "Role", "Age"],
        _ => &["Name", "Age"],
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|v| {
            let name = s(v, "/metadata/name");
            let cells: Vec<String> = match kind.kind {
                "StatefulSet" => vec![
                    name,
                    format!(
                        "{}/{}",
                        v.pointer("/status/readyReplicas")
                            .and_then(Value::as_u64)
                            .unwrap_or(0),
                        v.pointer("/spec/replicas")
                            .and_then(Value::as_u64)
                            .unwrap_or(1)
                    ),
                    age(v),
                ],
                "Service" => vec![
                    name,
                    v.pointer("/spec/type")
                        .and_then(Value::as_str)
                        .unwrap_or("ClusterIP")
                        .into(),
                    s(v, "/spec/clusterIP"),
                    "<none>".into(),
                    v.pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .filter(|p| !p.is_empty())
                        .map(|ps| {
                            ps.iter()
                                .map(|p| {
                                    format!(
                                        "{}/{}",
                                        s(p, "/port"),
                                        p["protocol"].as_str().unwrap_or("TCP")
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_else(|| "<none>".into()),
                    age(v),
                ],
                "ConfigMap" => vec![
                    name,
                    v.get("data")
                        .and_then(Value::as_object)
                        .map_or(0, |d| d.len())
                        .to_string(),
                    age(v),
                ],
                "PersistentVolumeClaim" => vec![
                    name,
                    s(v, "/status/phase"),
                    format!("pvc-{}", s(v, "/metadata/uid")),
                    s(v, "/status/capacity/storage"),
                    v.pointer("/spec/accessModes")
                        .and_then(Value::as_array)
                        .map(|m| {
                            m.iter()
                                .map(|a| match a.as_str().unwrap_or("") {
                                    "ReadWriteOnce" => "RWO",
                                    "ReadOnlyMany" => "ROX",
                                    "ReadWriteMany" => "RWX",
                                    "ReadWriteOncePod" => "RWOP",
                                    _ => "?",
                                })
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default(),
                    s(v, "/spec/storageClassName"),
                    age(v),
                ],
                "RoleBinding" => vec![
                    name,
                    format!("{}/{}", s(v, "/roleRef/kind"), s(v, "/roleRef/name")),
                    age(v),
                ],
                _ => vec![name, age(v)],
            };
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": v["metadata"],
                }
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "1"},
        "columnDefinitions": columns.iter().map(|c| json!({
            "name": c, "type": "string", "format": if *c == "Name" { "name" } else { "" },
            "description": "", "priority": 0
        })).collect::<Vec<_>>(),
        "rows": rows,
    })
}

const VERBS: [&str; 5] = ["create", "delete", "get", "list", "patch"];

fn resource(kind: &Kind) -> Value {
    let mut r = json!({
        "name": kind.plural, "singularName": kind.singular, "namespaced": true,
        "kind": kind.kind, "verbs": VERBS,
    });
    if !kind.short_names.is_empty() {
        r["shortNames"] = json!(kind.short_names);
    }
    if kind.kind == "StatefulSet" || kind.kind == "Service" {
        r["categories"] = json!(["all"]);
    }
    r
}

/// The core v1 resources this module serves, for /api/v1's discovery.
pub fn core_resources() -> Vec<Value> {
    KINDS
        .iter()
        .filter(|k| k.group.is_empty())
        .map(resource)
        .collect()
}

/// /apis: the API groups besides the core one.
pub fn group_list() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|g| {
            let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
            json!({"name": g, "versions": [gv], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group_resources(group: &str) -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/v1"),
        "resources": KINDS.iter().filter(|k| k.group == group).map(resource).collect::<Vec<_>>(),
    })
}

/// The group-versions whose OpenAPI v3 documents we serve: "api/v1", "apis/apps/v1", ...
fn openapi_gvs() -> Vec<String> {
    let mut v = vec!["api/v1".to_string()];
    v.extend(GROUPS.iter().map(|g| format!("apis/{g}/v1")));
    v
}

fn openapi_index() -> Value {
    let paths: serde_json::Map<String, Value> = openapi_gvs()
        .into_iter()
        .map(|gv| {
            let hash = crate::state::object_uid("openapi", &gv).replace('-', "");
            let url = format!("/openapi/v3/{gv}?hash={hash}");
            (gv, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document for a group-version: each kind's PATCH operation with
/// its group-version-kind and the query parameters we honour (fieldValidation among
/// them, which tells kubectl the server validates fields, so it needs no schemas).
fn openapi_doc(gv: &str) -> Option<Value> {
    if !openapi_gvs().iter().any(|g| g == gv) {
        return None;
    }
    let group = gv
        .strip_prefix("apis/")
        .and_then(|g| g.strip_suffix("/v1"))
        .unwrap_or("");
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        {"name": "force", "in": "query", "schema": {"type": "boolean"}}
    ]);
    let op = |kind: &str| {
        json!({"patch": {
            "operationId": format!("patch{kind}"),
            "parameters": params,
            "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": "v1", "kind": kind}
        }})
    };
    let mut paths = serde_json::Map::new();
    for k in KINDS.iter().filter(|k| k.group == group) {
        paths.insert(
            format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", k.plural),
            op(k.kind),
        );
    }
    if group.is_empty() {
        paths.insert("/api/v1/namespaces/{name}".into(), op("Namespace"));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::api::version()["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}
