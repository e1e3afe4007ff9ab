//! Running probes: spawning a run under the global semaphore and the per-instance busy claim,
//! listing a probe's roots and running each instance with its deadline, cancellation and panic
//! containment, and publishing every run as a `RunReport` (with acknowledgements applied) to state,
//! metrics, the log and subscribers.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::ProbeSpec;
use crate::model::instance::{InstanceId, Removal};
use crate::model::outcome::{ErrorReason, ProbeError};
use crate::model::outcome::{RunReport, Verdict};
use crate::probe::{Probe, ProbeContext};
use crate::repo::Checkout;

use super::*;

impl Scheduler {
    pub(super) fn spawn_probe(self: &Arc<Self>, index: usize, trigger: Trigger) {
        if self.stopping.is_cancelled() {
            return;
        }
        let this = self.clone();
        self.tracker.spawn(async move {
            this.run_probe(index, trigger).await;
        });
    }

    /// Runs every root of one probe and waits for them; returns the reports of
    /// the runs that happened (skipped instances have none).
    pub async fn run_probe(
        self: &Arc<Self>,
        index: usize,
        trigger: Trigger,
    ) -> Vec<Arc<RunReport>> {
        self.run_probe_roots(index, trigger, None).await
    }

    /// Runs the owned roots of one probe, or only those of them in `only`;
    /// returns the reports of this trigger's own runs. A run that was
    /// queued behind one of them (see [`Claim::Queued`]) follows it here,
    /// once per round, until none is queued.
    pub(super) async fn run_probe_roots(
        self: &Arc<Self>,
        index: usize,
        trigger: Trigger,
        only: Option<HashSet<String>>,
    ) -> Vec<Arc<RunReport>> {
        let first = self.run_round(index, trigger, only).await;
        let mut queued = first.queued;
        while let Some(&(_, trigger)) = queued.first() {
            if self.stopping.is_cancelled() {
                break;
            }
            let (these, rest): (Vec<_>, Vec<_>) =
                queued.into_iter().partition(|(_, t)| *t == trigger);
            let roots = these.into_iter().map(|(root, _)| root).collect();
            queued = rest;
            queued.extend(self.run_round(index, trigger, Some(roots)).await.queued);
        }
        first.reports
    }

    /// One round of [`Self::run_probe_roots`]: lists the roots at the
    /// newest checkout and runs the owned ones (in `only`, if given).
    async fn run_round(
        self: &Arc<Self>,
        index: usize,
        trigger: Trigger,
        only: Option<HashSet<String>>,
    ) -> Round {
        let entry = &self.probes[index];
        let probe = &entry.config;
        let Some(repo) = self.repos.iter().find(|r| r.name() == probe.repo).cloned() else {
            return Round::default();
        };
        let Some(checkout) = repo.current() else {
            let error = ProbeError::new(
                ErrorReason::Checkout,
                format!(
                    "repo {} has not synced yet; check its url and credentials",
                    probe.repo
                ),
            );
            return Round::of(self.finish_without_roots(probe, None, trigger, error));
        };
        let probe_dir = checkout.dir.join(&probe.path);
        let roots = if probe_dir.is_dir() {
            // Layers walk the checkout to find their roots: blocking file I/O.
            let (runner, dir) = (entry.probe.clone(), probe_dir.clone());
            tokio::task::spawn_blocking(move || runner.roots(&dir))
                .await
                .unwrap_or_else(|err| {
                    Err(ProbeError::new(
                        ErrorReason::Internal,
                        format!("listing roots failed: {err}"),
                    ))
                })
        } else {
            Err(ProbeError::new(
                ErrorReason::Checkout,
                format!(
                    "path {:?} does not exist in repo {} at {}",
                    probe.path,
                    probe.repo,
                    short(&checkout.commit)
                ),
            ))
        };
        let listed = match roots {
            Ok(listed) => listed,
            Err(error) => {
                return Round::of(self.finish_without_roots(
                    probe,
                    Some(&checkout),
                    trigger,
                    error,
                ));
            }
        };
        // A root pattern that matches nothing is as loud as a failed
        // listing, without blinding the roots that are there: a WARN line
        // per round and a warning on each instance's report.
        let warnings = Arc::new(listed.warnings());
        for warning in warnings.iter() {
            tracing::warn!(
                probe = %probe.name,
                commit = short(&checkout.commit),
                "{warning}"
            );
        }
        self.set_instances(probe, &listed.roots, &checkout);
        self.update_next_runs(index);
        let mut handles = Vec::new();
        for root in listed.roots {
            let id = InstanceId::new(&probe.name, root.as_str());
            if !self.cluster.owns(&id) || only.as_ref().is_some_and(|only| !only.contains(&root)) {
                continue;
            }
            // Scheduled runs start at the cron time plus the instance's own
            // offset, so many probes on one expression do not start together.
            let delay = match (&probe.schedule, trigger) {
                (Some(schedule), Trigger::Schedule) => schedule.offset(&id.to_string()),
                _ => Duration::ZERO,
            };
            let this = self.clone();
            let mut checkout = checkout.clone();
            let repo = repo.clone();
            let parallelism = entry.parallelism.clone();
            let warnings = warnings.clone();
            handles.push(tokio::spawn(async move {
                if !delay.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = this.stopping.cancelled() => return None,
                    }
                    // A commit may have arrived while waiting.
                    checkout = repo.current().unwrap_or(checkout);
                }
                // Frees the instance however the run ends, a panic included.
                let busy = match Busy::claim(&this, id.clone(), trigger) {
                    Claim::Claimed(busy) => busy,
                    Claim::Queued => {
                        tracing::info!(probe = %id, trigger = trigger.as_str(), "previous run still going; this one runs after it");
                        return None;
                    }
                    Claim::Skipped => {
                        tracing::info!(probe = %id, trigger = trigger.as_str(), "previous run still going; skipping this one");
                        let layer = &this.probes[index].config.layer;
                        this.metrics.skipped_run(&id, layer);
                        return None;
                    }
                };
                let report = this
                    .run_instance(index, root.clone(), checkout, trigger, parallelism, &warnings)
                    .await;
                // A trigger that came during the run asked for a look at
                // what is there now (a new commit, a live change, a person
                // pressing run): it runs once more, on the newest checkout,
                // if the root still exists there.
                let queued = busy.release().map(|trigger| (root, trigger));
                Some((report, queued))
            }));
        }
        let mut round = Round::default();
        for handle in handles {
            if let Ok(Some((report, queued))) = handle.await {
                round.reports.push(report);
                round.queued.extend(queued);
            }
        }
        round
    }

    pub(super) async fn run_instance(
        self: &Arc<Self>,
        index: usize,
        root: String,
        checkout: Arc<Checkout>,
        trigger: Trigger,
        parallelism: Arc<Semaphore>,
        listing_warnings: &[String],
    ) -> Arc<RunReport> {
        let probe = &self.probes[index].config;
        let runner = self.probes[index].probe.clone();
        let _probe_permit = parallelism.acquire_owned().await.expect("semaphore open");
        let _global_permit = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let run_id = self.next_run_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "probe_run",
            probe = %InstanceId::new(&probe.name, root.as_str()),
            layer = %probe.layer,
            commit = short(&checkout.commit),
            run_id
        );
        async {
            let started_at = Utc::now();
            let clock = std::time::Instant::now();
            let result = self.execute(probe, &runner, &root, &checkout).await;
            let mut report =
                new_report(probe, &root, run_id, trigger, &checkout.commit, started_at);
            report.duration = clock.elapsed();
            report.apply_result_within(result, self.report_limits());
            report.warnings.extend(listing_warnings.iter().cloned());
            // The repo's acks at this commit; a broken file is a warning
            // on the run, never a reason to skip it.
            let mut repo_acks =
                crate::ack::repo_file::read(&checkout.dir, Utc::now(), self.config.acks.max_expiry);
            repo_acks.check_instances(&probe.repo, &self.repo_instances(&probe.repo));
            report.warnings.extend(repo_acks.problems.iter().cloned());
            let repo_acks = repo_acks.of(&report.probe);
            self.update_next_run(probe, &root);
            self.publish_with_acks(report, Some(repo_acks))
        }
        .instrument(span)
        .await
    }

    /// The instances of each probe of `repo`, to check its acks file's
    /// `instance` against: a multi-root probe's roots as last listed.
    fn repo_instances(&self, repo: &str) -> Vec<(String, crate::ack::repo_file::Instances)> {
        use crate::ack::repo_file::Instances;
        self.probes
            .iter()
            .filter(|entry| entry.config.repo == repo)
            .map(|entry| {
                let name = entry.config.name.clone();
                if entry.probe.single_root() {
                    return (name, Instances::Single);
                }
                let roots: Vec<String> = self
                    .state
                    .instances_of(&name)
                    .into_iter()
                    .map(|id| id.root)
                    .collect();
                // Not listed yet (or its listing failed): only the form
                // can be checked.
                if roots.is_empty() {
                    (name, Instances::Unlisted)
                } else {
                    (name, Instances::Roots(roots))
                }
            })
            .collect()
    }

    /// What one report may hold, from `[defaults]`.
    pub(super) fn report_limits(&self) -> crate::model::outcome::ReportLimits {
        crate::model::outcome::ReportLimits {
            max_changes: self.config.defaults.max_changes_per_report,
            max_bytes: self.config.defaults.max_report_bytes,
        }
    }

    pub(super) async fn execute(
        &self,
        probe: &ProbeSpec,
        runner: &Arc<dyn Probe>,
        root: &str,
        checkout: &Checkout,
    ) -> Result<crate::model::outcome::Outcome, ProbeError> {
        let probe_dir = checkout.dir.join(&probe.path);
        let cache_dir = self
            .config
            .state_dir
            .join("cache")
            .join(sanitize(&probe.name));
        let tmp_root = self.config.state_dir.join("tmp");
        let io = |e: std::io::Error| {
            ProbeError::new(
                ErrorReason::Internal,
                format!(
                    "cannot prepare run directories under {}: {e}",
                    self.config.state_dir.display()
                ),
            )
        };
        std::fs::create_dir_all(&cache_dir).map_err(io)?;
        std::fs::create_dir_all(&tmp_root).map_err(io)?;
        let scratch = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&tmp_root)
            .map_err(io)?;
        let deadline = tokio::time::Instant::now() + probe.timeout;
        let cx = ProbeContext {
            name: probe.name.clone(),
            root: root.to_string(),
            checkout: checkout.dir.clone(),
            workdir: if root.is_empty() {
                probe_dir.clone()
            } else {
                probe_dir.join(root)
            },
            commit: checkout.commit.clone(),
            cancel: self.runs_cancel.child_token(),
            deadline,
            cache_dir,
            scratch_dir: scratch.path().to_path_buf(),
            kill_grace: self.config.defaults.kill_grace,
            fingerprint_key: self.fingerprint_key(),
        };
        // Past this, even a child that ignored SIGTERM has been killed and its
        // pipes drained: only a probe ignoring its own deadline is still waiting.
        let limit =
            probe.timeout + crate::process::overrun_after_deadline(self.config.defaults.kill_grace);
        // Its own task, so a panicking probe becomes an error report.
        let task = AbortOnDrop(tokio::spawn({
            let probe = runner.clone();
            async move { probe.run(&cx).await }
        }));
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => {
                let message = panic_message(join);
                tracing::error!(panic = %message, "probe panicked");
                Err(ProbeError::new(
                    ErrorReason::Internal,
                    format!("the probe panicked: {message}"),
                ))
            }
            Err(_) => Err(ProbeError::new(
                ErrorReason::Timeout,
                format!(
                    "probe did not finish within its timeout of {}",
                    crate::model::duration::compact(probe.timeout)
                ),
            )),
        }
    }

    /// Records a failure that came before any root could be run (no sync
    /// yet, path missing, roots cannot be listed). It goes to every instance
    /// the probe is known to have; with none known, to the probe itself, so
    /// no instance is invented for it.
    pub(super) fn finish_without_roots(
        &self,
        probe: &ProbeSpec,
        checkout: Option<&Checkout>,
        trigger: Trigger,
        error: ProbeError,
    ) -> Vec<Arc<RunReport>> {
        let commit = checkout.map(|c| c.commit.as_str()).unwrap_or("");
        let known = self.state.instances_of(&probe.name);
        if known.is_empty() {
            let run_id = self.next_run_id.fetch_add(1, Ordering::Relaxed);
            let mut report = new_report(probe, "", run_id, trigger, commit, Utc::now());
            report.apply_result_within(Err(error), self.report_limits());
            tracing::warn!(
                probe = %probe.name,
                reason = report.error.as_ref().map(|e| e.reason.as_str()).unwrap_or(""),
                "no instance of the probe is known yet: {}",
                report.summary()
            );
            self.state.record_probe_failure(&report);
            self.metrics.state_changed();
            return vec![Arc::new(report)];
        }
        known
            .into_iter()
            .filter(|id| self.cluster.owns(id))
            .map(|id| {
                let run_id = self.next_run_id.fetch_add(1, Ordering::Relaxed);
                let mut report = new_report(probe, &id.root, run_id, trigger, commit, Utc::now());
                report.apply_result_within(Err(error.clone()), self.report_limits());
                self.publish(report)
            })
            .collect()
    }

    /// Makes the probe's instances what its latest root listing found;
    /// dropped instances lose their state and series, and their open drift
    /// episode ends in history.
    pub(super) fn set_instances(&self, probe: &ProbeSpec, roots: &[String], checkout: &Checkout) {
        let removed = self.state.set_instances(&probe.name, &probe.layer, roots);
        self.metrics.state_changed();
        for status in removed {
            let instance = status.instance();
            tracing::info!(
                probe = %instance,
                commit = short(&checkout.commit),
                "root no longer listed; instance removed"
            );
            self.metrics.forget(&instance, &status.layer);
            let _ = self.removals.send(Arc::new(Removal {
                instance,
                layer: status.layer.clone(),
                commit: checkout.commit.clone(),
                at: Utc::now(),
                was_drifted: status.drifted,
            }));
        }
    }

    /// Records a finished run everywhere: state, metrics, log, subscribers.
    pub(super) fn publish(&self, report: RunReport) -> Arc<RunReport> {
        self.publish_with_acks(report, None)
    }

    /// As [`Scheduler::publish`], also taking in the acks the repo's acks
    /// file holds for the instance at the run's commit (`None`: unknown,
    /// keep the current ones), then bringing every ack up to date.
    pub(super) fn publish_with_acks(
        &self,
        mut report: RunReport,
        repo_acks: Option<Vec<crate::ack::Ack>>,
    ) -> Arc<RunReport> {
        if let Some(web) = self
            .config
            .repos
            .iter()
            .find(|r| r.name == report.repo)
            .and_then(|r| r.web.as_ref())
        {
            report.link(web);
        }
        if self.state.record_if_known(&report).is_none() {
            // A newer listing dropped the instance while it ran.
            tracing::info!(probe = %report.instance(), "run of a removed instance finished; not recorded");
            return Arc::new(report);
        }
        let now = Utc::now();
        let events = self
            .state
            .update(&report.instance(), |status| {
                let mut events = match repo_acks {
                    Some(acks) => crate::ack::store::set_repo_acks(status, acks, now),
                    None => Vec::new(),
                };
                events.extend(crate::ack::store::refresh(status, now));
                events
            })
            .unwrap_or_default();
        self.metrics.observe(&report);
        self.state.persist_soon();
        match &report.error {
            Some(error) => tracing::info!(
                verdict = report.verdict.as_str(),
                reason = error.reason.as_str(),
                duration_ms = report.duration.as_millis() as u64,
                "probe run finished: {}",
                report.summary()
            ),
            None => tracing::info!(
                verdict = report.verdict.as_str(),
                changes = report.changes.len(),
                duration_ms = report.duration.as_millis() as u64,
                "probe run finished: {}",
                report.summary()
            ),
        }
        let report = Arc::new(report);
        let _ = self.reports.send(report.clone());
        // After the run, so history holds the run its ack events name.
        self.publish_ack_events(events);
        report
    }
}

pub(super) fn new_report(
    probe: &ProbeSpec,
    root: &str,
    run_id: u64,
    trigger: Trigger,
    commit: &str,
    started_at: chrono::DateTime<Utc>,
) -> RunReport {
    RunReport {
        probe: InstanceId::new(&probe.name, root).to_string(),
        name: probe.name.clone(),
        root: root.to_string(),
        layer: probe.layer.clone(),
        run_id,
        trigger: trigger.as_str().to_string(),
        repo: probe.repo.clone(),
        commit: commit.to_string(),
        started_at,
        duration: Duration::ZERO,
        verdict: Verdict::Error,
        labels: probe.labels.clone(),
        ..RunReport::default()
    }
}

/// The runs of one round: their reports, and the roots whose runs a
/// trigger asked to follow (with that trigger).
#[derive(Default)]
struct Round {
    reports: Vec<Arc<RunReport>>,
    queued: Vec<(String, Trigger)>,
}

impl Round {
    fn of(reports: Vec<Arc<RunReport>>) -> Round {
        Round {
            reports,
            queued: Vec::new(),
        }
    }
}

/// What claiming an instance for a run gave.
enum Claim {
    /// The instance was free; the guard holds it until the run ends.
    Claimed(Busy),
    /// A run is going; this trigger runs after it (coalesced with any
    /// other queued one: at most one run waits per instance).
    Queued,
    /// A run is going and the trigger was the schedule: its next tick
    /// comes anyway, so nothing waits (counted as a skipped run).
    Skipped,
}

/// Holds an instance in the busy set; dropping it frees the instance,
/// however the run ended (a panic or a dropped future included).
pub(super) struct Busy {
    scheduler: Arc<Scheduler>,
    id: InstanceId,
}

impl Busy {
    fn claim(scheduler: &Arc<Scheduler>, id: InstanceId, trigger: Trigger) -> Claim {
        let mut busy = scheduler.busy.lock().unwrap_or_else(|e| e.into_inner());
        match busy.get_mut(&id) {
            None => {
                busy.insert(id.clone(), None);
                Claim::Claimed(Busy {
                    scheduler: scheduler.clone(),
                    id,
                })
            }
            Some(_) if trigger == Trigger::Schedule => Claim::Skipped,
            Some(queued) => {
                // The newest trigger names the queued run; a manual one is
                // kept over others so the run shows who asked for it.
                if *queued != Some(Trigger::Manual) {
                    *queued = Some(trigger);
                }
                Claim::Queued
            }
        }
    }

    /// Frees the instance and returns the trigger queued behind its run.
    fn release(self) -> Option<Trigger> {
        let queued = self
            .scheduler
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&self.id)
            .and_then(Option::take);
        drop(self);
        queued
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.scheduler
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Aborts the task when dropped (a timed-out or cancelled run).
pub(super) struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The text a panic carried, or what ended the task.
pub(super) fn panic_message(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return join.to_string();
    }
    let payload = join.into_panic();
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}
