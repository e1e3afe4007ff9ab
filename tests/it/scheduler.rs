//! Scheduler limits, through the library: global concurrency, one run per
//! instance at a time, and what a trigger during a run does.

use std::time::Duration;

use crate::common::init_repo;

/// Five probes that each log their start and end; at most two may overlap.
fn config(dir: &std::path::Path, log: &std::path::Path) -> std::path::PathBuf {
    let work = dir.join("work");
    let script = format!(
        "#!/bin/sh\necho \"start $(date +%s%N)\" >> '{log}'\nsleep 0.4\necho \"end $(date +%s%N)\" >> '{log}'\n",
        log = log.display()
    );
    init_repo(&work, &[("probe.sh", &script)]);
    let mut text = format!(
        r#"state_dir = "{state}"

[defaults]
max_concurrent_runs = 2

[[repo]]
name = "infra"
url = "file://{work}"
"#,
        state = dir.join("state").display(),
        work = work.display()
    );
    for i in 0..5 {
        text.push_str(&format!(
            "\n[[probe]]\nname = \"p{i}\"\nlayer = \"command\"\nschedule = \"\"\ncommand = [\"sh\", \"probe.sh\"]\n"
        ));
    }
    let path = dir.join("driftwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The largest number of runs in progress at once, from the start/end log.
fn max_overlap(log: &str) -> i32 {
    let mut events: Vec<(u128, i32)> = log
        .lines()
        .filter_map(|line| {
            let (kind, at) = line.split_once(' ')?;
            Some((
                at.split(' ').next()?.parse().ok()?,
                if kind == "start" { 1 } else { -1 },
            ))
        })
        .collect();
    // Ends sort before starts at the same instant.
    events.sort();
    let (mut now, mut max) = (0, 0);
    for (_, delta) in events {
        now += delta;
        max = max.max(now);
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_limit_bounds_concurrent_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("runs.log");
    let config = driftwatch::app::load_config(&config(tmp.path(), &log)).unwrap();
    let daemon = driftwatch::app::build(config, false).unwrap();
    let reports = driftwatch::scheduler::run_once(&daemon.scheduler, &[])
        .await
        .unwrap();
    assert_eq!(reports.len(), 5);
    assert!(reports
        .iter()
        .all(|r| r.verdict == driftwatch::model::outcome::Verdict::InSync));
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.lines().count(), 10);
    assert_eq!(
        max_overlap(&log),
        2,
        "runs overlapped beyond the limit, or never ran in parallel:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_never_runs_twice_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("runs.log");
    let config = driftwatch::app::load_config(&config(tmp.path(), &log)).unwrap();
    let daemon = driftwatch::app::build(config, false).unwrap();
    // Sync first so the manual triggers have a checkout to run on.
    driftwatch::scheduler::run_once(&daemon.scheduler, &["p1".to_string()])
        .await
        .unwrap();
    std::fs::remove_file(&log).unwrap();

    // Two triggers at once: one runs, the other waits for it and runs after.
    let mut reports = daemon.scheduler.subscribe();
    daemon.scheduler.trigger("p0").unwrap();
    daemon.scheduler.trigger("p0").unwrap();
    for _ in 0..2 {
        let report = tokio::time::timeout(Duration::from_secs(60), reports.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.probe, "p0");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(reports.try_recv().is_err(), "a third run of p0 happened");

    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.lines().count(), 4, "exactly two runs of p0:\n{log}");
    assert_eq!(max_overlap(&log), 1, "the two runs overlapped:\n{log}");
    let metrics = daemon.context.metrics.render();
    assert!(
        metrics.contains(
            "driftwatch_probe_skipped_runs_total{layer=\"command\",probe=\"p0\",root=\"\"} 0"
        ),
        "{metrics}"
    );
}

/// One probe whose run takes `seconds` and logs its start (with the commit
/// it runs on) and end.
fn slow_probe(dir: &std::path::Path, log: &std::path::Path, seconds: f32) -> std::path::PathBuf {
    let work = dir.join("work");
    let script = format!(
        "#!/bin/sh\necho \"start $(date +%s%N) $DRIFTWATCH_COMMIT\" >> '{log}'\nsleep {seconds}\necho \"end $(date +%s%N)\" >> '{log}'\n",
        log = log.display()
    );
    init_repo(&work, &[("probe.sh", &script)]);
    let text = format!(
        "state_dir = \"{state}\"\n\n[[repo]]\nname = \"infra\"\nurl = \"file://{work}\"\npoll_interval = \"1h\"\n\n\
         [[probe]]\nname = \"slow\"\nlayer = \"command\"\nschedule = \"\"\ncommand = [\"sh\", \"probe.sh\"]\n",
        state = dir.join("state").display(),
        work = work.display()
    );
    let path = dir.join("driftwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until the log holds `starts` run starts.
async fn started(log: &std::path::Path, starts: usize) {
    for _ in 0..600 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().filter(|l| l.starts_with("start ")).count() >= starts {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no run {starts} started");
}

/// A trigger that arrives while the instance runs: each kind, what it does
/// then. Scheduled ticks are skipped (the next tick comes anyway); a manual
/// trigger, a new commit and (the same path) a live change or a takeover
/// queue one run after the current one, on the newest commit, however
/// many of them arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_during_a_run_is_skipped_only_when_it_is_the_schedule() {
    use driftwatch::scheduler::Trigger;
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("runs.log");
    let config = driftwatch::app::load_config(&slow_probe(tmp.path(), &log, 1.5)).unwrap();
    let daemon = driftwatch::app::build(config, false).unwrap();
    let scheduler = daemon.scheduler.clone();
    driftwatch::scheduler::run_once(&scheduler, &["slow".to_string()])
        .await
        .unwrap();
    std::fs::remove_file(&log).unwrap();
    let skipped = |n: u32| {
        let metrics = daemon.context.metrics.render();
        let line = format!(
            "driftwatch_probe_skipped_runs_total{{layer=\"command\",probe=\"slow\",root=\"\"}} {n}"
        );
        assert!(metrics.contains(&line), "want {line}:\n{metrics}");
    };
    let mut reports = scheduler.subscribe();

    // The schedule during a run: skipped, counted, nothing waits.
    scheduler.trigger("slow").unwrap();
    started(&log, 1).await;
    let got = scheduler.run_probe(0, Trigger::Schedule).await;
    assert!(
        got.is_empty(),
        "a scheduled run happened during a run: {got:?}"
    );
    skipped(1);
    let first = reports.recv().await.unwrap();
    assert_eq!(first.trigger, "manual");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(reports.try_recv().is_err(), "the skipped tick ran later");

    // Three manual triggers during a run: one more run, after it.
    scheduler.trigger("slow").unwrap();
    started(&log, 2).await;
    for _ in 0..3 {
        scheduler.trigger("slow").unwrap();
    }
    let own = reports.recv().await.unwrap();
    let queued = tokio::time::timeout(Duration::from_secs(60), reports.recv())
        .await
        .expect("the queued run follows")
        .unwrap();
    assert_eq!(
        (own.trigger.as_str(), queued.trigger.as_str()),
        ("manual", "manual")
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        reports.try_recv().is_err(),
        "queued triggers were not coalesced"
    );
    skipped(1);

    // A new commit during a run: the run after it checks the new commit.
    let old = own.commit.clone();
    scheduler.trigger("slow").unwrap();
    started(&log, 4).await;
    let new = crate::common::commit_files(
        &tmp.path().join("work"),
        &[("README", "a change while the probe runs\n")],
        "change",
    );
    scheduler.trigger_sync(Some("infra")).unwrap();
    let own = reports.recv().await.unwrap();
    assert_eq!(
        (own.trigger.as_str(), own.commit.as_str()),
        ("manual", old.as_str())
    );
    let after = tokio::time::timeout(Duration::from_secs(60), reports.recv())
        .await
        .expect("the change's run follows")
        .unwrap();
    assert_eq!(
        (after.trigger.as_str(), after.commit.as_str()),
        ("change", new.as_str())
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(max_overlap(&text), 1, "runs overlapped:\n{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("start ")).count(),
        5,
        "{text}"
    );
    skipped(1);
}

/// A probe whose run panics: it counts its runs so the test can see that a
/// second run happens (the instance was freed, not left busy).
struct PanickingProbe(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl driftwatch::probe::Probe for PanickingProbe {
    fn layer(&self) -> &'static str {
        "command"
    }

    async fn run(
        &self,
        _cx: &driftwatch::probe::ProbeContext,
    ) -> Result<driftwatch::model::outcome::Outcome, driftwatch::model::outcome::ProbeError> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        panic!("probe bug number {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_probe_is_an_internal_error_and_frees_its_instance() {
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("runs.log");
    let mut config = driftwatch::app::load_config(&config(tmp.path(), &log)).unwrap();
    config.probes.truncate(1);
    let config = Arc::new(config);
    let state = Arc::new(driftwatch::state::State::ephemeral());
    let metrics = Arc::new(driftwatch::metrics::Metrics::new(
        state.clone(),
        &Default::default(),
        config.defaults.max_resource_series,
    ));
    let probe = Arc::new(PanickingProbe(Default::default()));
    let scheduler = driftwatch::scheduler::Scheduler::new(
        config,
        vec![probe.clone() as Arc<dyn driftwatch::probe::Probe>],
        state,
        metrics,
    );
    for attempt in 1..=2 {
        let reports = driftwatch::scheduler::run_once(&scheduler, &[])
            .await
            .unwrap();
        assert_eq!(reports.len(), 1, "attempt {attempt}");
        let report = &reports[0];
        assert_eq!(report.verdict, driftwatch::model::outcome::Verdict::Error);
        let error = report.error.as_ref().expect("an error on the report");
        assert_eq!(
            error.reason,
            driftwatch::model::outcome::ErrorReason::Internal
        );
        assert!(
            error
                .message
                .contains(&format!("probe bug number {attempt}")),
            "{}",
            error.message
        );
    }
    // Both runs reached the probe: the first panic did not leave it busy.
    assert_eq!(probe.0.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// `[defaults] max_changes_per_report` cuts what a run's report keeps; the
/// full count, the truncated flag and the verdict stay.
#[tokio::test]
async fn the_configured_report_cap_applies_to_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let resources: Vec<String> = (0..7)
        .map(|i| format!("{{\"subject\": \"file-{i}\", \"action\": \"changed\"}}"))
        .collect();
    let script = format!(
        "#!/bin/sh\necho '{{\"protocol\": 1, \"resources\": [{}]}}'\nexit 2\n",
        resources.join(", ")
    );
    init_repo(&work, &[("plugin.sh", &script)]);
    let config = tmp.path().join("driftwatch.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{state}\"\n\n[defaults]\nmax_changes_per_report = 3\n\n[[repo]]\nname = \"infra\"\nurl = \"file://{work}\"\n\n\
             [[probe]]\nname = \"plugin\"\nlayer = \"command\"\nschedule = \"\"\noutput = \"json\"\ncommand = [\"sh\", \"plugin.sh\"]\n",
            state = tmp.path().join("state").display(),
            work = work.display()
        ),
    )
    .unwrap();
    let config = driftwatch::app::load_config(&config).unwrap();
    let daemon = driftwatch::app::build(config, false).unwrap();
    let reports = driftwatch::scheduler::run_once(&daemon.scheduler, &[])
        .await
        .unwrap();
    let report = &reports[0];
    assert_eq!(
        report.verdict,
        driftwatch::model::outcome::Verdict::Drifted,
        "{report:?}"
    );
    let kept: Vec<&str> = report.changes.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(kept, ["file-0", "file-1", "file-2"]);
    assert!(report.truncated);
    assert_eq!(report.total_changes, 7);
    assert_eq!(report.change_count(), 7);
}
