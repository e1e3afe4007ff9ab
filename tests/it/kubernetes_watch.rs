//! The kubernetes layer's watch-fed cache (`watch = true`, the default)
//! against the API emulator: checks after the first cost no API request; an
//! edit, a deletion and a new undeclared object each wake `live_change`
//! without a scheduled run; a cut watch resumes without losing a change; an
//! expired resourceVersion relists; a change reverted within the debounce
//! stays in sync; WATCH forbidden falls back to LIST with a warning. Then the
//! daemon end to end: a live edit becomes a `live-change` run and metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use driftwatch::model::outcome::{Outcome, Verdict};
use driftwatch::probe::{Probe, ProbeContext};
use kube_emulator::KubeEmulator;
use serde_json::json;

use crate::common;
use crate::kubernetes::{copy_dir, seed_dir};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubernetes");

struct Setup {
    emulator: KubeEmulator,
    tmp: tempfile::TempDir,
    probe: Arc<dyn Probe>,
    cx: ProbeContext,
}

/// The `app` fixture in git and in the emulator, and a watching probe.
async fn setup(fields: &str) -> Setup {
    let emulator = KubeEmulator::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let checkout = tmp.path().join("checkout");
    copy_dir(&Path::new(FIXTURES).join("app"), &checkout.join("deploy"));
    seed_dir(&emulator, &checkout.join("deploy"));
    let kubeconfig = emulator.write_kubeconfig(tmp.path());
    let fields = format!(
        "kubeconfig = {:?}\nwatch_debounce = \"300ms\"\n{fields}",
        kubeconfig.display().to_string()
    );
    let probe = common::build_probe("kubernetes", "k8s", "deploy", &fields).unwrap();
    let cx = common::probe_context(
        "k8s",
        &checkout,
        "deploy",
        tmp.path(),
        Duration::from_secs(60),
    );
    Setup {
        emulator,
        tmp,
        probe,
        cx,
    }
}

impl Setup {
    async fn check(&self) -> Outcome {
        let mut cx = self.cx.clone();
        cx.deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        self.probe
            .run(&cx)
            .await
            .unwrap_or_else(|e| panic!("check failed: {e:?}"))
    }

    /// Waits for the probe to report a live change (10 s at most).
    async fn live_change(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.probe.live_change())
            .await
            .expect("a live change within 10 s");
    }

    /// True when no live change is reported within `wait`.
    async fn quiet_for(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.probe.live_change())
            .await
            .is_err()
    }
}

fn subjects(outcome: &Outcome) -> Vec<(String, String)> {
    outcome
        .changes
        .iter()
        .map(|c| (c.subject.clone(), c.action.clone()))
        .collect()
}

#[tokio::test]
async fn checks_after_the_first_read_the_cache_and_live_edits_wake_a_check() {
    let s = setup("").await;
    // /readyz waits for this: nothing is settled before the first check.
    assert!(!s.probe.cache_stats().unwrap().settled);
    let first = s.check().await;
    assert_eq!(first.verdict(), Verdict::InSync, "{:#?}", first.changes);
    let stats = s.probe.cache_stats().expect("a watching probe has a cache");
    assert!(stats.settled && stats.objects >= 6, "{stats:?}");

    // The scheduled check: no API request at all (once the watches, which
    // start right after their LIST, are open).
    // (Each scope makes one permission-check watch first, then its informer's.)
    while s.emulator.watches_started() < 2 * stats.scopes as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.emulator.reset_requests();
    let second = s.check().await;
    assert_eq!(second.verdict(), Verdict::InSync);
    assert_eq!(second.details["api_requests"], 0);
    assert_eq!(s.emulator.requests(), 0, "{:?}", s.emulator.paths());

    // A kubectl-scale-like edit wakes a check, which sees it.
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(7)
    });
    s.live_change().await;
    let edited = s.check().await;
    assert_eq!(edited.verdict(), Verdict::Drifted);
    let change = &edited.changes[0];
    assert_eq!(change.subject, "Deployment/shop/web");
    assert!(change.diff.contains("spec.replicas"), "{}", change.diff);
    assert!(change.diff.contains('7'), "{}", change.diff);

    // A deletion too.
    s.emulator.delete("ConfigMap", "shop", "settings");
    s.live_change().await;
    let deleted = s.check().await;
    assert!(
        subjects(&deleted).contains(&("ConfigMap/shop/settings".into(), "missing".into())),
        "{:?}",
        subjects(&deleted)
    );
    assert_eq!(s.emulator.requests(), 0, "{:?}", s.emulator.paths());
    assert_eq!(s.emulator.writes(), 0, "the probe only reads");
}

#[tokio::test]
async fn status_only_updates_and_undeclared_objects_do_not_wake_a_check_without_extras() {
    let s = setup("").await;
    s.check().await;
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["status"]["readyReplicas"] = json!(0)
    });
    s.emulator.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stray, namespace: shop}\ndata: {a: b}\n",
    );
    assert!(s.quiet_for(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_new_undeclared_object_wakes_a_check_when_extras_are_on() {
    let s = setup("detect_extra = true").await;
    let first = s.check().await;
    assert_eq!(first.verdict(), Verdict::InSync, "{:#?}", first.changes);
    s.emulator.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stray, namespace: shop}\ndata: {a: b}\n",
    );
    s.live_change().await;
    let outcome = s.check().await;
    assert_eq!(
        subjects(&outcome),
        vec![("ConfigMap/shop/stray".to_string(), "extra".to_string())]
    );
    // Deleting it again is a change too, and the check is back in sync.
    s.emulator.delete("ConfigMap", "shop", "stray");
    s.live_change().await;
    assert_eq!(s.check().await.verdict(), Verdict::InSync);
}

#[tokio::test]
async fn extra_only_namespaces_are_cached_as_metadata() {
    let s = setup("detect_extra = true\nextra_namespaces = [\"side\"]").await;
    s.emulator.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: token, namespace: side}\nstringData: {password: hunter2-live}\n",
    );
    let outcome = s.check().await;
    assert!(
        subjects(&outcome).contains(&("Secret/side/token".into(), "extra".into())),
        "{:?}",
        subjects(&outcome)
    );
    // Only metadata was asked for where nothing is declared.
    let paths = s.emulator.paths();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/api/v1/namespaces/side/secrets")),
        "{paths:?}"
    );
    assert!(!format!("{outcome:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_cut_watch_resumes_without_losing_changes_and_an_expired_one_relists() {
    let s = setup("").await;
    s.check().await;
    let started = s.emulator.watches_started();

    // Cut, and change while nobody watches: the watch resumes from its version.
    s.emulator.cut_watches();
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(4)
    });
    s.live_change().await;
    let outcome = s.check().await;
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert!(s.emulator.watches_started() > started);
    assert_eq!(
        s.probe.cache_stats().unwrap().restarts,
        0,
        "a cut is no error"
    );

    // Expired: the log no longer holds the version the watch resumes from.
    s.emulator.set_watch_history(1);
    s.emulator.cut_watches();
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(5)
    });
    for n in 0..3 {
        s.emulator
            .patch("ConfigMap", "default", "kube-root-ca.crt", |c| {
                c["data"]["n"] = json!(n.to_string())
            });
    }
    s.live_change().await;
    let outcome = s.check().await;
    let diff = &outcome.changes[0].diff;
    assert!(diff.contains('5'), "{diff}");
    assert!(s.probe.cache_stats().unwrap().restarts >= 1);

    // Back to what git says: in sync again.
    s.emulator.set_watch_history(10_000);
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(3)
    });
    s.live_change().await;
    assert_eq!(s.check().await.verdict(), Verdict::InSync);
}

#[tokio::test]
async fn a_change_reverted_within_the_debounce_stays_in_sync() {
    let s = setup("").await;
    s.check().await;
    let replicas = s.emulator.get("Deployment", "shop", "web").unwrap()["spec"]["replicas"].clone();
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(9)
    });
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = replicas.clone()
    });
    s.live_change().await;
    let outcome = s.check().await;
    assert_eq!(outcome.verdict(), Verdict::InSync, "{:#?}", outcome.changes);
    // Both events were folded into that one check.
    assert!(s.quiet_for(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn forbidden_watch_falls_back_to_list_with_a_warning() {
    let s = setup("").await;
    // validate's view, before any check: nothing to say while watch is allowed.
    let dir = s.cx.workdir.clone();
    assert_eq!(
        s.probe.access_warnings(Some(&dir)).await,
        Vec::<String>::new()
    );
    s.emulator.forbid_watch("deployments.apps");
    let warnings = s.probe.access_warnings(Some(&dir)).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cannot watch deployments.apps in namespace \"shop\""),
        "{}",
        warnings[0]
    );
    let outcome = s.check().await;
    assert_eq!(outcome.verdict(), Verdict::InSync, "{:#?}", outcome.changes);
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    let warning = &outcome.warnings[0];
    assert!(
        warning.contains("cannot watch deployments.apps") && warning.contains("LIST"),
        "{warning}"
    );
    // Each check reads the forbidden type again; the others come from the cache.
    s.emulator.reset_requests();
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(8)
    });
    let outcome = s.check().await;
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.warnings.len(), 1);
    let paths = s.emulator.paths();
    assert!(
        !paths.is_empty() && paths.iter().all(|p| p.contains("deployments")),
        "{paths:?}"
    );

    // watch = false: no watch at all, no warning.
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = s.emulator.write_kubeconfig(tmp.path());
    let fields = format!(
        "kubeconfig = {:?}\nwatch = false",
        kubeconfig.display().to_string()
    );
    let listing = common::build_probe("kubernetes", "k8s", "deploy", &fields).unwrap();
    let before = s.emulator.watches_started();
    let outcome = listing.run(&s.cx).await.unwrap();
    assert!(outcome.warnings.is_empty());
    assert!(listing.cache_stats().is_none());
    assert_eq!(s.emulator.watches_started(), before);
    let _ = &s.tmp;
}

/// A watch forbidden at the start is asked again every `watch_retry`: once
/// the account may watch, the scope syncs, a live-change check clears the
/// warning, and checks read the cache again (no request).
#[tokio::test]
async fn a_watch_allowed_later_replaces_the_list_fallback() {
    let s = setup("watch_retry = \"200ms\"").await;
    s.emulator.forbid_watch("deployments.apps");
    let outcome = s.check().await;
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    assert!(outcome.warnings[0].contains("cannot watch deployments.apps"));
    // Still forbidden: the retries change nothing and wake no check.
    assert!(s.quiet_for(Duration::from_millis(700)).await);
    assert_eq!(s.check().await.warnings.len(), 1);

    s.emulator.allow_watch("deployments.apps");
    s.live_change().await;
    let outcome = s.check().await;
    assert_eq!(outcome.verdict(), Verdict::InSync, "{:#?}", outcome.changes);
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    s.emulator.reset_requests();
    s.emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(7)
    });
    s.live_change().await;
    let outcome = s.check().await;
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(s.emulator.requests(), 0, "{:?}", s.emulator.paths());
}

/// `driftwatch check` runs each probe once: it starts no watch and makes the
/// same requests as `watch = false` (no permission-check watch per scope).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_check_starts_no_watch() {
    let emulator = KubeEmulator::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("checkout").join("deploy");
    copy_dir(&Path::new(FIXTURES).join("app"), &manifests);
    seed_dir(&emulator, &manifests);
    let config_path = write_config(&emulator, tmp.path(), &manifests, "");
    let config = driftwatch::app::load_config(&config_path).unwrap();
    emulator.reset_requests();
    let reports = driftwatch::app::check(config, &[]).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].verdict,
        Verdict::InSync,
        "{:?}",
        reports[0].error
    );
    assert!(reports[0].warnings.is_empty(), "{:?}", reports[0].warnings);
    assert_eq!(emulator.watches_started(), 0);
    let paths = emulator.paths();
    assert!(paths.iter().all(|p| !p.contains("watch")), "{paths:?}");
    let one_shot = emulator.requests();

    let kubeconfig = emulator.write_kubeconfig(tmp.path());
    let fields = format!(
        "kubeconfig = {:?}\nwatch = false",
        kubeconfig.display().to_string()
    );
    let listing = common::build_probe("kubernetes", "k8s", "deploy", &fields).unwrap();
    let cx = common::probe_context(
        "k8s",
        &tmp.path().join("checkout"),
        "deploy",
        tmp.path(),
        Duration::from_secs(60),
    );
    emulator.reset_requests();
    assert_eq!(listing.run(&cx).await.unwrap().verdict(), Verdict::InSync);
    assert_eq!(one_shot, emulator.requests(), "{paths:?}");
}

/// A config file for one kubernetes probe (no schedule) on the emulator,
/// over a new git repo holding the files of `manifests` under `deploy/`;
/// `fields` adds to the probe's table.
fn write_config(emulator: &KubeEmulator, dir: &Path, manifests: &Path, fields: &str) -> PathBuf {
    write_config_with(emulator, dir, manifests, "", fields)
}

/// `write_config` with `tables` (e.g. `[server]`) before the repo.
fn write_config_with(
    emulator: &KubeEmulator,
    dir: &Path,
    manifests: &Path,
    tables: &str,
    fields: &str,
) -> PathBuf {
    let work = dir.join("work");
    let files: Vec<(String, String)> = std::fs::read_dir(manifests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                format!("deploy/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    common::init_repo(&work, &refs);
    let kubeconfig: PathBuf = emulator.write_kubeconfig(dir);
    let config_path = dir.join("driftwatch.toml");
    std::fs::write(
        &config_path,
        format!(
            "state_dir = \"{state}\"\n\n{tables}[[repo]]\nname = \"infra\"\nurl = \"file://{work}\"\n\n\
             [[probe]]\nname = \"k8s\"\nlayer = \"kubernetes\"\npath = \"deploy\"\nschedule = \"\"\n\
             kubeconfig = \"{kubeconfig}\"\n{fields}\n",
            state = dir.join("state").display(),
            work = work.display(),
            kubeconfig = kubeconfig.display()
        ),
    )
    .unwrap();
    config_path
}

/// An in-process daemon over a git repo holding `manifests` (a directory
/// of files) under `deploy/`, with one kubernetes probe (no schedule) on the
/// emulator; `fields` adds to the probe's table.
struct Daemon {
    daemon: driftwatch::app::Daemon,
    reports: tokio::sync::broadcast::Receiver<Arc<driftwatch::model::outcome::RunReport>>,
    shutdown: tokio_util::sync::CancellationToken,
    running: tokio::task::JoinHandle<()>,
}

impl Daemon {
    fn start(emulator: &KubeEmulator, dir: &Path, manifests: &Path, fields: &str) -> Daemon {
        let config_path = write_config(emulator, dir, manifests, fields);
        let config = driftwatch::app::load_config(&config_path).unwrap();
        let daemon = driftwatch::app::build(config, false).unwrap();
        let reports = daemon.scheduler.subscribe();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(daemon.scheduler.clone().run(shutdown.clone()));
        Daemon {
            daemon,
            reports,
            shutdown,
            running,
        }
    }

    async fn next_report(
        &mut self,
        within: Duration,
    ) -> Arc<driftwatch::model::outcome::RunReport> {
        tokio::time::timeout(within, self.reports.recv())
            .await
            .expect("a report in time")
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.running.await.unwrap();
    }
}

/// The daemon end to end: after the startup run, a live edit becomes a run
/// with trigger `live-change` (no schedule), and the metrics say drifted and
/// show the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_runs_a_live_change_check_and_exports_cache_health() {
    let emulator = KubeEmulator::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    copy_dir(&Path::new(FIXTURES).join("app"), &manifests);
    seed_dir(&emulator, &manifests);
    let mut d = Daemon::start(
        &emulator,
        tmp.path(),
        &manifests,
        "watch_debounce = \"200ms\"",
    );
    let scheduler = d.daemon.scheduler.clone();
    let startup = d.next_report(Duration::from_secs(20)).await;
    assert_eq!(startup.trigger, "startup");
    assert_eq!(startup.verdict, Verdict::InSync, "{:?}", startup.error);
    assert!(scheduler.is_ready());

    emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(6)
    });
    let live = d.next_report(Duration::from_secs(20)).await;
    assert_eq!(live.trigger, "live-change");
    assert_eq!(live.verdict, Verdict::Drifted);
    assert_eq!(live.changes[0].subject, "Deployment/shop/web");

    let metrics = d.daemon.context.metrics.render();
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .to_string()
    };
    assert!(line("driftwatch_probe_drifted{").ends_with(" 1"));
    let cached: f64 = line("driftwatch_probe_cached_objects{")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cached >= 6.0, "{cached}");
    assert!(line("driftwatch_probe_cache_synced{").ends_with(" 1"));
    line("driftwatch_probe_watch_restarts_total{");
    let age: f64 = line("driftwatch_probe_last_watch_event_age_seconds{")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(age < 60.0, "{age}");
    d.stop().await;
    assert_eq!(emulator.writes(), 0);
}

/// Mean and max of durations, in milliseconds.
fn mean_max_ms(samples: &[Duration]) -> (f64, f64) {
    let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    (mean, ms.iter().cloned().fold(0.0, f64::max))
}

/// A watching probe over `namespaces` × `per_kind` generated objects, seeded
/// into an emulator at 20 ms per request: the first check (initial sync),
/// then checks from the cache (time, API requests), RSS growth against the
/// JSON size of what is cached.
async fn bench_cache(namespaces: usize, per_kind: [usize; 3]) {
    let emulator = KubeEmulator::start().await;
    emulator.set_watch_history(1_000);
    let tmp = tempfile::tempdir().unwrap();
    let checkout = tmp.path().join("checkout");
    let deploy = checkout.join("deploy");
    crate::kubernetes::write_bench_manifests(&deploy, namespaces, per_kind);
    seed_dir(&emulator, &deploy);
    let kubeconfig = emulator.write_kubeconfig(tmp.path());
    emulator.set_latency(Duration::from_millis(20));
    let objects = namespaces * per_kind.iter().sum::<usize>();
    let fields = format!("kubeconfig = {:?}", kubeconfig.display().to_string());
    let probe = common::build_probe("kubernetes", "bench", "deploy", &fields).unwrap();
    let cx = common::probe_context(
        "bench",
        &checkout,
        "deploy",
        tmp.path(),
        Duration::from_secs(600),
    );

    let (_, rss_before) = crate::kubernetes::rss_kib();
    emulator.reset_requests();
    let started = std::time::Instant::now();
    let first = probe.run(&cx).await.expect("first check succeeds");
    let sync = started.elapsed();
    let sync_requests = emulator.requests();
    assert_eq!(
        first.verdict(),
        Verdict::InSync,
        "{:?}",
        first.changes.first()
    );
    assert_eq!(first.details["objects"], objects);
    let scopes = probe.cache_stats().unwrap().scopes as u64;
    while emulator.watches_started() < 2 * scopes {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    emulator.reset_requests();
    let mut checks = Vec::new();
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let outcome = probe.run(&cx).await.unwrap();
        checks.push(started.elapsed());
        assert_eq!(outcome.verdict(), Verdict::InSync);
    }
    let check_requests = emulator.requests();
    let (_, rss_after) = crate::kubernetes::rss_kib();
    let stats = probe.cache_stats().unwrap();
    let json_bytes = cached_json_bytes(&emulator, namespaces, per_kind);
    let (mean, max) = mean_max_ms(&checks);
    println!("kubernetes watch cache: {objects} objects in {namespaces} namespaces, 20 ms per API request");
    println!("  initial sync (first check): {:.2} s, {sync_requests} API requests ({scopes} watched scopes)", sync.as_secs_f64());
    println!("  check from the cache: mean {mean:.1} ms, max {max:.1} ms over 10, {check_requests} API requests in all");
    println!("  cached: {} objects, their JSON {:.1} MiB; RSS grew {:.1} MiB over the sync and checks ({:.2}x the JSON; the emulator shares the process)",
        stats.objects, json_bytes as f64 / 1048576.0, (rss_after.saturating_sub(rss_before)) as f64 / 1024.0,
        (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / json_bytes as f64);
}

/// The JSON size of the generated objects as the emulator holds them
/// (with managedFields), i.e. what a cache of them stands for.
fn cached_json_bytes(emulator: &KubeEmulator, namespaces: usize, per_kind: [usize; 3]) -> usize {
    ["Deployment", "Service", "ConfigMap"]
        .iter()
        .flat_map(|kind| {
            (0..namespaces).flat_map(move |n| {
                let per = match *kind {
                    "Deployment" => per_kind[0],
                    "Service" => per_kind[1],
                    _ => per_kind[2],
                };
                (0..per).map(move |i| (*kind, n, i))
            })
        })
        .map(|(kind, n, i)| {
            let name = match kind {
                "Deployment" => format!("app-{i}"),
                "Service" => format!("svc-{i}"),
                _ => format!("cfg-{i}"),
            };
            let object = emulator.get(kind, &format!("team-{n:02}"), &name).unwrap();
            serde_json::to_vec(&object).unwrap().len()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run scripts/bench-kubernetes"]
async fn bench_watch_cache_5000_objects() {
    bench_cache(50, [34, 33, 33]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run scripts/bench-kubernetes"]
async fn bench_watch_cache_50000_objects_in_100_namespaces() {
    bench_cache(100, [167, 167, 166]).await;
}

/// The daemon's own memory: a real `driftwatch run` process (the emulator
/// stays in the test process, at 20 ms per request) with one watching probe
/// over 50,000 objects in 100 namespaces; its RSS after the startup check
/// (initial sync and first comparison) against the JSON of what it caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run scripts/bench-kubernetes"]
async fn bench_watch_daemon_rss_50000_objects() {
    let (namespaces, per_kind) = (100, [167, 167, 166]);
    let emulator = KubeEmulator::start().await;
    emulator.set_watch_history(1_000);
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    crate::kubernetes::write_bench_manifests(&manifests, namespaces, per_kind);
    seed_dir(&emulator, &manifests);
    emulator.set_latency(Duration::from_millis(20));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n\n");
    let config = write_config_with(&emulator, tmp.path(), &manifests, &server, "");
    let log = std::fs::File::create(tmp.path().join("daemon.log")).unwrap();
    let started = std::time::Instant::now();
    let mut daemon = std::process::Command::new(common::driftwatch_bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no startup run within 300 s"
        );
        if let Ok(response) = http.get(&metrics).send().await {
            let body = response.text().await.unwrap_or_default();
            if body
                .lines()
                .any(|l| l.starts_with("driftwatch_probe_result{") && l.contains("k8s"))
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (peak, rss) = crate::kubernetes::rss_kib_of(&daemon.id().to_string());
    let (rss, peak) = (rss as f64 * 1024.0, peak as f64 * 1024.0);
    let _ = std::process::Command::new("kill")
        .arg(daemon.id().to_string())
        .status();
    let _ = daemon.wait();
    let json_bytes = cached_json_bytes(&emulator, namespaces, per_kind) as f64;
    let mib = |bytes: f64| bytes / 1048576.0;
    println!("kubernetes watch cache, the daemon's own memory: `driftwatch run` over {} objects in {namespaces} namespaces (the emulator in the test process)",
        namespaces * per_kind.iter().sum::<usize>());
    println!(
        "  startup (process start, repo sync, initial sync, first check): {:.2} s",
        first.as_secs_f64()
    );
    println!("  RSS {:.1} MiB ({:.2}x the {:.1} MiB JSON of the cached objects), peak {:.1} MiB ({:.2}x)",
        mib(rss), rss / json_bytes, mib(json_bytes), mib(peak), peak / json_bytes);
}

/// Edit to verdict through the daemon: 5,000 objects, a replica count changed
/// live (as `kubectl scale` does), until `driftwatch_probe_drifted` is 1 in
/// the metrics exposition; then reverted, until it is 0. 20 edits, default
/// debounce (2 s), 20 ms per API request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run scripts/bench-kubernetes"]
async fn bench_watch_edit_to_verdict() {
    let emulator = KubeEmulator::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let generated = tmp.path().join("generated");
    crate::kubernetes::write_bench_manifests(&generated, 50, [34, 33, 33]);
    seed_dir(&emulator, &generated);
    emulator.set_latency(Duration::from_millis(20));
    let mut d = Daemon::start(&emulator, tmp.path(), &generated, "");
    let startup = d.next_report(Duration::from_secs(120)).await;
    assert_eq!(startup.verdict, Verdict::InSync, "{:?}", startup.error);
    let metrics = d.daemon.context.metrics.clone();
    let drifted = move || {
        let text = metrics.render_cached();
        let text = String::from_utf8_lossy(&text).to_string();
        text.lines()
            .find(|l| l.starts_with("driftwatch_probe_drifted{"))
            .map(|l| l.ends_with(" 1"))
            .unwrap_or(false)
    };
    let wait_for = |want: bool| {
        let drifted = drifted.clone();
        async move {
            let started = std::time::Instant::now();
            while drifted() != want {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "no verdict within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            started.elapsed()
        }
    };
    let mut samples = Vec::new();
    for edit in 0..20 {
        let namespace = format!("team-{:02}", edit % 50);
        emulator.patch("Deployment", &namespace, "app-0", |d| {
            d["spec"]["replicas"] = json!(5)
        });
        samples.push(wait_for(true).await);
        emulator.patch("Deployment", &namespace, "app-0", |d| {
            d["spec"]["replicas"] = json!(2)
        });
        wait_for(false).await;
    }
    samples.sort();
    let (mean, max) = mean_max_ms(&samples);
    println!(
        "kubernetes edit to verdict: 5,000 objects, 20 edits, debounce 2 s, 20 ms per API request"
    );
    println!("  edit -> driftwatch_probe_drifted = 1: mean {:.2} s, p50 {:.2} s, p99 (max of 20) {:.2} s",
        mean / 1000.0, samples[9].as_secs_f64(), max / 1000.0);
    d.stop().await;
}

/// A `kubectl scale` against the emulator (which takes kubectl's writes) is
/// seen from the cache, and the drifted field still names who changed it
/// (managedFields are kept in the cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_is_seen_live_and_names_its_manager() {
    if !common::have_tool("kubectl") {
        return;
    }
    let s = setup("").await;
    assert_eq!(s.check().await.verdict(), Verdict::InSync);
    let kubeconfig = s.emulator.write_kubeconfig(s.tmp.path());
    let output = std::process::Command::new("kubectl")
        .args(["-n", "shop", "scale", "deployment", "web", "--replicas=5"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", s.tmp.path())
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    s.live_change().await;
    let outcome = s.check().await;
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    let diff = &outcome.changes[0].diff;
    assert!(
        diff.contains("spec.replicas") && diff.contains("kubectl"),
        "{diff}"
    );
}
