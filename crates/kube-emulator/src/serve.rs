//! Request routing and the read side of the API: `handle` counts and delays every request, answers
//! discovery (`/version`, `/api`, `/apis`, resource lists), and serves GET and LIST (equality label
//! selectors, limit/continue pagination) with Status objects for 404 and 403, handing writes to
//! `write` and WATCH to `watch`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::reply::{ok, status};
use crate::resources::{find_by_plural, ResourceDef, RESOURCES};
use crate::selector::{parse_selector, selector_matches};
use crate::store::Inner;
use crate::{watch, write};

pub(crate) async fn handle(State(inner): State<Arc<Inner>>, request: Request<Body>) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let latency = inner.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let as_metadata = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"));
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    inner.paths.lock().unwrap().push(if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    });
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect();
    if request.method() != Method::GET || path.ends_with("/scale") {
        if request.method() != Method::GET {
            inner.writes.fetch_add(1, Ordering::SeqCst);
        }
        let method = request.method().clone();
        let (content_type, user_agent) = {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            (header("content-type"), header("user-agent"))
        };
        let body = axum::body::to_bytes(request.into_body(), 64 << 20)
            .await
            .unwrap_or_default();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return status(404, "NotFound", format!("no such path {path}"), json!({})),
        };
        return write::handle(
            &inner,
            write::WriteRequest {
                method,
                group,
                version,
                rest,
                params: &params,
                content_type,
                user_agent,
                body: &body,
            },
        );
    }
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["version"] => ok(
            json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-emulator", "gitCommit": "0",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc",
            "platform": "linux/amd64"}),
        ),
        ["api"] => ok(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})),
        ["apis"] => {
            let mut groups: Vec<&str> = RESOURCES
                .iter()
                .map(|r| r.group)
                .filter(|g| !g.is_empty())
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|g| {
                    let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
                    json!({"name": g, "versions": [gv], "preferredVersion": gv})
                })
                .collect();
            ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["api", version, rest @ ..] => serve_group(&inner, "", version, rest, &params, as_metadata),
        ["apis", group, version, rest @ ..] => {
            serve_group(&inner, group, version, rest, &params, as_metadata)
        }
        _ => status(
            404,
            "NotFound",
            format!("the server could not find the requested resource {path}"),
            json!({}),
        ),
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_group(
    inner: &Arc<Inner>,
    group: &str,
    version: &str,
    rest: &[&str],
    params: &BTreeMap<String, String>,
    as_metadata: bool,
) -> Response {
    let served: Vec<&ResourceDef> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let (plural, namespace, name) = match rest {
        [] => {
            let mut resources = Vec::new();
            for r in &served {
                resources.push(json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}));
                if matches!(r.kind, "Deployment" | "ReplicaSet") {
                    resources.push(
                        json!({"name": format!("{}/status", r.plural), "singularName": "",
                        "namespaced": true, "kind": r.kind, "verbs": ["get", "patch", "update"]}),
                    );
                }
            }
            return ok(
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                             "resources": resources}),
            );
        }
        ["namespaces", namespace, plural] => (*plural, Some(*namespace), None),
        ["namespaces", namespace, plural, name] => (*plural, Some(*namespace), Some(*name)),
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, None, Some(*name)),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource".into(),
                json!({}),
            )
        }
    };
    let Some(def) = find_by_plural(group, version, plural) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    };
    let verb = match name {
        Some(_) => "get",
        None if watch::requested(params) => "watch",
        None => "list",
    };
    if inner.forbidden.lock().unwrap().contains(&def.qualified()) {
        let scope = match namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_string(),
        };
        return status(403, "Forbidden",
            format!("{} is forbidden: User \"system:serviceaccount:driftwatch:driftwatch\" cannot {verb} resource \"{}\" in API group \"{}\"{scope}",
                def.qualified(), def.plural, def.group),
            json!({"group": def.group, "kind": def.plural}));
    }
    if verb == "watch" {
        return watch::serve(inner, def, namespace, params, as_metadata);
    }
    let store = inner.store.lock().unwrap();
    let qualified = def.qualified();
    if let Some(name) = name {
        let key = (
            qualified.clone(),
            if def.namespaced {
                namespace.unwrap_or("").to_string()
            } else {
                String::new()
            },
            name.to_string(),
        );
        return match store.objects.get(&key) {
            Some(object) if as_metadata => ok(watch::metadata_only(object)),
            Some(object) => ok(object.clone()),
            None => status(
                404,
                "NotFound",
                format!("{qualified} \"{name}\" not found"),
                json!({"name": name, "group": def.group, "kind": def.plural}),
            ),
        };
    }
    let selector = params
        .get("labelSelector")
        .map(|s| parse_selector(s))
        .unwrap_or_default();
    let mut items: Vec<&Value> = store
        .in_scope(&qualified, namespace)
        .filter(|v| selector_matches(&selector, v))
        .collect();
    let offset: usize = match params.get("continue") {
        Some(token) => match token.split_once('-').and_then(|(_, o)| o.parse().ok()) {
            Some(offset) => offset,
            None => {
                return status(
                    400,
                    "BadRequest",
                    "invalid continue token".into(),
                    json!({}),
                )
            }
        },
        None => 0,
    };
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let total = items.len();
    items = items.into_iter().skip(offset).take(limit).collect();
    let next = offset + items.len();
    let mut metadata = json!({"resourceVersion": store.resource_version.to_string()});
    if next < total {
        metadata["continue"] = json!(format!("{}-{next}", store.resource_version));
        metadata["remainingItemCount"] = json!(total - next);
    }
    if as_metadata {
        let items: Vec<Value> = items.into_iter().map(watch::metadata_only).collect();
        return ok(
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items}),
        );
    }
    // Like the real server, list items carry no apiVersion/kind. Written
    // straight from the store: no copy of the page's objects.
    let head = json!({"kind": format!("{}List", def.kind), "apiVersion": group_version, "metadata": metadata});
    let mut body = serde_json::to_vec(&head).expect("lists serialize");
    body.pop(); // the closing brace: the items follow
    body.extend_from_slice(b",\"items\":");
    let items: Vec<ListItem> = items.into_iter().map(ListItem).collect();
    serde_json::to_writer(&mut body, &items).expect("lists serialize");
    body.push(b'}');
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A stored object as a list item: without apiVersion and kind.
struct ListItem<'a>(&'a Value);

impl serde::Serialize for ListItem<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(fields) = self.0 else {
            return self.0.serialize(serializer);
        };
        let kept = fields
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "apiVersion" | "kind"));
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in kept {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}
