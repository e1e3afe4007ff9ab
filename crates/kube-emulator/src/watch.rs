//! WATCH as kube-apiserver serves it, so clients' informers (kube-rs
//! `watcher`, client-go reflectors) run against the emulator unchanged:
//! `GET …?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N`
//! answers 200 and streams one JSON event per line, `{"type": "ADDED" |
//! "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR", "object": …}`.
//!
//! Every mutation of the store is recorded in one event log ordered by the
//! global resourceVersion. The log is bounded (the real server keeps a window
//! of recent events in its watch cache): a watch from a resourceVersion older
//! than the window gets HTTP 200 then an `ERROR` event carrying a 410 Status
//! with reason `Expired` ("too old resource version: OLD (CURRENT)") and the
//! stream ends, exactly what makes clients relist. A watch without a
//! resourceVersion (or `0`) first gets an `ADDED` event per existing object.
//! The server closes a watch after `timeoutSeconds` (1800 s when unset), sends
//! a `BOOKMARK` carrying the current resourceVersion at a configurable interval
//! when bookmarks are allowed, and `Accept: …;as=PartialObjectMetadata…` gets
//! metadata-only objects. Test hooks: forbid WATCH (403) on one resource type
//! while GET/LIST still work, cut every open watch at once, shrink the log.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::reply::status;
use crate::selector::{parse_selector, selector_matches};
use crate::store::Inner;
use crate::ResourceDef;

pub use crate::events::{EventLog, EventType, WatchControl, DEFAULT_HISTORY};
pub use crate::reply::metadata_only;

/// The real server closes a watch without `timeoutSeconds` after 30 to 60 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// True for `watch=1` / `watch=true`, as the real server reads it.
pub fn requested(params: &BTreeMap<String, String>) -> bool {
    matches!(
        params.get("watch").map(String::as_str),
        Some("1" | "true" | "True")
    )
}

/// Answers a WATCH request for one resource type (and namespace).
pub(crate) fn serve(
    inner: &Arc<Inner>,
    def: &'static ResourceDef,
    namespace: Option<&str>,
    params: &BTreeMap<String, String>,
    as_metadata: bool,
) -> Response {
    let qualified = def.qualified();
    if inner.watch.forbidden.lock().unwrap().contains(&qualified) {
        let scope = match namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_string(),
        };
        return status(403, "Forbidden",
            format!("{qualified} is forbidden: User \"system:serviceaccount:driftwatch:driftwatch\" cannot watch resource \"{}\" in API group \"{}\"{scope}",
                def.plural, def.group),
            json!({"group": def.group, "kind": def.plural}));
    }
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let filter = Filter {
        qualified,
        namespace: namespace.map(String::from),
        labels: params
            .get("labelSelector")
            .map(|s| parse_selector(s))
            .unwrap_or_default(),
        fields: params
            .get("fieldSelector")
            .map(|s| parse_field_selector(s))
            .unwrap_or_default(),
    };
    let bookmarks = params.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let send_initial = params.get("sendInitialEvents").map(String::as_str) == Some("true");
    let from = params
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && rv.as_str() != "0")
        .map(|rv| rv.parse::<u64>());
    let from = match from {
        Some(Err(_)) => {
            return status(
                400,
                "BadRequest",
                format!("invalid resource version: {}", params["resourceVersion"]),
                json!({}),
            )
        }
        Some(Ok(rv)) if !send_initial => Some(rv),
        _ => None,
    };

    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
    let inner = inner.clone();
    inner.watch.started.fetch_add(1, Ordering::SeqCst);
    inner.watch.open.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        let stream = Stream {
            inner: inner.clone(),
            filter,
            as_metadata,
            sender,
        };
        stream.run(from, send_initial, bookmarks, timeout).await;
        inner.watch.open.fetch_sub(1, Ordering::SeqCst);
    });
    let body = futures_util::stream::poll_fn(move |cx| {
        receiver
            .poll_recv(cx)
            .map(|next| next.map(Ok::<_, std::convert::Infallible>))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

struct Filter {
    qualified: String,
    namespace: Option<String>,
    labels: Vec<(String, Option<String>, bool)>,
    /// (field, value, equals): `metadata.name`, `metadata.namespace`.
    fields: Vec<(String, String, bool)>,
}

impl Filter {
    fn matches(&self, qualified: &str, namespace: &str, object: &Value) -> bool {
        qualified == self.qualified
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && selector_matches(&self.labels, object)
            && self.fields.iter().all(|(field, value, equals)| {
                let actual = match field.as_str() {
                    "metadata.name" => object["metadata"]["name"].as_str(),
                    "metadata.namespace" => object["metadata"]["namespace"].as_str(),
                    _ => None,
                };
                (actual == Some(value.as_str())) == *equals
            })
    }
}

fn parse_field_selector(text: &str) -> Vec<(String, String, bool)> {
    text.split(',')
        .filter(|t| !t.is_empty())
        .filter_map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                Some((k.to_string(), v.to_string(), false))
            } else {
                let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
                Some((k.to_string(), v.to_string(), true))
            }
        })
        .collect()
}

struct Stream {
    inner: Arc<Inner>,
    filter: Filter,
    as_metadata: bool,
    sender: tokio::sync::mpsc::Sender<Bytes>,
}

enum Batch {
    Events(Vec<Bytes>, u64),
    Expired(u64, u64),
}

impl Stream {
    async fn send(&self, event: Value) -> bool {
        let mut line = serde_json::to_vec(&event).expect("events serialize");
        line.push(b'\n');
        self.sender.send(Bytes::from(line)).await.is_ok()
    }

    fn event(&self, kind: &str, object: &Value) -> Value {
        let object = if self.as_metadata {
            metadata_only(object)
        } else {
            object.clone()
        };
        json!({"type": kind, "object": object})
    }

    fn bookmark(&self, resource_version: u64, initial_end: bool) -> Value {
        let def = crate::RESOURCES
            .iter()
            .find(|r| r.qualified() == self.filter.qualified)
            .expect("watched types are served");
        let mut metadata =
            json!({"resourceVersion": resource_version.to_string(), "creationTimestamp": null});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (api_version, kind) = if self.as_metadata {
            ("meta.k8s.io/v1".to_string(), "PartialObjectMetadata")
        } else {
            (def.api_version(), def.kind)
        };
        json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}})
    }

    /// Events after `since` that this watch selects, or the 410 it gets when
    /// `since` has fallen out of the log.
    fn after(&self, since: u64) -> Batch {
        let store = self.inner.store.lock().unwrap();
        let current = store.resource_version;
        let log = &store.events;
        if since < log.floor {
            return Batch::Expired(since, current);
        }
        let start = log.events.partition_point(|e| e.resource_version <= since);
        let mut lines = Vec::new();
        let last = since.max(log.events.back().map_or(since, |e| e.resource_version));
        for recorded in log.events.range(start..) {
            if self
                .filter
                .matches(&recorded.qualified, &recorded.namespace, &recorded.object)
            {
                let event = self.event(recorded.event.as_str(), &recorded.object);
                let mut line = serde_json::to_vec(&event).expect("events serialize");
                line.push(b'\n');
                lines.push(Bytes::from(line));
            }
        }
        Batch::Events(lines, last)
    }

    async fn run(self, from: Option<u64>, send_initial: bool, bookmarks: bool, timeout: Duration) {
        let mut changes = self.inner.store.lock().unwrap().events.notify.subscribe();
        let mut cuts = self.inner.watch.cuts.subscribe();
        cuts.borrow_and_update();
        let deadline = tokio::time::Instant::now() + timeout;
        // Start: replay from `from`, or list what exists now as ADDED events.
        let mut since = match from {
            Some(rv) => rv,
            None => {
                let (initial, current) = {
                    let store = self.inner.store.lock().unwrap();
                    let initial: Vec<Value> = store
                        .in_scope(&self.filter.qualified, self.filter.namespace.as_deref())
                        .filter(|v| {
                            let ns = v["metadata"]["namespace"].as_str().unwrap_or("");
                            self.filter.matches(&self.filter.qualified, ns, v)
                        })
                        .map(|v| self.event("ADDED", v))
                        .collect();
                    changes.borrow_and_update();
                    (initial, store.resource_version)
                };
                for event in initial {
                    if !self.send(event).await {
                        return;
                    }
                }
                if send_initial && !self.send(self.bookmark(current, true)).await {
                    return;
                }
                current
            }
        };
        let interval =
            Duration::from_millis(self.inner.watch.bookmark_interval_ms.load(Ordering::SeqCst));
        let mut next_bookmark = tokio::time::Instant::now() + interval;
        loop {
            match self.after(since) {
                Batch::Expired(old, current) => {
                    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": format!("too old resource version: {old} ({current})"),
                        "reason": "Expired", "code": 410});
                    let _ = self.send(json!({"type": "ERROR", "object": status})).await;
                    return;
                }
                Batch::Events(lines, last) => {
                    for line in lines {
                        if self.sender.send(line).await.is_err() {
                            return;
                        }
                    }
                    since = last;
                }
            }
            // A cut wins over pending changes: they must reach the client by resuming.
            tokio::select! {
                biased;
                _ = cuts.changed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
                changed = changes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(next_bookmark), if bookmarks => {
                    next_bookmark = tokio::time::Instant::now() + interval;
                    // Everything up to `since` has been sent.
                    if !self.send(self.bookmark(since, false)).await {
                        return;
                    }
                }
                _ = self.sender.closed() => return,
            }
        }
    }
}
