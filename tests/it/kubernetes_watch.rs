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

use driftwatch::probe::{Outcome, Probe, ProbeContext, Verdict};
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
    s.emulator.forbid_watch("deployments.apps");
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

/// The daemon end to end: after the startup run, a live edit becomes a run
/// with trigger `live-change` (no schedule), and the metrics say drifted and
/// show the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_runs_a_live_change_check_and_exports_cache_health() {
    let emulator = KubeEmulator::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let deploy = work.join("deploy");
    copy_dir(&Path::new(FIXTURES).join("app"), &deploy);
    seed_dir(&emulator, &deploy);
    let files: Vec<(String, String)> = std::fs::read_dir(&deploy)
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
    std::fs::remove_dir_all(&deploy).unwrap();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    common::init_repo(&work, &refs);
    let kubeconfig: PathBuf = emulator.write_kubeconfig(tmp.path());
    let config_path = tmp.path().join("driftwatch.toml");
    std::fs::write(
        &config_path,
        format!(
            "state_dir = \"{state}\"\n\n[[repo]]\nname = \"infra\"\nurl = \"file://{work}\"\n\n\
             [[probe]]\nname = \"k8s\"\nlayer = \"kubernetes\"\npath = \"deploy\"\nschedule = \"\"\n\
             kubeconfig = \"{kubeconfig}\"\nwatch_debounce = \"200ms\"\n",
            state = tmp.path().join("state").display(),
            work = work.display(),
            kubeconfig = kubeconfig.display()
        ),
    )
    .unwrap();
    let config = driftwatch::app::load_config(&config_path).unwrap();
    let daemon = driftwatch::app::build(config, false).unwrap();
    let scheduler = daemon.scheduler.clone();
    let mut reports = scheduler.subscribe();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(scheduler.clone().run(shutdown.clone()));
    macro_rules! next_report {
        () => {
            tokio::time::timeout(Duration::from_secs(20), reports.recv())
                .await
                .expect("a report within 20 s")
                .unwrap()
        };
    }
    assert!(
        !scheduler.is_ready()
            || daemon
                .context
                .metrics
                .render()
                .contains("driftwatch_probe_cache_synced")
    );
    let startup = next_report!();
    assert_eq!(startup.trigger, "startup");
    assert_eq!(startup.verdict, Verdict::InSync, "{:?}", startup.error);
    assert!(scheduler.is_ready());

    emulator.patch("Deployment", "shop", "web", |d| {
        d["spec"]["replicas"] = json!(6)
    });
    let live = next_report!();
    assert_eq!(live.trigger, "live-change");
    assert_eq!(live.verdict, Verdict::Drifted);
    assert_eq!(live.changes[0].subject, "Deployment/shop/web");

    let metrics = daemon.context.metrics.render();
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
    shutdown.cancel();
    running.await.unwrap();
    assert_eq!(emulator.writes(), 0);
}
