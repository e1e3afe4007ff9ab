//! Children that leave the process group (setsid, a double fork, setpgrp)
//! die with their run all the same: when it ends normally, when it times
//! out, and when its future is dropped. The daemon's SIGTERM case is in
//! daemon.rs, the Terraform and Ansible layers' in their own modules.

use std::sync::Arc;
use std::time::Duration;

use driftwatch::model::outcome::{ErrorReason, Verdict};
use driftwatch::probe::Probe;

use crate::common::{self, Escapees};

fn shell(script: &str) -> String {
    format!(
        "shell = true\ncommand = {}\n",
        toml::Value::String(script.to_string())
    )
}

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("checkout/probe")).unwrap();
        Fixture { tmp }
    }

    fn context(&self, timeout: Duration) -> driftwatch::probe::ProbeContext {
        common::probe_context(
            "cmd",
            &self.tmp.path().join("checkout"),
            "probe",
            &self.tmp.path().join("run"),
            timeout,
        )
    }

    /// Escapees, and a command probe whose script starts them, then runs `then`.
    fn escaping_probe(&self, then: &str) -> (Escapees, Arc<dyn Probe>) {
        let escapees = Escapees::new(&self.tmp.path().join("pids"));
        let probe =
            common::build_probe("command", "cmd", "probe", &shell(&escapees.script(then))).unwrap();
        (escapees, probe)
    }
}

/// Polls the run until every escapee is running (it must not end first).
async fn drive_until_started<F>(mut run: std::pin::Pin<&mut F>, escapees: &Escapees)
where
    F: std::future::Future,
    F::Output: std::fmt::Debug,
{
    let started = std::time::Instant::now();
    while !escapees.started() {
        assert!(started.elapsed() < Duration::from_secs(60), "never started");
        tokio::select! {
            result = &mut run => panic!("the run ended early: {result:?}"),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

#[track_caller]
fn assert_all_gone(escapees: &Escapees) {
    assert!(escapees.started(), "the escapees never started");
    let survivors = escapees.survivors();
    escapees.cleanup();
    assert!(survivors.is_empty(), "outlived their run: {survivors:?}");
}

#[tokio::test]
async fn escaped_children_die_when_the_run_ends() {
    let fx = Fixture::new();
    let (escapees, probe) = fx.escaping_probe("exit 2");
    let outcome = probe.run(&fx.context(Duration::from_secs(60))).await;
    // They held the run's stdout and stderr open, yet the verdict stands.
    assert_eq!(outcome.unwrap().verdict(), Verdict::Drifted);
    assert_all_gone(&escapees);
}

#[tokio::test]
async fn escaped_children_die_when_the_run_times_out() {
    let fx = Fixture::new();
    let (escapees, probe) = fx.escaping_probe("wait");
    let cx = fx.context(Duration::from_secs(5));
    let err = probe.run(&cx).await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::Timeout, "{err:?}");
    assert_all_gone(&escapees);
}

#[tokio::test]
async fn escaped_children_die_when_the_run_is_cancelled() {
    let fx = Fixture::new();
    let (escapees, probe) = fx.escaping_probe("wait");
    let cx = fx.context(Duration::from_secs(600));
    let run = probe.run(&cx);
    tokio::pin!(run);
    drive_until_started(run.as_mut(), &escapees).await;
    cx.cancel.cancel();
    let err = run.await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::Cancelled, "{err:?}");
    assert_all_gone(&escapees);
}

#[tokio::test]
async fn escaped_children_die_when_the_run_is_dropped() {
    let fx = Fixture::new();
    let (escapees, probe) = fx.escaping_probe("wait");
    let cx = fx.context(Duration::from_secs(600));
    {
        let run = probe.run(&cx);
        tokio::pin!(run);
        drive_until_started(run.as_mut(), &escapees).await;
        // Leaving the block drops the run mid-flight, as an aborted task does:
        // no await of the run's own cleanup ever happens.
    }
    assert_all_gone(&escapees);
}
