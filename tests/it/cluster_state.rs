//! Scale-out state: a gained instance takes over its previous owner's
//! status (over HTTP while it is up, from its ConfigMap when it is gone),
//! and any replica's page and API show the whole cluster.
//!
//! Each replica is a real daemon (`app::build` + `run_with_listener`) on a
//! runtime of its own, serving real HTTP on port 0; "killing" one drops its
//! runtime, so nothing of it answers any more. Membership is driven through
//! `Cluster::set_members` with the replicas' real URLs, as the Lease
//! membership task does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driftwatch::cluster::{Cluster, Member};
use driftwatch::handover::StatusStore;
use driftwatch::model::instance::InstanceId;
use kube_emulator::KubeEmulator;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::daemon::reqwest::blocking_get;
use crate::common::daemon::Daemon;
use crate::common::init_repo;

const PROBES: usize = 8;
const NAMESPACE: &str = "driftwatch";

/// A repo with `PROBES` command probes that all report drift.
fn repo_and_config(root: &Path) -> PathBuf {
    let work = root.join("work");
    let mut files = Vec::new();
    for n in 0..PROBES {
        files.push((
            format!("p{n}/check.sh"),
            "echo drift >&2\nexit 2\n".to_string(),
        ));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    init_repo(&work, &files);
    let mut config = format!(
        r#"state_dir = "state"

[server]
listen = "127.0.0.1:0"

[[repo]]
name = "infra"
url = "file://{}"
branch = "main"
poll_interval = "1h"
"#,
        work.display()
    );
    for n in 0..PROBES {
        config.push_str(&format!(
            "\n[[probe]]\nname = \"p{n}\"\nlayer = \"command\"\npath = \"p{n}\"\nschedule = \"none\"\ncommand = [\"sh\", \"check.sh\"]\n"
        ));
    }
    let path = root.join("driftwatch.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// One replica: a daemon on its own runtime.
struct Replica {
    identity: String,
    base: String,
    cluster: Cluster,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
}

impl Replica {
    /// Starts replica `identity` with its own state directory (a copy of
    /// the config next to it) and, when given, its status ConfigMap.
    fn start(dir: &Path, config: &Path, identity: &str, kube: Option<&str>) -> Replica {
        std::fs::create_dir_all(dir).unwrap();
        let own_config = dir.join("driftwatch.toml");
        std::fs::copy(config, &own_config).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cluster = Cluster::sharded(identity);
        let shutdown = CancellationToken::new();
        let base = runtime.block_on(async {
            let config = driftwatch::app::load_config(&own_config).expect("config loads");
            let mut daemon = driftwatch::app::build(config, true).unwrap();
            daemon.context.cluster = cluster.clone();
            if let Some(url) = kube {
                let client =
                    kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
                daemon.status_store = Some(std::sync::Arc::new(StatusStore::new(
                    client, NAMESPACE, identity,
                )));
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(driftwatch::app::run_with_listener(
                daemon,
                listener,
                shutdown.clone(),
            ));
            base
        });
        Replica {
            identity: identity.to_string(),
            base,
            cluster,
            runtime: Some(runtime),
            shutdown,
        }
    }

    fn member(&self) -> Member {
        Member {
            identity: self.identity.clone(),
            url: self.base.clone(),
        }
    }

    fn get_json(&self, path: &str) -> Option<Value> {
        let (code, body) = blocking_get(&format!("{}{path}", self.base))?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    fn get_text(&self, path: &str) -> String {
        blocking_get(&format!("{}{path}", self.base)).unwrap().1
    }

    /// Drops the runtime without a clean shutdown: every task of the
    /// replica stops where it is, its listener closes.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(10));
        }
    }
}

/// The status line and headers of a GET, lower-cased.
fn head_of(replica: &Replica, path: &str) -> String {
    use std::io::{Read, Write};
    let address = replica.base.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_string();
    let rest: Vec<String> = lines.map(str::to_ascii_lowercase).collect();
    format!("{status}\n{}", rest.join("\n"))
}

fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The local view's drifted instances: id → drifted_since.
fn drifted_since(replica: &Replica) -> BTreeMap<String, String> {
    replica
        .get_json("/api/v1/probes?scope=local")
        .map(|list| {
            list["probes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["status"] == "drifted")
                .map(|p| {
                    (
                        p["id"].as_str().unwrap().to_string(),
                        p["drifted_since"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The instances `identity` owns among `members`.
fn owned_by(identity: &str, members: &[Member]) -> Vec<String> {
    let cluster = Cluster::sharded(identity);
    cluster.set_members(members.to_vec());
    (0..PROBES)
        .map(|n| format!("p{n}"))
        .filter(|id| cluster.owns(&InstanceId::parse(id)))
        .collect()
}

/// History keeps milliseconds.
fn millis(value: &Value) -> i64 {
    millis_of(value.as_str().expect("a timestamp"))
}

fn millis_of(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

fn episodes(replica: &Replica, id: &str) -> Vec<Value> {
    replica
        .get_json(&format!("/api/v1/episodes?probe={id}"))
        .unwrap()["episodes"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_drifted_instance_moves_while_its_owner_is_up_and_keeps_its_episode() {
    let tmp = tempfile::tempdir().unwrap();
    let config = repo_and_config(tmp.path());
    let a = Replica::start(&tmp.path().join("a"), &config, "a", None);
    a.cluster.set_members(vec![a.member()]);
    let before = wait_until("a to see every probe drift", || {
        let seen = drifted_since(&a);
        (seen.len() == PROBES).then_some(seen)
    });

    // b joins: it takes its share, with a still up.
    let b = Replica::start(&tmp.path().join("b"), &config, "b", None);
    let members = vec![a.member(), b.member()];
    b.cluster.set_members(vec![a.member()]);
    a.cluster.set_members(members.clone());
    b.cluster.set_members(members.clone());
    let moved = owned_by("b", &members);
    assert!(!moved.is_empty() && moved.len() < PROBES, "{moved:?}");
    wait_until("b to show a's drifted-since for what it gained", || {
        let seen = drifted_since(&b);
        moved
            .iter()
            .all(|id| seen.get(id) == before.get(id))
            .then_some(())
    });
    for id in &moved {
        let found = wait_until("b's history to hold the episode", || {
            let found = episodes(&b, id);
            (!found.is_empty()).then_some(found)
        });
        assert_eq!(found.len(), 1, "{id}: one episode on b: {found:?}");
        assert_eq!(
            millis(&found[0]["started_at"]),
            millis_of(&before[id]),
            "{id}"
        );
        assert!(found[0].get("ended_at").is_none());
    }

    // One page for the whole cluster, from either member: every instance
    // once, with its owner.
    for replica in [&a, &b] {
        let list = wait_until("the merged list", || {
            let list = replica.get_json("/api/v1/probes")?;
            let probes = list["probes"].as_array()?;
            (probes.len() == PROBES && probes.iter().all(|p| p["owner"].is_string()))
                .then_some(list)
        });
        for probe in list["probes"].as_array().unwrap() {
            let id = probe["id"].as_str().unwrap();
            let owner = if moved.iter().any(|m| m == id) {
                "b"
            } else {
                "a"
            };
            assert_eq!(probe["owner"], owner, "{id}");
            assert_eq!(
                probe["drifted_since"].as_str(),
                before.get(id).map(String::as_str)
            );
        }
        assert_eq!(list["counts"]["drifted"], PROBES);
        assert_eq!(list["cluster"]["members"].as_array().unwrap().len(), 2);
        assert_eq!(list["cluster"]["unreachable"], serde_json::json!([]));
        let page = replica.get_text("/");
        for n in 0..PROBES {
            assert_eq!(
                page.matches(&format!("data-probe=\"p{n}\"")).count(),
                1,
                "p{n}"
            );
        }
        // The local view stays local.
        let local = replica.get_json("/api/v1/probes?scope=local").unwrap();
        assert!(local.get("cluster").is_none());
    }

    // An instance's own routes answer from its owner, wherever asked.
    let id = &moved[0];
    for path in [
        format!("/api/v1/probes/{id}"),
        format!("/api/v1/probes/{id}/runs"),
        format!("/probes/{id}"),
    ] {
        let head = head_of(&a, &path);
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(head.contains("x-driftwatch-owner: b"), "{path}: {head}");
        assert!(!head_of(&b, &path).contains("x-driftwatch-owner"), "{path}");
    }
    let head = head_of(&a, &format!("/probes/{id}"));
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("content-type: text/html"), "{head}");

    // A member that does not answer is named, on the page and in the API.
    let gone = Member {
        identity: "c".into(),
        url: format!("http://127.0.0.1:{}", crate::common::free_port()),
    };
    let three = vec![a.member(), b.member(), gone.clone()];
    a.cluster.set_members(three.clone());
    b.cluster.set_members(three);
    let list = wait_until("c named unreachable", || {
        let list = a.get_json("/api/v1/probes")?;
        (list["cluster"]["unreachable"].as_array()?.len() == 1).then_some(list)
    });
    assert_eq!(list["cluster"]["unreachable"][0]["identity"], "c");
    assert_eq!(list["cluster"]["unreachable"][0]["reason"], "connect");
    // c's instances are missing, counted, and nothing stands in for them.
    let silent = owned_by("c", &[a.member(), b.member(), gone.clone()]);
    assert!(!silent.is_empty(), "c owns part of the {PROBES} probes");
    assert_eq!(list["cluster"]["unreachable"][0]["instances"], silent.len());
    let listed: Vec<&str> = list["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), PROBES - silent.len(), "{listed:?}");
    assert!(silent.iter().all(|id| !listed.contains(&id.as_str())));
    assert_eq!(list["counts"]["pending"], 0);
    let page = a.get_text("/");
    assert!(page.contains("id=\"unreachable\""), "{page}");
    assert!(page.contains("<b>c</b>"), "{page}");
}

#[test]
fn a_killed_owner_hands_over_through_its_configmap() {
    let tmp = tempfile::tempdir().unwrap();
    let config = repo_and_config(tmp.path());
    let kube_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emulator = kube_runtime.block_on(KubeEmulator::start());
    let mut a = Replica::start(&tmp.path().join("a"), &config, "a", Some(&emulator.url()));
    a.cluster.set_members(vec![a.member()]);
    let before = wait_until("a to see every probe drift", || {
        let seen = drifted_since(&a);
        (seen.len() == PROBES).then_some(seen)
    });
    wait_until("a's status ConfigMap", || {
        let object = emulator.get("ConfigMap", NAMESPACE, "driftwatch-status-a")?;
        let doc: Value = serde_json::from_str(object["data"]["status.json"].as_str()?).ok()?;
        let drifted = doc["instances"]
            .as_array()?
            .iter()
            .filter(|i| i["drifted"] == true)
            .count();
        (drifted == PROBES).then_some(())
    });

    // a dies without a word; b starts and, a's Lease expired, owns all.
    let dead = a.member();
    a.kill();
    let b = Replica::start(&tmp.path().join("b"), &config, "b", Some(&emulator.url()));
    b.cluster.set_members(vec![dead, b.member()]);
    b.cluster.set_members(vec![b.member()]);
    wait_until("b to show a's drifted-since for every instance", || {
        (drifted_since(&b) == before).then_some(())
    });
    for id in before.keys() {
        let found = episodes(&b, id);
        assert_eq!(found.len(), 1, "{id}: {found:?}");
        assert_eq!(
            millis(&found[0]["started_at"]),
            millis_of(&before[id]),
            "{id}"
        );
    }
    drop(b);
    drop(emulator);
}

#[test]
fn the_status_configmap_is_capped_written_on_change_and_conflicts_are_real() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let emulator = KubeEmulator::start().await;
        let client =
            kube::Client::try_from(kube::Config::new(emulator.url().parse().unwrap())).unwrap();
        let store = StatusStore::new(client.clone(), NAMESPACE, "a").with_max_bytes(8 * 1024);
        let mut statuses = Vec::new();
        for n in 0..200 {
            let id = InstanceId::new(format!("probe-{n:03}"), "");
            let outcome = if n % 50 == 0 {
                driftwatch::model::outcome::Outcome::drifted(vec![
                    driftwatch::model::outcome::ResourceChange::new("a", "update"),
                ])
            } else {
                driftwatch::model::outcome::Outcome::in_sync()
            };
            let report = crate::common::report(&id.probe, "command", Ok(outcome));
            let mut status = driftwatch::state::ProbeStatus::new(&id, "command");
            status.apply(&report);
            statuses.push(status);
        }
        let written = store.write(&statuses).await.unwrap().expect("first write");
        assert!(written.dropped > 0 && written.instances.len() < 200);
        assert_eq!(written.instances.len() + written.dropped, 200);
        assert!(
            written.instances[..4].iter().all(|s| s.drifted),
            "drifted ones kept first"
        );
        let object = emulator
            .get("ConfigMap", NAMESPACE, "driftwatch-status-a")
            .unwrap();
        let text = object["data"]["status.json"].as_str().unwrap();
        assert!(text.len() <= 8 * 1024, "{}", text.len());
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/component"],
            "driftwatch-status"
        );

        let writes = emulator.writes();
        assert!(
            store.write(&statuses).await.unwrap().is_none(),
            "unchanged: not written"
        );
        assert_eq!(emulator.writes(), writes);

        // A second replica's document is listed too.
        let other = StatusStore::new(client.clone(), NAMESPACE, "b");
        other.write(&statuses[..3]).await.unwrap();
        let sets = store.read_all().await.unwrap();
        let identities: Vec<&str> = sets.iter().map(|s| s.identity.as_str()).collect();
        assert_eq!(identities.len(), 2, "{identities:?}");

        // The emulator refuses a replace from a stale read, as a real API server does.
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, NAMESPACE);
        let stale = api.get("driftwatch-status-b").await.unwrap();
        other.write(&statuses[..4]).await.unwrap();
        let err = api
            .replace("driftwatch-status-b", &Default::default(), &stale)
            .await
            .unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref status) if status.code == 409),
            "{err:?}"
        );
        // The store itself reads again and wins.
        other.write(&statuses[..5]).await.unwrap().expect("written");
    });
}

/// Real `driftwatch run` processes in `kubernetes` mode, sharing the
/// emulator's Leases and ConfigMaps and one git repo.
struct Sharded {
    tmp: tempfile::TempDir,
    base: String,
    kubeconfig: PathBuf,
    emulator: KubeEmulator,
    _runtime: tokio::runtime::Runtime,
}

/// The Lease duration of the process tests.
const LEASE: Duration = Duration::from_secs(3);

impl Sharded {
    fn new() -> Sharded {
        let tmp = tempfile::tempdir().unwrap();
        let config = repo_and_config(tmp.path());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let emulator = runtime.block_on(KubeEmulator::start());
        let kubeconfig = emulator.write_kubeconfig(tmp.path());
        Sharded {
            base: std::fs::read_to_string(config).unwrap(),
            tmp,
            kubeconfig,
            emulator,
            _runtime: runtime,
        }
    }

    /// Starts replica `identity` with an empty state directory of its own.
    fn start(&self, identity: &str) -> Daemon {
        let port = crate::common::free_port();
        let dir = self.tmp.path().join(identity);
        std::fs::create_dir_all(&dir).unwrap();
        let text = self
            .base
            .replace(
                "state_dir = \"state\"",
                &format!("state_dir = \"{}\"", dir.join("state").display()),
            )
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
            + &format!(
                "\n[cluster]\nmode = \"kubernetes\"\nidentity = \"{identity}\"\nnamespace = \"{NAMESPACE}\"\n\
                 advertise_url = \"http://127.0.0.1:{port}\"\nlease_duration = \"{}s\"\nrenew_interval = \"500ms\"\n\
                 kubeconfig = \"{}\"\n",
                LEASE.as_secs(),
                self.kubeconfig.display()
            );
        let path = dir.join("driftwatch.toml");
        std::fs::write(&path, text).unwrap();
        Daemon::start(&path, &dir.join("log"))
    }

    /// The instance ids in `identity`'s status ConfigMap.
    fn stored(&self, identity: &str) -> Vec<String> {
        let Some(object) =
            self.emulator
                .get("ConfigMap", NAMESPACE, &StatusStore::name_of(identity))
        else {
            return Vec::new();
        };
        let doc: Value =
            serde_json::from_str(object["data"]["status.json"].as_str().unwrap()).unwrap();
        doc["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["probe"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A replica's identity: the name of its directory.
fn identity_of(replica: &Daemon) -> String {
    replica
        .log
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Instance → (owner's port, drifted_since) from the owners' local views.
fn owned_now(replicas: &[&Daemon]) -> BTreeMap<String, (u16, String)> {
    let mut owned = BTreeMap::new();
    for replica in replicas {
        let Some((200, body)) = replica.get("/api/v1/probes?scope=local") else {
            continue;
        };
        let list: Value = serde_json::from_str(&body).unwrap();
        for probe in list["probes"].as_array().unwrap() {
            if probe["scope"] == "instance" && probe["owner"].is_string() {
                let since = probe["drifted_since"].as_str().unwrap_or("").to_string();
                owned.insert(
                    probe["id"].as_str().unwrap().to_string(),
                    (replica.port, since),
                );
            }
        }
    }
    owned
}

/// What `owned` should be: every instance on the owner rendezvous hashing
/// gives it over the running replicas.
fn owned_as_expected(
    replicas: &[&Daemon],
    owned: &BTreeMap<String, (u16, String)>,
) -> BTreeMap<String, (u16, String)> {
    let members: Vec<Member> = replicas
        .iter()
        .map(|r| Member {
            identity: identity_of(r),
            url: r.port.to_string(),
        })
        .collect();
    (0..PROBES)
        .map(|n| {
            let id = format!("p{n}");
            let owner =
                driftwatch::cluster::rendezvous::owner(&members, &InstanceId::parse(&id)).unwrap();
            let since = owned
                .get(&id)
                .map(|(_, since)| since.clone())
                .unwrap_or_default();
            (id, (owner.url.parse().unwrap(), since))
        })
        .collect()
}

fn logs(replicas: &[&Daemon]) -> String {
    replicas
        .iter()
        .map(|r| std::fs::read_to_string(&r.log).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n-----\n")
}

/// Waits until the owners rendezvous hashing names over `replicas` show
/// every instance drifted; returns instance → drifted_since.
fn wait_for_drifted_coverage(replicas: &[&Daemon]) -> BTreeMap<String, String> {
    wait_for_drifted_coverage_once(replicas);
    // Replicas that start together may each run an instance before their
    // membership settles; the handover then moves drifted-since back to the
    // earliest observation within seconds. Compare with the settled value.
    crate::common::settled(
        "drifted-since across the replicas",
        Duration::from_secs(3),
        Duration::from_secs(60),
        || wait_for_drifted_coverage_once(replicas),
    )
}

fn wait_for_drifted_coverage_once(replicas: &[&Daemon]) -> BTreeMap<String, String> {
    let start = Instant::now();
    loop {
        let owned = owned_now(replicas);
        if owned == owned_as_expected(replicas, &owned)
            && owned.values().all(|(_, since)| !since.is_empty())
        {
            return owned
                .into_iter()
                .map(|(id, (_, since))| (id, since))
                .collect();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no drifted coverage: {owned:?}\n{}",
            logs(replicas)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `watch` until every instance is on the owner rendezvous hashing
/// names over `replicas`; panics with `what` and the logs after a minute.
fn wait_covered(
    replicas: &[Daemon],
    watch: &mut impl FnMut(&[&Daemon]) -> BTreeMap<String, (u16, String)>,
    what: &str,
) {
    let start = Instant::now();
    loop {
        let refs: Vec<&Daemon> = replicas.iter().collect();
        let owned = watch(&refs);
        if owned == owned_as_expected(&refs, &owned) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}:\n{}",
            logs(&refs)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each instance on its owner: drifted since `before`, one open episode
/// that started then.
fn assert_handed_over(
    replicas: &[&Daemon],
    before: &BTreeMap<String, String>,
    departed: &[&Daemon],
) {
    let waited = Instant::now();
    let after = loop {
        let owned = owned_now(replicas);
        if owned.len() == PROBES
            && owned.iter().all(|(id, (_, since))| {
                !since.is_empty() && millis_of(since) == millis_of(&before[id])
            })
        {
            break owned;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "drifted-since changed: before {before:?}, now {owned:?}\n{}\n===== departed:\n{}",
            logs(replicas),
            logs(departed)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (id, (port, _)) in &after {
        let owner = replicas.iter().find(|r| r.port == *port).unwrap();
        let (_, body) = owner.get(&format!("/api/v1/episodes?probe={id}")).unwrap();
        let found: Value = serde_json::from_str(&body).unwrap();
        let found = found["episodes"].as_array().unwrap();
        assert_eq!(found.len(), 1, "{id}: {found:?}\n{}", logs(replicas));
        assert_eq!(
            millis(&found[0]["started_at"]),
            millis_of(&before[id]),
            "{id}"
        );
        assert!(found[0].get("ended_at").is_none(), "{id}");
    }
}

/// The rolling restart of the issue, with real processes and real Leases in
/// the emulator: three replicas, then each replaced in turn as a Deployment
/// does it (the new pod, with a new name and an empty state directory,
/// starts and takes its share first; then the old one shuts down cleanly).
/// Every instance drifts throughout. Polled all along: no instance goes
/// unowned for longer than the Lease duration; at the end every owner shows
/// the original drifted-since and its history holds one episode per
/// instance, started then.
#[test]
fn a_rolling_restart_keeps_drifted_since_and_every_episode_whole() {
    let sharded = Sharded::new();
    let mut replicas = vec![sharded.start("a"), sharded.start("b"), sharded.start("c")];
    let before = wait_for_drifted_coverage(&replicas.iter().collect::<Vec<_>>());
    let mut longest_gap = Duration::ZERO;
    let mut unowned_since: BTreeMap<String, Instant> = BTreeMap::new();
    let mut watch = |replicas: &[&Daemon]| {
        let owned = owned_now(replicas);
        let now = Instant::now();
        for n in 0..PROBES {
            let id = format!("p{n}");
            if owned.contains_key(&id) {
                if let Some(since) = unowned_since.remove(&id) {
                    longest_gap = longest_gap.max(now.duration_since(since));
                }
            } else {
                let since = *unowned_since.entry(id).or_insert(now);
                longest_gap = longest_gap.max(now.duration_since(since));
            }
        }
        owned
    };
    let mut departed = Vec::new();
    for (old, new) in [("a", "a2"), ("b", "b2"), ("c", "c2")] {
        replicas.push(sharded.start(new));
        // The new pod is up and owns its share (rendezvous over all four,
        // maybe nothing) before the old one goes.
        wait_covered(
            &replicas,
            &mut watch,
            &format!("{new} never took its share"),
        );
        let index = replicas
            .iter()
            .position(|r| r.log.parent().unwrap().ends_with(old))
            .unwrap();
        let mut leaving = replicas.remove(index);
        assert!(leaving.terminate().success(), "{old} shuts down cleanly");
        departed.push(leaving);
        // Until the survivors cover everything again.
        wait_covered(
            &replicas,
            &mut watch,
            &format!("not covered after {old} left"),
        );
    }
    assert!(
        longest_gap <= LEASE,
        "an instance went unowned for {longest_gap:?} (Lease duration {LEASE:?})"
    );

    // Every instance, on its new owner: the original drifted-since, one episode.
    let refs: Vec<&Daemon> = replicas.iter().collect();
    assert_handed_over(&refs, &before, &departed.iter().collect::<Vec<_>>());
}

/// A replica killed without a word (SIGKILL: no last ConfigMap write, no
/// Lease release): once its Lease stops changing, the survivors own its
/// instances with the drifted-since it had, taken from its ConfigMap, and
/// one episode each.
#[test]
fn a_killed_replica_hands_over_with_drifted_since_unchanged() {
    let sharded = Sharded::new();
    let mut replicas = vec![sharded.start("a"), sharded.start("b"), sharded.start("c")];
    let refs: Vec<&Daemon> = replicas.iter().collect();
    let before = wait_for_drifted_coverage(&refs);
    let owned = owned_now(&refs);
    // The victim: the replica owning the most, once its ConfigMap holds them.
    let victim = replicas
        .iter()
        .enumerate()
        .max_by_key(|(_, r)| owned.values().filter(|(port, _)| *port == r.port).count())
        .map(|(index, _)| index)
        .unwrap();
    let identity = identity_of(&replicas[victim]);
    let mut mine: Vec<String> = owned
        .iter()
        .filter(|(_, (port, _))| *port == replicas[victim].port)
        .map(|(id, _)| id.clone())
        .collect();
    mine.sort();
    assert!(!mine.is_empty());
    wait_until("the victim's ConfigMap to hold what it owns", || {
        let mut stored = sharded.stored(&identity);
        stored.sort();
        (stored == mine).then_some(())
    });
    let killed = replicas.remove(victim);
    drop(killed);
    let refs: Vec<&Daemon> = replicas.iter().collect();
    let waited = Instant::now();
    loop {
        let owned = owned_now(&refs);
        if owned == owned_as_expected(&refs, &owned) {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "survivors never took over: {owned:?}\n{}",
            logs(&refs)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_handed_over(&refs, &before, &[]);
    // The survivors count what they took over, and the victim's silence.
    let total = |metric: &str| -> f64 {
        refs.iter()
            .filter_map(|r| r.metric(metric))
            .map(|v| v.parse::<f64>().unwrap())
            .sum()
    };
    assert!(
        total("driftwatch_cluster_handover_adopted_total ") >= mine.len() as f64,
        "adopted at least the victim's {} instances",
        mine.len()
    );
    assert!(total("driftwatch_cluster_handover_source_errors_total{source=\"peer\"} ") >= 1.0);
    assert_eq!(total("driftwatch_cluster_status_dropped_instances "), 0.0);
}

/// Run-time acknowledgements move with their instance (issue 22): made on
/// the owner, they are on the new owner after the handover, still covering
/// the drift; the old owner sends new ones to the new owner (421).
#[test]
fn an_acknowledgement_moves_with_its_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let script = "echo '{\"resources\": [{\"subject\": \"file/x\", \"action\": \"changed\", \"diff\": \"live 1\"}]}'\nexit 2\n";
    let files: Vec<(String, &str)> = (0..PROBES)
        .map(|n| (format!("p{n}/check.sh"), script))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), *c)).collect();
    init_repo(&work, &files);
    std::fs::write(tmp.path().join("token"), "t0ken").unwrap();
    let mut text = format!(
        "state_dir = \"state\"\n\n[server]\nlisten = \"127.0.0.1:0\"\napi_token_file = \"{}\"\n\n[[repo]]\nname = \"infra\"\nurl = \"file://{}\"\nbranch = \"main\"\npoll_interval = \"1h\"\n",
        tmp.path().join("token").display(),
        work.display()
    );
    for n in 0..PROBES {
        text.push_str(&format!(
            "\n[[probe]]\nname = \"p{n}\"\nlayer = \"command\"\npath = \"p{n}\"\nschedule = \"none\"\noutput = \"json\"\ncommand = [\"sh\", \"check.sh\"]\n"
        ));
    }
    let config = tmp.path().join("driftwatch.toml");
    std::fs::write(&config, text).unwrap();
    let a = Replica::start(&tmp.path().join("a"), &config, "a", None);
    a.cluster.set_members(vec![a.member()]);
    wait_until("a to see every probe drift", || {
        (drifted_since(&a).len() == PROBES).then_some(())
    });
    // Which instances b will take (ownership depends on identities only).
    let future_b = Member {
        identity: "b".into(),
        url: "http://unused".into(),
    };
    let moving = owned_by("b", &[a.member(), future_b]);
    let id = moving.first().expect("b takes something").clone();
    let post = |replica: &Replica, id: &str| {
        crate::common::daemon::reqwest::request_with_body(
            "POST",
            &format!("{}/api/v1/probes/{id}/acks", replica.base),
            "Authorization: Bearer t0ken\r\n",
            r#"{"by": "hank", "reason": "moving day", "expires": "1d"}"#,
        )
        .unwrap()
    };
    let (code, body) = post(&a, &id);
    assert_eq!(code, 201, "{body}");
    let ack: Value = serde_json::from_str(&body).unwrap();

    let b = Replica::start(&tmp.path().join("b"), &config, "b", None);
    let members = vec![a.member(), b.member()];
    b.cluster.set_members(vec![a.member()]);
    a.cluster.set_members(members.clone());
    b.cluster.set_members(members.clone());
    let listed = wait_until("b to hold the ack", || {
        let list = b.get_json("/api/v1/acks")?;
        let found = list["acks"]
            .as_array()?
            .iter()
            .find(|x| x["id"] == ack["id"])
            .cloned()?;
        (found["state"] == "active").then_some(found)
    });
    assert_eq!(listed["by"], "hank");
    assert_eq!(listed["instance"], id.as_str());
    // b exports the instance, acknowledged.
    wait_until("b's metrics to show the ack", || {
        let text = b.get_text("/metrics");
        let line = text.lines().find(|l| {
            l.starts_with("driftwatch_probe_acknowledged_resources{")
                && l.contains(&format!("probe=\"{id}\""))
        })?;
        line.ends_with(" 1").then_some(())
    });
    // a no longer takes acks for it: it names the owner.
    let (code, body) = post(&a, &id);
    assert_eq!(code, 421, "{body}");
    assert!(body.contains(&b.base), "{body}");
}
