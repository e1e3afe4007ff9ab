//! The `/api/v1` shapes that differ in `[cluster] mode = "kubernetes"`,
//! from real replicas that share their instances through Leases in the
//! in-repo API emulator: the merged list with its `cluster` object and each
//! row's `owner`, an instance's routes answered by its owner, what a
//! replica owns (`/api/v1/cluster/status?owned=true`), and the 421 that
//! triggers and acks answer on a replica that does not own the instance.
//!
//! Three members: replicas `a` and `b`, and `z`, a Lease whose advertised
//! URL refuses connections, so the merged view names an unreachable member
//! every time. A fourth replica, `c`, has no API to reach: it never learns
//! a member, so its 421 names no owner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driftwatch::cluster::{rendezvous, Member};
use driftwatch::model::instance::InstanceId;
use kube_emulator::KubeEmulator;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{call, describe, golden, API_TOKEN};
use crate::common;

const NAMESPACE: &str = "driftwatch";
const PROBES: usize = 9;
/// The member that holds a Lease but never answers.
const SILENT: &str = "z";

/// A replica running in this process, as `driftwatch run` would.
struct Replica {
    base: String,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn kubeconfig(dir: &Path, identity: &str, server: &str) -> PathBuf {
    let path = dir.join(format!("kubeconfig-{identity}"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {server}\n\
             users:\n- name: driftwatch\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n\
             \x20   user: driftwatch\n    namespace: {NAMESPACE}\ncurrent-context: emulator\n"
        ),
    )
    .unwrap();
    path
}

/// Starts replica `identity`, advertising the address it listens on and
/// reaching the Kubernetes API at `server`.
async fn start(
    dir: &Path,
    identity: &str,
    server: &str,
    repo: &Path,
    shutdown: &CancellationToken,
) -> Replica {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let token = dir.join("api-token");
    std::fs::write(&token, format!("{API_TOKEN}\n")).unwrap();
    let mut text = format!(
        "state_dir = \"{state}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\napi_token_file = \"{token}\"\n\n\
         [[repo]]\nname = \"infra\"\nurl = \"file://{repo}\"\npoll_interval = \"1h\"\n\n\
         [cluster]\nmode = \"kubernetes\"\nidentity = \"{identity}\"\nnamespace = \"{NAMESPACE}\"\n\
         advertise_url = \"{base}\"\nlease_duration = \"2s\"\nrenew_interval = \"500ms\"\n\
         kubeconfig = \"{kubeconfig}\"\n",
        state = dir.join(format!("state-{identity}")).display(),
        token = token.display(),
        repo = repo.display(),
        kubeconfig = kubeconfig(dir, identity, server).display(),
    );
    for n in 0..PROBES {
        text.push_str(&format!(
            "\n[[probe]]\nname = \"p{n}\"\nlayer = \"command\"\nrepo = \"infra\"\nschedule = \"none\"\n\
             command = [\"sh\", \"check.sh\"]\n"
        ));
    }
    let path = dir.join(format!("{identity}.toml"));
    std::fs::write(&path, text).unwrap();
    let config = driftwatch::app::load_config(&path).expect("the replica's config loads");
    let daemon = driftwatch::app::build(config, true).unwrap();
    let running = tokio::spawn(driftwatch::app::run_with_listener(
        daemon,
        listener,
        shutdown.clone(),
    ));
    Replica { base, running }
}

/// A Lease that stays live for an hour, held by a member nobody can reach.
fn silent_member(emulator: &KubeEmulator, url: &str) {
    emulator.apply(&format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: driftwatch-{SILENT}\n  namespace: {NAMESPACE}\n\
         \x20 labels: {{app.kubernetes.io/name: driftwatch, driftwatch.dev/member: \"true\"}}\n\
         \x20 annotations: {{driftwatch.dev/advertise-url: \"{url}\"}}\n\
         spec:\n  holderIdentity: {SILENT}\n  leaseDurationSeconds: 3600\n  renewTime: \"2026-01-01T00:00:00.000000Z\"\n"
    ));
}

/// Probe name → the member rendezvous hashing gives it over a, b and z.
fn owners() -> BTreeMap<String, String> {
    let members: Vec<Member> = ["a", "b", SILENT]
        .iter()
        .map(|identity| Member {
            identity: identity.to_string(),
            url: String::new(),
        })
        .collect();
    (0..PROBES)
        .map(|n| {
            let name = format!("p{n}");
            let owner = rendezvous::owner(&members, &InstanceId::new(&name, ""))
                .unwrap()
                .identity
                .clone();
            (name, owner)
        })
        .collect()
}

async fn json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let (code, body) = call(client, "GET", url, &[], None).await;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Polls `check` every 100 ms for up to 90 s.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn members_seen(list: &Value) -> usize {
    list["cluster"]["members"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_v1_cluster_shapes_match_the_golden_file() {
    if !common::have_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = dir.join("work");
    common::init_repo(&repo, &[("check.sh", "echo drift >&2\nexit 2\n")]);
    let owners = owners();
    let owned_by = |identity: &str| -> Vec<String> {
        owners
            .iter()
            .filter(|(_, owner)| *owner == identity)
            .map(|(probe, _)| probe.clone())
            .collect()
    };
    let (on_b, on_z) = (owned_by("b"), owned_by(SILENT));
    let shown = owners.values().filter(|o| *o != SILENT).count();
    assert!(
        !owned_by("a").is_empty() && !on_b.is_empty() && !on_z.is_empty(),
        "every member should own a probe of p0..p{}: {owners:?}",
        PROBES - 1
    );

    let emulator = KubeEmulator::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    silent_member(&emulator, &nowhere);
    let shutdown = CancellationToken::new();
    let a = start(dir, "a", &emulator.url(), &repo, &shutdown).await;
    let b = start(dir, "b", &emulator.url(), &repo, &shutdown).await;
    let c = start(dir, "c", &nowhere, &repo, &shutdown).await;
    let client = reqwest::Client::new();
    let bearer = format!("Bearer {API_TOKEN}");
    let auth = [("authorization", bearer.as_str())];

    for replica in [&a, &b] {
        let url = format!("{}/api/v1/probes", replica.base);
        wait_until("every replica to see the three members", || async {
            json(&client, &url)
                .await
                .is_some_and(|l| members_seen(&l) == 3)
        })
        .await;
    }
    // A run on b after it owns the instance, so that b's history of it (the
    // relayed runs below) always has a row.
    let relayed = &on_b[0];
    let url = format!("{}/api/v1/probes/{relayed}/run", b.base);
    wait_until("b to accept a run of its instance", || async {
        call(&client, "POST", &url, &auth, None).await.0 == 202
    })
    .await;
    let url = format!("{}/api/v1/probes/{relayed}/runs", b.base);
    wait_until("b's run to be in its history", || async {
        json(&client, &url).await.is_some_and(|r| {
            r["runs"]
                .as_array()
                .is_some_and(|runs| runs.iter().any(|run| run["trigger"] == "manual"))
        })
    })
    .await;
    // The merged view: every instance a and b own has its verdict, z's are
    // left out and z is named unreachable.
    let url = format!("{}/api/v1/probes", a.base);
    wait_until("a's merged view of the cluster", || async {
        json(&client, &url).await.is_some_and(|list| {
            let rows = list["probes"].as_array().cloned().unwrap_or_default();
            rows.len() == shown
                && rows.iter().all(|row| row["status"] == "drifted")
                && list["cluster"]["unreachable"]
                    .as_array()
                    .is_some_and(|u| u.len() == 1)
        })
    })
    .await;
    let url = format!("{}/api/v1/probes/p0/run", c.base);
    wait_until("c to know its instances", || async {
        call(&client, "POST", &url, &auth, None).await.0 == 421
    })
    .await;

    let mut text = String::new();
    let ack = serde_json::json!({"by": "alice", "reason": "vendor hotfix", "expires": "4h"});
    let ack = ack.to_string().into_bytes();
    let gets = [
        ("/api/v1/probes", "/api/v1/probes".to_string()),
        (
            "/api/v1/probes?scope=local",
            "/api/v1/probes?scope=local".into(),
        ),
        (
            "/api/v1/probes/{id} (owned by another replica: its answer)",
            format!("/api/v1/probes/{relayed}"),
        ),
        (
            "/api/v1/probes/{id}/runs (owned by another replica: its answer)",
            format!("/api/v1/probes/{relayed}/runs"),
        ),
        (
            "/api/v1/probes/{id} (its owner does not answer: this replica's view)",
            format!("/api/v1/probes/{}", on_z[0]),
        ),
        (
            "/api/v1/cluster/status?owned=true",
            "/api/v1/cluster/status?owned=true".into(),
        ),
    ];
    for (route, path) in gets {
        let (code, body) = call(&client, "GET", &format!("{}{path}", a.base), &[], None).await;
        text.push_str(&describe("GET", route, code, &body));
    }
    let posts = [
        (
            "/api/v1/probes/{id}/run (owned by another replica)",
            format!("{}/api/v1/probes/{relayed}/run", a.base),
            None,
        ),
        (
            "/api/v1/probes/{id}/run (no live member)",
            format!("{}/api/v1/probes/p0/run", c.base),
            None,
        ),
        (
            "/api/v1/probes/{id}/acks (owned by another replica)",
            format!("{}/api/v1/probes/{relayed}/acks", a.base),
            Some(ack.clone()),
        ),
        (
            "/api/v1/probes/{id}/acks?dry_run=true (owned by another replica)",
            format!("{}/api/v1/probes/{relayed}/acks?dry_run=true", a.base),
            Some(ack),
        ),
    ];
    for (route, url, body) in posts {
        let (code, answer) = call(&client, "POST", &url, &auth, body).await;
        assert_eq!(code, 421, "{route}: {answer}");
        text.push_str(&describe("POST", route, code, &answer));
    }

    shutdown.cancel();
    for replica in [a, b, c] {
        replica.running.await.unwrap().unwrap();
    }
    golden(
        "tests/golden/api-v1-cluster.shapes",
        &text,
        "The shape of the /api/v1 answers in cluster mode",
    );
}
