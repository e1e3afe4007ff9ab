//! The emulator's WATCH against the real server's contract, over raw HTTP:
//! events for every change in resourceVersion order, replay from a version,
//! 410 Expired for a version older than the log, bookmarks, server-side
//! timeouts, metadata-only objects, a 403 for watch alone, and cuts. Then the
//! kube crate's own watcher (the informer driftwatch uses) against it.

use std::time::Duration;

use futures::StreamExt;
use kube_emulator::KubeEmulator;
use serde_json::{json, Value};

/// One open watch, read line by line.
struct Watch {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Watch {
    async fn open(emulator: &KubeEmulator, path_and_query: &str) -> Watch {
        Self::open_with(emulator, path_and_query, "application/json").await
    }

    async fn open_with(emulator: &KubeEmulator, path_and_query: &str, accept: &str) -> Watch {
        let response = reqwest::Client::new()
            .get(format!("{}{path_and_query}", emulator.url()))
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path_and_query}");
        Watch {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event, or None when the server closed the stream.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("each line is one JSON event"));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event or the end within 10 s")
                .unwrap()?;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next event that is not a bookmark.
    async fn next_change(&mut self) -> Option<Value> {
        loop {
            let event = self.next().await?;
            if event["type"] != "BOOKMARK" {
                return Some(event);
            }
        }
    }
}

fn seed(emulator: &KubeEmulator) {
    emulator.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: shop}\ndata: {k: '1'}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: shop}\ndata: {k: '1'}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: other}\ndata: {k: '1'}\n",
    );
}

async fn list_version(emulator: &KubeEmulator, path: &str) -> String {
    let list: Value = reqwest::get(format!("{}{path}", emulator.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

fn rv(event: &Value) -> u64 {
    event["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn every_change_after_a_version_arrives_in_order_for_its_scope_only() {
    let emulator = KubeEmulator::start().await;
    seed(&emulator);
    let from = list_version(&emulator, "/api/v1/namespaces/shop/configmaps").await;
    let mut watch = Watch::open(
        &emulator,
        &format!("/api/v1/namespaces/shop/configmaps?watch=1&resourceVersion={from}"),
    )
    .await;
    emulator.patch("ConfigMap", "shop", "a", |o| o["data"]["k"] = json!("2"));
    emulator.patch("ConfigMap", "other", "c", |o| o["data"]["k"] = json!("2"));
    emulator.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: shop}\n");
    emulator.delete("ConfigMap", "shop", "b");
    emulator.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d, namespace: shop}\n");

    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = watch.next_change().await.unwrap();
        assert_eq!(event["object"]["kind"], "ConfigMap", "{event}");
        assert_eq!(event["object"]["apiVersion"], "v1");
        seen.push((
            event["type"].as_str().unwrap().to_string(),
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
            rv(&event),
        ));
    }
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|(t, n, _)| (t.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "d")]
    );
    assert!(seen.windows(2).all(|w| w[0].2 < w[1].2), "{seen:?}");
    assert!(seen[0].2 > from.parse::<u64>().unwrap());
    // The modified object carries its new content.
    let live = emulator.get("ConfigMap", "shop", "a").unwrap();
    assert_eq!(live["data"]["k"], "2");

    // Resuming from the first event's version replays exactly what followed.
    let mut resumed = Watch::open(
        &emulator,
        &format!(
            "/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion={}",
            seen[0].2
        ),
    )
    .await;
    assert_eq!(resumed.next_change().await.unwrap()["type"], "DELETED");
    assert_eq!(resumed.next_change().await.unwrap()["type"], "ADDED");
}

#[tokio::test]
async fn without_a_version_existing_objects_come_first_as_added() {
    let emulator = KubeEmulator::start().await;
    seed(&emulator);
    for query in ["watch=1", "watch=1&resourceVersion=0"] {
        let mut watch = Watch::open(
            &emulator,
            &format!("/api/v1/namespaces/shop/configmaps?{query}"),
        )
        .await;
        let mut names = Vec::new();
        for _ in 0..3 {
            let event = watch.next_change().await.unwrap();
            assert_eq!(event["type"], "ADDED");
            names.push(
                event["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        names.sort();
        assert_eq!(names, ["a", "b", "kube-root-ca.crt"]);
    }
}

#[tokio::test]
async fn a_version_older_than_the_log_gets_410_expired_and_the_stream_ends() {
    let emulator = KubeEmulator::start().await;
    seed(&emulator);
    let old = list_version(&emulator, "/api/v1/namespaces/shop/configmaps").await;
    emulator.set_watch_history(3);
    for n in 0..5 {
        emulator.patch("ConfigMap", "other", "c", |o| {
            o["data"]["k"] = json!(n.to_string())
        });
    }
    let mut watch = Watch::open(
        &emulator,
        &format!("/api/v1/namespaces/shop/configmaps?watch=1&resourceVersion={old}"),
    )
    .await;
    let event = watch.next().await.unwrap();
    assert_eq!(event["type"], "ERROR");
    let status = &event["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert_eq!(
        status["message"],
        format!(
            "too old resource version: {old} ({})",
            emulator.resource_version()
        )
    );
    assert!(watch.next().await.is_none(), "the server closes the stream");

    // A version still inside the log is fine.
    let recent = emulator.resource_version() - 2;
    let mut ok = Watch::open(
        &emulator,
        &format!("/api/v1/namespaces/other/configmaps?watch=1&resourceVersion={recent}"),
    )
    .await;
    let event = ok.next_change().await.unwrap();
    assert_eq!(event["type"], "MODIFIED");
    assert_eq!(rv(&event), recent + 1);
}

#[tokio::test]
async fn bookmarks_carry_the_current_version_and_the_server_closes_after_the_timeout() {
    let emulator = KubeEmulator::start().await;
    seed(&emulator);
    emulator.set_bookmark_interval(Duration::from_millis(100));
    let from = list_version(&emulator, "/api/v1/namespaces/shop/configmaps").await;
    emulator.patch("ConfigMap", "other", "c", |o| o["data"]["k"] = json!("9"));
    let mut watch = Watch::open(
        &emulator,
        &format!(
            "/api/v1/namespaces/shop/configmaps?watch=1&resourceVersion={from}&allowWatchBookmarks=true&timeoutSeconds=1"
        ),
    )
    .await;
    let bookmark = watch.next().await.unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    assert_eq!(bookmark["object"]["apiVersion"], "v1");
    // Past the change in another namespace: a resume from here skips nothing it selects.
    assert_eq!(rv(&bookmark), emulator.resource_version());
    while let Some(event) = watch.next().await {
        assert_eq!(event["type"], "BOOKMARK");
    }
    assert_eq!(emulator.open_watches(), 0);

    // Without allowWatchBookmarks there are none.
    let mut plain = Watch::open(
        &emulator,
        "/api/v1/namespaces/shop/configmaps?watch=1&resourceVersion=1&timeoutSeconds=1",
    )
    .await;
    while let Some(event) = plain.next().await {
        assert_ne!(event["type"], "BOOKMARK", "{event}");
    }
}

#[tokio::test]
async fn metadata_only_watch_and_list_return_partial_object_metadata() {
    let emulator = KubeEmulator::start().await;
    seed(&emulator);
    let accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    let list: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/namespaces/shop/configmaps",
            emulator.url()
        ))
        .header("Accept", accept)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert!(list["items"][0].get("data").is_none());
    let from = list["metadata"]["resourceVersion"].as_str().unwrap();
    let mut watch = Watch::open_with(
        &emulator,
        &format!("/api/v1/namespaces/shop/configmaps?watch=1&resourceVersion={from}"),
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
    )
    .await;
    emulator.patch("ConfigMap", "shop", "a", |o| {
        o["data"]["k"] = json!("secret-ish")
    });
    let event = watch.next_change().await.unwrap();
    assert_eq!(event["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(event["object"]["metadata"]["name"], "a");
    assert!(!event.to_string().contains("secret-ish"));
}

#[tokio::test]
async fn watch_can_be_forbidden_alone_and_cut() {
    let emulator = KubeEmulator::start().await;
    seed(&emulator);
    emulator.forbid_watch("configmaps");
    let response = reqwest::get(format!(
        "{}/api/v1/namespaces/shop/configmaps?watch=1",
        emulator.url()
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 403);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["reason"], "Forbidden");
    assert!(status["message"]
        .as_str()
        .unwrap()
        .contains("cannot watch resource \"configmaps\""));
    let list = reqwest::get(format!(
        "{}/api/v1/namespaces/shop/configmaps",
        emulator.url()
    ))
    .await
    .unwrap();
    assert_eq!(list.status(), 200, "list is still allowed");

    emulator.allow_watch("configmaps");
    let mut first = Watch::open(
        &emulator,
        "/api/v1/namespaces/shop/configmaps?watch=1&resourceVersion=1",
    )
    .await;
    let mut second = Watch::open(
        &emulator,
        "/apis/apps/v1/deployments?watch=1&resourceVersion=1",
    )
    .await;
    while emulator.open_watches() < 2 {
        tokio::task::yield_now().await;
    }
    emulator.cut_watches();
    while first.next().await.is_some() {}
    while second.next().await.is_some() {}
    assert_eq!(emulator.open_watches(), 0);
    assert_eq!(emulator.watches_started(), 2);
}

/// kube-rs's watcher (list, then watch with bookmarks) sees changes, resumes
/// after a cut without losing any, and relists after a 410.
#[tokio::test]
async fn kube_watcher_survives_cuts_and_expiry_without_losing_changes() {
    use kube::runtime::watcher::{self, Event};
    let emulator = KubeEmulator::start().await;
    seed(&emulator);
    emulator.set_bookmark_interval(Duration::from_millis(200));
    let tmp = tempfile::tempdir().unwrap();
    let path = emulator.write_kubeconfig(tmp.path());
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "shop");
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    macro_rules! next {
        () => {
            tokio::time::timeout(Duration::from_secs(20), stream.next())
                .await
                .expect("an event within 20 s")
                .unwrap()
        };
    }
    // Initial list.
    let mut initial = 0;
    loop {
        match next!().unwrap() {
            Event::Init => {}
            Event::InitApply(_) => initial += 1,
            Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(initial, 3);
    let value = |cm: &k8s_openapi::api::core::v1::ConfigMap| cm.data.as_ref().unwrap()["k"].clone();

    emulator.patch("ConfigMap", "shop", "a", |o| o["data"]["k"] = json!("2"));
    match next!().unwrap() {
        Event::Apply(cm) => assert_eq!(value(&cm), "2"),
        other => panic!("unexpected {other:?}"),
    }

    // A cut, with changes made while nobody watches: resumed, none lost, no relist.
    emulator.cut_watches();
    emulator.patch("ConfigMap", "shop", "a", |o| o["data"]["k"] = json!("3"));
    emulator.delete("ConfigMap", "shop", "b");
    match next!().unwrap() {
        Event::Apply(cm) => assert_eq!(value(&cm), "3"),
        other => panic!("unexpected {other:?}"),
    }
    match next!().unwrap() {
        Event::Delete(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("b")),
        other => panic!("unexpected {other:?}"),
    }
    assert!(emulator.watches_started() >= 2);

    // Expiry: the log forgets the version the watcher would resume from → relist.
    emulator.set_watch_history(1);
    emulator.cut_watches();
    emulator.patch("ConfigMap", "shop", "a", |o| o["data"]["k"] = json!("4"));
    emulator.patch("ConfigMap", "other", "c", |o| o["data"]["k"] = json!("4"));
    emulator.patch("ConfigMap", "other", "c", |o| o["data"]["k"] = json!("5"));
    let mut relisted = false;
    let mut seen_four = false;
    loop {
        match next!() {
            Err(watcher::Error::WatchError(status)) => assert_eq!(status.code, 410),
            Err(other) => panic!("unexpected {other:?}"),
            Ok(Event::Init) => relisted = true,
            Ok(Event::InitApply(cm)) if cm.metadata.name.as_deref() == Some("a") => {
                seen_four = value(&cm) == "4"
            }
            Ok(Event::InitDone) => break,
            Ok(_) => {}
        }
    }
    assert!(relisted && seen_four);
}
