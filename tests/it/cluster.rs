//! Scale-out (`[cluster] mode = "kubernetes"`): real daemons sharing
//! command-probe instances through Leases in the API emulator. Every
//! instance is owned by exactly one live member and exported by it alone;
//! a member killed without a clean shutdown has its instances run by the
//! survivors once its Lease stops changing; a member cut off from the API
//! stops owning; a joining member takes only its own share; a clean
//! shutdown releases the Lease at once. The emulator's Lease semantics
//! (409 on a stale resourceVersion, watch, selectors, kubectl discovery)
//! are checked first.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftwatch::cluster::rendezvous;
use driftwatch::cluster::Member;
use driftwatch::model::instance::InstanceId;
use kube_emulator::KubeEmulator;

use crate::common::daemon::Daemon;
use crate::common::{free_port, init_repo};

const NAMESPACE: &str = "driftwatch";
const TOKEN: &str = "cluster-test-token";
const PROBES: usize = 24;

/// The emulator on a runtime of its own, so the test itself can block.
struct Api {
    emulator: KubeEmulator,
    _runtime: tokio::runtime::Runtime,
}

fn start_api() -> Api {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let emulator = runtime.block_on(KubeEmulator::start());
    Api {
        emulator,
        _runtime: runtime,
    }
}

/// A TCP relay to the emulator that can be cut: one replica's own road to
/// the API, so it alone loses it.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut open = open2.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buffer) {
                            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, cut, open }
    }

    /// Drops every connection and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// One replica: a driftwatch process with its own state, port and relay.
struct Replica {
    identity: String,
    daemon: Daemon,
    relay: Relay,
}

fn write_config(dir: &Path, identity: &str, port: u16, relay: u16, repo: &Path) -> PathBuf {
    let probes: String = (0..PROBES)
        .map(|n| format!(
            "[[probe]]\nname = \"p{n}\"\nlayer = \"command\"\nrepo = \"infra\"\nschedule = \"\"\ncommand = [\"sh\", \"check.sh\"]\n\n"
        ))
        .collect();
    write_config_with(dir, identity, port, relay, repo, &probes)
}

fn write_config_with(
    dir: &Path,
    identity: &str,
    port: u16,
    relay: u16,
    repo: &Path,
    probes: &str,
) -> PathBuf {
    let kubeconfig = dir.join(format!("kubeconfig-{identity}"));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: http://127.0.0.1:{relay}\n\
             users:\n- name: driftwatch\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n\
             \x20   user: driftwatch\n    namespace: {NAMESPACE}\ncurrent-context: emulator\n"
        ),
    )
    .unwrap();
    let token = dir.join(format!("token-{identity}"));
    std::fs::write(&token, TOKEN).unwrap();
    // The listen address comes first: `Daemon::start` reads the port from it.
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\napi_token_file = \"{token}\"\n\n",
        token = token.display(),
    );
    // state_dir is a top-level key: before any table.
    text = format!(
        "state_dir = \"{}\"\n{text}",
        dir.join(format!("state-{identity}")).display()
    );
    text.push_str(&format!(
        "[defaults]\nkill_grace = \"2s\"\nmax_concurrent_runs = 8\n\n\
         [[repo]]\nname = \"infra\"\nurl = \"file://{repo}\"\npoll_interval = \"1s\"\n\n\
         [cluster]\nmode = \"kubernetes\"\nidentity = \"{identity}\"\nnamespace = \"{NAMESPACE}\"\n\
         advertise_url = \"http://127.0.0.1:{port}\"\nlease_duration = \"2s\"\nrenew_interval = \"500ms\"\n\
         kubeconfig = \"{kubeconfig}\"\n\n",
        repo = repo.display(),
        kubeconfig = kubeconfig.display(),
    ));
    text.push_str(probes);
    let path = dir.join(format!("{identity}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn start_replica(api: &Api, dir: &Path, identity: &str, repo: &Path) -> Replica {
    start_replica_with(api, dir, identity, repo, None)
}

/// A replica running `probes` (config text) instead of the command probes.
fn start_replica_with(
    api: &Api,
    dir: &Path,
    identity: &str,
    repo: &Path,
    probes: Option<&str>,
) -> Replica {
    let target = api.emulator.url().trim_start_matches("http://").to_string();
    let target = target.trim_end_matches('/').to_string();
    let relay = Relay::start(target);
    let port = free_port();
    let config = match probes {
        Some(probes) => write_config_with(dir, identity, port, relay.port, repo, probes),
        None => write_config(dir, identity, port, relay.port, repo),
    };
    let daemon = Daemon::start(&config, &dir.join(format!("{identity}.log")));
    Replica {
        identity: identity.to_string(),
        daemon,
        relay,
    }
}

/// `probe` label → value of every `metric{...}` line.
fn series(body: &str, metric: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .filter_map(|line| {
            let probe = line.split("probe=\"").nth(1)?.split('"').next()?;
            let value = line.rsplit(' ').next()?;
            Some((probe.to_string(), value.to_string()))
        })
        .collect()
}

fn value(body: &str, metric: &str) -> Option<f64> {
    body.lines()
        .find(|line| line.starts_with(&format!("{metric} ")))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn scrape(replica: &Replica) -> String {
    replica
        .daemon
        .get("/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

fn instances() -> Vec<InstanceId> {
    (0..PROBES)
        .map(|n| InstanceId::new(format!("p{n}"), ""))
        .collect()
}

/// The owner rendezvous hashing gives each instance over `identities`.
fn expected_owners(identities: &[&str]) -> BTreeMap<String, String> {
    let members: Vec<Member> = identities
        .iter()
        .map(|identity| Member {
            identity: identity.to_string(),
            url: String::new(),
        })
        .collect();
    instances()
        .into_iter()
        .map(|id| {
            let owner = rendezvous::owner(&members, &id).unwrap().identity.clone();
            (id.probe, owner)
        })
        .collect()
}

/// Who exports each instance's result now (probe → owners), and each
/// replica's own view of the member count.
struct Snapshot {
    exporters: BTreeMap<String, Vec<String>>,
    last_run: BTreeMap<String, f64>,
    members: BTreeMap<String, Option<f64>>,
    owned: BTreeMap<String, Option<f64>>,
}

fn snapshot(replicas: &[&Replica]) -> Snapshot {
    let mut exporters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut last_run = BTreeMap::new();
    let mut members = BTreeMap::new();
    let mut owned = BTreeMap::new();
    for replica in replicas {
        let body = scrape(replica);
        // The drifted gauge exists for every exported instance, run or not.
        for probe in series(&body, "driftwatch_probe_drifted").keys() {
            exporters
                .entry(probe.clone())
                .or_default()
                .push(replica.identity.clone());
        }
        for (probe, at) in series(&body, "driftwatch_probe_last_run_timestamp_seconds") {
            last_run.insert(probe, at.parse::<f64>().unwrap_or(0.0));
        }
        members.insert(
            replica.identity.clone(),
            value(&body, "driftwatch_cluster_members"),
        );
        owned.insert(
            replica.identity.clone(),
            value(&body, "driftwatch_cluster_owned_instances"),
        );
    }
    Snapshot {
        exporters,
        last_run,
        members,
        owned,
    }
}

/// Polls until every instance is exported by exactly the owner rendezvous
/// hashing names over `identities` and has run, those in `rerun` since
/// `since` (epoch seconds), and every replica sees all of `identities`;
/// returns the snapshot.
fn wait_for_coverage(
    replicas: &[&Replica],
    identities: &[&str],
    (rerun, since): (&[String], f64),
    what: &str,
) -> Snapshot {
    let expected = expected_owners(identities);
    let start = Instant::now();
    loop {
        let now = snapshot(replicas);
        let exact = expected.iter().all(|(probe, owner)| {
            now.exporters.get(probe).map(Vec::as_slice) == Some(std::slice::from_ref(owner))
        });
        let ran = expected.keys().all(|probe| {
            let wanted = if rerun.contains(probe) { since } else { 1.0 };
            now.last_run.get(probe).is_some_and(|at| *at >= wanted)
        });
        let members = now
            .members
            .values()
            .all(|m| *m == Some(identities.len() as f64));
        if exact && ran && members && now.exporters.len() == expected.len() {
            return now;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let logs: String = replicas
                .iter()
                .map(|r| {
                    format!(
                        "--- {}:\n{}",
                        r.identity,
                        std::fs::read_to_string(&r.daemon.log).unwrap_or_default()
                    )
                })
                .collect();
            panic!(
                "timed out waiting for {what}: exporters {:?}, expected {expected:?}, members {:?}\n{logs}",
                now.exporters, now.members
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The API and a git repo for the replicas to share; every probe runs the
/// repo's `check.sh` (in sync).
fn setup() -> (Api, tempfile::TempDir, PathBuf) {
    setup_with("exit 0\n")
}

fn setup_with(check: &str) -> (Api, tempfile::TempDir, PathBuf) {
    let api = start_api();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("work");
    init_repo(&repo, &[("check.sh", check)]);
    (api, tmp, repo)
}

fn epoch_now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

#[test]
fn instances_are_sharded_taken_over_and_moved_only_as_far_as_needed() {
    let (api, tmp, repo) = setup();
    let dir = tmp.path();

    let a = start_replica(&api, dir, "a", &repo);
    let b = start_replica(&api, dir, "b", &repo);
    let mut c = start_replica(&api, dir, "c", &repo);
    let started = Instant::now();
    let three = wait_for_coverage(
        &[&a, &b, &c],
        &["a", "b", "c"],
        (&[], 0.0),
        "three replicas",
    );
    eprintln!(
        "three replicas: full coverage {:.1}s after start; owned {:?}",
        started.elapsed().as_secs_f64(),
        three.owned
    );
    let owned_sum: f64 = three.owned.values().map(|o| o.unwrap_or(0.0)).sum();
    assert_eq!(owned_sum, PROBES as f64, "{:?}", three.owned);
    for identity in ["a", "b", "c"] {
        let lease = api
            .emulator
            .get("Lease", NAMESPACE, &format!("driftwatch-{identity}"))
            .expect("each replica holds its Lease");
        assert_eq!(lease["spec"]["holderIdentity"], identity);
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 2);
        assert!(
            lease["metadata"]["annotations"]["driftwatch.dev/advertise-url"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:")
        );
    }

    // A manual trigger of an instance another member owns names the owner.
    let foreign = expected_owners(&["a", "b", "c"])
        .into_iter()
        .find(|(_, owner)| owner != "a")
        .unwrap();
    let (code, body) = a
        .daemon
        .post(&format!("/api/v1/probes/{}/run", foreign.0), TOKEN)
        .unwrap();
    assert_eq!(code, 421, "{body}");
    assert!(
        body.contains(&format!("\"owner\":\"{}\"", foreign.1)),
        "{body}"
    );
    let own = expected_owners(&["a", "b", "c"])
        .into_iter()
        .find(|(_, owner)| owner == "a")
        .unwrap();
    let (code, body) = a
        .daemon
        .post(&format!("/api/v1/probes/{}/run", own.0), TOKEN)
        .unwrap();
    assert_eq!(code, 202, "{body}");

    // Kill c without a clean shutdown: its Lease stays, unrenewed.
    let killed_at = epoch_now();
    let kill = Instant::now();
    c.daemon.child.kill().unwrap();
    c.daemon.child.wait().unwrap();
    assert!(api
        .emulator
        .get("Lease", NAMESPACE, "driftwatch-c")
        .is_some());
    let c_owned: Vec<String> = expected_owners(&["a", "b", "c"])
        .into_iter()
        .filter(|(_, owner)| owner == "c")
        .map(|(probe, _)| probe)
        .collect();
    assert!(!c_owned.is_empty(), "c owned nothing to take over");
    // Every instance c owned is run again by a survivor.
    wait_for_coverage(
        &[&a, &b],
        &["a", "b"],
        (&c_owned, killed_at),
        "takeover after a kill",
    );
    let takeover = kill.elapsed();
    eprintln!(
        "kill of c: its {} instances run by survivors {:.1}s later (lease 2s, renew 500ms)",
        c_owned.len(),
        takeover.as_secs_f64()
    );

    // A fourth replica joins: only its own share moves, all of it to d.
    let before = expected_owners(&["a", "b"]);
    let d = start_replica(&api, dir, "d", &repo);
    let after = wait_for_coverage(&[&a, &b, &d], &["a", "b", "d"], (&[], 0.0), "d joined");
    let mut moves = 0;
    for (probe, owners) in &after.exporters {
        if owners[0] != before[probe] {
            assert_eq!(owners[0], "d", "{probe} moved between old members");
            moves += 1;
        }
    }
    let d_share = after.owned["d"].unwrap_or(0.0) as usize;
    assert_eq!(moves, d_share);
    assert!(moves > 0 && moves < PROBES, "{moves} of {PROBES} moved");
    eprintln!(
        "d joined: {moves} of {PROBES} instances moved (ideal 1/3: {})",
        PROBES / 3
    );

    // A clean shutdown releases the Lease: the survivors need not wait for it
    // to expire.
    let mut d = d;
    let stopped = d.daemon.terminate();
    assert!(stopped.success(), "{stopped:?}");
    assert!(
        api.emulator
            .get("Lease", NAMESPACE, "driftwatch-d")
            .is_none(),
        "d's Lease outlived its clean shutdown:\n{}",
        std::fs::read_to_string(&d.daemon.log).unwrap_or_default()
    );
    wait_for_coverage(&[&a, &b], &["a", "b"], (&[], 0.0), "d left cleanly");
    drop(c);
}

#[test]
fn a_replica_cut_off_from_the_api_stops_owning_and_the_others_take_over() {
    let (api, tmp, repo) = setup();
    let dir = tmp.path();
    let a = start_replica(&api, dir, "a", &repo);
    let b = start_replica(&api, dir, "b", &repo);
    wait_for_coverage(&[&a, &b], &["a", "b"], (&[], 0.0), "two replicas");

    // b still runs and serves, but cannot renew its Lease nor watch.
    let cut_at = epoch_now();
    b.relay.cut();
    let start = Instant::now();
    loop {
        let body = scrape(&b);
        let owned = value(&body, "driftwatch_cluster_owned_instances");
        let exported = series(&body, "driftwatch_probe_drifted").len();
        if owned == Some(0.0) && exported == 0 {
            let errors = value(&body, "driftwatch_cluster_lease_renew_errors_total").unwrap_or(0.0);
            assert!(errors >= 1.0, "no renew error counted:\n{body}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "b still owns {owned:?} instances and exports {exported}:\n{}",
            std::fs::read_to_string(&b.daemon.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "b cut off from the API: owns nothing {:.1}s later (lease 2s)",
        start.elapsed().as_secs_f64()
    );
    // a alone owns and has run everything (b's former share since the cut).
    let b_share: Vec<String> = expected_owners(&["a", "b"])
        .into_iter()
        .filter(|(_, owner)| owner == "b")
        .map(|(probe, _)| probe)
        .collect();
    wait_for_coverage(&[&a], &["a"], (&b_share, cut_at), "a alone");
}

/// A rolling restart (each replica in turn stopped cleanly and started
/// again with its state): every instance stays covered, and every drifted
/// instance keeps its drifted-since through each move (handover).
#[test]
fn a_rolling_restart_keeps_every_instance_covered_and_its_drifted_since() {
    let (api, tmp, repo) = setup_with("echo drift >&2\nexit 2\n");
    let dir = tmp.path();
    let names = ["a", "b", "c"];
    let mut replicas: Vec<Replica> = names
        .iter()
        .map(|identity| start_replica(&api, dir, identity, &repo))
        .collect();
    let refs: Vec<&Replica> = replicas.iter().collect();
    wait_for_coverage(&refs, &names, (&[], 0.0), "three drifted replicas");
    let since = |replicas: &[&Replica]| -> BTreeMap<String, String> {
        replicas
            .iter()
            .flat_map(|r| {
                series(
                    &scrape(r),
                    "driftwatch_probe_drifted_since_timestamp_seconds",
                )
            })
            .collect()
    };
    // Replicas that start together may each run an instance before their
    // membership settles; the handover then moves drifted-since back to the
    // earliest observation within seconds. Compare with the settled value.
    let first = crate::common::settled(
        "drifted-since across the replicas",
        Duration::from_secs(3),
        Duration::from_secs(60),
        || since(&refs),
    );
    assert_eq!(first.len(), PROBES, "{first:?}");
    assert!(first.values().all(|v| v != "0"), "all drifted: {first:?}");
    for index in 0..names.len() {
        let stopped_at = epoch_now();
        let status = replicas[index].daemon.terminate();
        assert!(status.success(), "{status:?}");
        let survivors: Vec<&Replica> = replicas
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, r)| r)
            .collect();
        let survivor_names: Vec<&str> = survivors.iter().map(|r| r.identity.as_str()).collect();
        let moved: Vec<String> = expected_owners(&names)
            .into_iter()
            .filter(|(_, owner)| owner == names[index])
            .map(|(probe, _)| probe)
            .collect();
        wait_for_coverage(
            &survivors,
            &survivor_names,
            (&moved, stopped_at),
            "survivors of a clean stop",
        );
        assert_eq!(
            since(&survivors),
            first,
            "drifted-since moved with {moved:?}"
        );
        replicas[index] = start_replica(&api, dir, names[index], &repo);
        let refs: Vec<&Replica> = replicas.iter().collect();
        wait_for_coverage(&refs, &names, (&[], 0.0), "the restarted replica back");
        assert_eq!(since(&refs), first, "after {} came back", names[index]);
    }
}

/// Leases as a real API server serves them: namespaced, discoverable,
/// watched, and guarded by resourceVersion (409 Conflict on a stale one).
#[test]
fn the_emulator_serves_leases_like_an_api_server() {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use kube::api::{Api as KubeApi, DeleteParams, ListParams, Patch, PatchParams, PostParams};
    let api = start_api();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = api.emulator.write_kubeconfig(tmp.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let leases: KubeApi<Lease> = KubeApi::namespaced(client.clone(), "ops");
        let mut lease = Lease {
            metadata: kube::api::ObjectMeta {
                name: Some("one".into()),
                labels: Some([("app".to_string(), "x".to_string())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("a".into()),
                lease_duration_seconds: Some(10),
                ..Default::default()
            }),
        };
        let created = leases.create(&PostParams::default(), &lease).await.unwrap();
        let first_version = created.metadata.resource_version.clone().unwrap();
        let again = leases.create(&PostParams::default(), &lease).await.unwrap_err();
        assert!(matches!(&again, kube::Error::Api(s) if s.code == 409), "{again:?}");

        // Replace with the version read: accepted, a new version.
        lease = created.clone();
        lease.spec.as_mut().unwrap().holder_identity = Some("b".into());
        let replaced = leases
            .replace("one", &PostParams::default(), &lease)
            .await
            .unwrap();
        assert_ne!(replaced.metadata.resource_version.unwrap(), first_version);
        // The same stale version again: 409, nothing changed.
        lease.spec.as_mut().unwrap().holder_identity = Some("c".into());
        let stale = leases
            .replace("one", &PostParams::default(), &lease)
            .await
            .unwrap_err();
        assert!(matches!(&stale, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"), "{stale:?}");
        let patch = serde_json::json!({"metadata": {"resourceVersion": first_version}, "spec": {"holderIdentity": "d"}});
        let stale = leases
            .patch("one", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_err();
        assert!(matches!(&stale, kube::Error::Api(s) if s.code == 409), "{stale:?}");
        assert_eq!(
            leases.get("one").await.unwrap().spec.unwrap().holder_identity.as_deref(),
            Some("b")
        );

        // Namespaced: another namespace does not see it; selectors filter.
        let elsewhere: KubeApi<Lease> = KubeApi::namespaced(client.clone(), "other");
        assert!(elsewhere.get_opt("one").await.unwrap().is_none());
        assert_eq!(leases.list(&ListParams::default().labels("app=x")).await.unwrap().items.len(), 1);
        assert!(leases.list(&ListParams::default().labels("app=y")).await.unwrap().items.is_empty());

        // A watch sees a change and the deletion.
        use futures::StreamExt;
        let mut events = kube::runtime::watcher(leases.clone(), Default::default()).boxed();
        let mut seen = Vec::new();
        let watching = async {
            while let Some(Ok(event)) = events.next().await {
                match event {
                    kube::runtime::watcher::Event::InitDone => {
                        let patch = serde_json::json!({"spec": {"holderIdentity": "e"}});
                        leases
                            .patch("one", &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .unwrap();
                    }
                    kube::runtime::watcher::Event::Apply(lease) => {
                        seen.push(lease.spec.unwrap().holder_identity.unwrap());
                        leases.delete("one", &DeleteParams::default()).await.unwrap();
                    }
                    kube::runtime::watcher::Event::Delete(_) => {
                        seen.push("deleted".into());
                        return;
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), watching)
            .await
            .expect("watch events");
        assert_eq!(seen, ["e", "deleted"]);
    });

    // kubectl finds the type through discovery.
    if crate::common::which("kubectl").is_some() {
        api.emulator.apply(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: two\n  namespace: ops\nspec:\n  holderIdentity: z\n",
        );
        let out = std::process::Command::new("kubectl")
            .args(["--kubeconfig"])
            .arg(&kubeconfig)
            .args([
                "get",
                "leases.coordination.k8s.io",
                "-n",
                "ops",
                "-o",
                "name",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "lease.coordination.k8s.io/two"
        );
    }
}

/// `config/kubernetes/sharded`: three replicas whose `[cluster]` defaults
/// come from the downward API, a Role that writes Leases and ConfigMaps in
/// the own namespace only, bound to the ServiceAccount the pods run as, and
/// a PodDisruptionBudget over those pods.
#[test]
fn the_sharded_manifests_wire_identity_rbac_and_disruption_budget() {
    use driftwatch::probe::kubernetes::manifest;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let loaded = manifest::load_dir(&root.join("config/kubernetes/sharded"), &root).unwrap();
    let find = |kind: &str| {
        loaded
            .objects
            .iter()
            .find(|m| m.kind() == kind)
            .unwrap_or_else(|| panic!("no {kind} in config/kubernetes/sharded"))
            .object()
    };
    let set = find("StatefulSet");
    assert_eq!(set["spec"]["replicas"], 3);
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "driftwatch");
    let env: BTreeMap<String, String> = pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()?
                    .to_string(),
            ))
        })
        .collect();
    assert_eq!(env["POD_NAME"], "metadata.name");
    assert_eq!(env["POD_NAMESPACE"], "metadata.namespace");
    assert_eq!(env["POD_IP"], "status.podIP");
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    let budget = find("PodDisruptionBudget");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    for (key, value) in budget["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[key], value, "the budget selects the pods");
    }
    let role = find("Role");
    assert_eq!(role["metadata"]["namespace"], "driftwatch");
    let resources: std::collections::BTreeSet<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(resources, ["configmaps", "leases"].into());
    // The names the Role lets replicas update are the StatefulSet's pods'.
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    let updatable: Vec<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verbs"].as_array().unwrap().iter().any(|v| v == "update"))
        .flat_map(|r| r["resourceNames"].as_array().unwrap())
        .filter_map(|n| n.as_str())
        .collect();
    for ordinal in 0..replicas {
        let pod = format!("{}-{ordinal}", set["metadata"]["name"].as_str().unwrap());
        assert!(
            updatable.contains(&format!("driftwatch-{pod}").as_str()),
            "Lease of {pod}"
        );
        assert!(
            updatable.contains(&format!("driftwatch-status-{pod}").as_str()),
            "status ConfigMap of {pod}"
        );
    }
    let binding = find("RoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
    // The config the replicas read is sharded and leaves the rest to the
    // downward API.
    let config = find("ConfigMap")["data"]["driftwatch.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let table: toml::Table = toml::from_str(&config).unwrap();
    assert_eq!(table["cluster"]["mode"].as_str(), Some("kubernetes"));
    assert!(table["cluster"].get("identity").is_none(), "{config}");
}

/// A multi-root Terraform probe: every replica lists the roots, each root is
/// planned by its owner only (the other replica's log has no run of it), the
/// union of the replicas' /metrics holds each root's series once, and no
/// replica wrote state (read-only by construction).
#[test]
fn a_multi_root_terraform_probe_plans_each_root_on_its_owner_only() {
    if !crate::terraform::have_terraform() {
        return;
    }
    let api = start_api();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = dir.join("work");
    let roots = ["a", "b", "c", "d", "e", "f"];
    let tfstate = |root: &str| dir.join(format!("tfstate/{root}.tfstate"));
    let stacks: Vec<(String, String)> = roots
        .iter()
        .map(|root| {
            (
                format!("envs/{root}/main.tf"),
                format!(
                    "terraform {{\n  backend \"local\" {{\n    path = {:?}\n  }}\n}}\nresource \"terraform_data\" \"x\" {{\n  input = \"v\"\n}}\n",
                    tfstate(root).to_str().unwrap()
                ),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = stacks
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    init_repo(&repo, &files);
    let cli = dir.join("empty.tfrc");
    std::fs::write(&cli, "").unwrap();
    let probe = format!(
        "[[probe]]\nname = \"tf\"\nlayer = \"terraform\"\nrepo = \"infra\"\nschedule = \"\"\n\
         roots = [\"envs/*\"]\ntimeout = \"120s\"\ncli_config_file = \"{}\"\n\n",
        cli.display()
    );
    let replicas: Vec<Replica> = ["a", "b"]
        .iter()
        .map(|identity| start_replica_with(&api, dir, identity, &repo, Some(&probe)))
        .collect();
    let members: Vec<Member> = replicas
        .iter()
        .map(|r| Member {
            identity: r.identity.clone(),
            url: String::new(),
        })
        .collect();
    let owner_of = |root: &str| {
        rendezvous::owner(&members, &InstanceId::new("tf", format!("envs/{root}")))
            .unwrap()
            .identity
            .clone()
    };
    let series_of = |replica: &Replica, root: &str| {
        scrape(replica)
            .lines()
            .filter(|line| {
                line.starts_with(&format!(
                    "terradiff_plan_exit_code{{probe=\"tf\",root=\"envs/{root}\"}} "
                ))
            })
            .count()
    };
    let start = Instant::now();
    loop {
        let placed = roots.iter().all(|root| {
            replicas.iter().all(|replica| {
                let expected = usize::from(replica.identity == owner_of(root));
                series_of(replica, root) == expected
            })
        });
        if placed {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "roots not planned once each on their owners: {:?}",
            replicas
                .iter()
                .map(|r| (r.identity.clone(), scrape(r)))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Both owners got some of the six roots (rendezvous over two members).
    let owners: std::collections::BTreeSet<String> = roots.iter().map(|r| owner_of(r)).collect();
    assert_eq!(owners.len(), 2, "six roots all hashed to one member");
    // Replicas starting together may each plan a root before they see each
    // other (harmless: read-only). Once settled, a new commit touching every
    // root is planned by each root's owner only.
    let log_of =
        |replica: &Replica| std::fs::read_to_string(&replica.daemon.log).unwrap_or_default();
    let offsets: Vec<usize> = replicas.iter().map(|r| log_of(r).len()).collect();
    let edited: Vec<(String, String)> = stacks
        .iter()
        .map(|(path, text)| (path.clone(), format!("{text}# edited\n")))
        .collect();
    let edited: Vec<(&str, &str)> = edited
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    crate::common::commit_files(&repo, &edited, "touch every root");
    let ran_since = |replica: &Replica, offset: usize, root: &str| {
        log_of(replica)[offset..].lines().any(|line| {
            line.contains("probe run finished") && line.contains(&format!("tf:envs/{root}"))
        })
    };
    let start = Instant::now();
    while !roots.iter().all(|root| {
        replicas
            .iter()
            .zip(&offsets)
            .any(|(r, offset)| r.identity == owner_of(root) && ran_since(r, *offset, root))
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the owners did not plan the new commit: {:?}",
            replicas.iter().map(log_of).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for (replica, offset) in replicas.iter().zip(&offsets) {
        for root in roots {
            if replica.identity != owner_of(root) {
                assert!(
                    !ran_since(replica, *offset, root),
                    "{} planned envs/{root}, owned by {}:\n{}",
                    replica.identity,
                    owner_of(root),
                    &log_of(replica)[*offset..]
                );
            }
        }
    }
    for root in roots {
        assert!(!tfstate(root).exists(), "state written for envs/{root}");
    }
}
