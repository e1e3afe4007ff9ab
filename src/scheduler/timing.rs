//! When probes run: the per-repo poll loop (with backoff after failed syncs), the cron loop per
//! probe, the live-change loop for probes that watch what they compare, and the ownership loop that
//! runs newly owned instances at once when the cluster's member set changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::model::instance::InstanceId;
use crate::repo::Repo;

use super::*;

impl Scheduler {
    pub(super) async fn poll_loop(self: Arc<Self>, repo: Arc<Repo>) {
        let mut started = false;
        let mut failures = 0u32;
        loop {
            let synced = self.sync_repo(&repo).await.is_ok();
            failures = if synced { 0 } else { failures + 1 };
            if synced && !started {
                started = true;
                for index in 0..self.probes.len() {
                    if self.probes[index].config.repo == repo.name() {
                        self.spawn_probe(index, Trigger::Startup);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry_delay(repo.config.poll_interval, failures)) => {}
                _ = self.stopping.cancelled() => return,
            }
        }
    }

    pub(super) async fn cron_loop(self: Arc<Self>, index: usize) {
        let Some(schedule) = self.probes[index].config.schedule.clone() else {
            return;
        };
        loop {
            let now = Utc::now();
            let Some(next) = schedule.next_cron_time(now) else {
                return;
            };
            self.update_next_runs(index);
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stopping.cancelled() => return,
            }
            // Before the first sync there is nothing to check; the startup run follows it.
            if self.repo_synced(index) {
                self.spawn_probe(index, Trigger::Schedule);
            }
        }
    }

    /// Whether the probe's repo has synced at least once.
    pub(super) fn repo_synced(&self, index: usize) -> bool {
        self.synced
            .lock()
            .unwrap()
            .contains(&self.probes[index].config.repo)
    }

    /// Whether this replica owns at least one known instance of the probe.
    pub(super) fn owns_any(&self, index: usize) -> bool {
        self.cluster.is_single()
            || self
                .state
                .instances_of(&self.probes[index].config.name)
                .iter()
                .any(|id| self.cluster.owns(id))
    }

    /// Follows the member set: runs the instances this replica newly owns
    /// that have no fresh verdict, and forgets the counters of those it
    /// lost (their series leave `/metrics` with the ownership itself).
    pub(super) async fn ownership_loop(self: Arc<Self>) {
        let mut members = self.cluster.subscribe();
        loop {
            self.ownership_changed();
            tokio::select! {
                changed = members.changed() => if changed.is_err() { return },
                _ = self.stopping.cancelled() => return,
            }
        }
    }

    pub(super) fn ownership_changed(self: &Arc<Self>) {
        let now_owned: HashSet<InstanceId> = self
            .state
            .instances()
            .into_iter()
            .filter(|id| self.cluster.owns(id))
            .collect();
        let (gained, lost) = {
            let mut owned = self.owned.lock().unwrap();
            let gained: Vec<InstanceId> = now_owned.difference(&owned).cloned().collect();
            let lost: Vec<InstanceId> = owned.difference(&now_owned).cloned().collect();
            *owned = now_owned;
            (gained, lost)
        };
        self.metrics.state_changed();
        if !gained.is_empty() || !lost.is_empty() {
            tracing::info!(
                members = self.cluster.members().len(),
                gained = gained.len(),
                lost = lost.len(),
                "cluster membership changed"
            );
        }
        for id in &lost {
            if let Some(entry) = self.probes.iter().find(|p| p.config.name == id.probe) {
                self.metrics.forget(id, &entry.config.layer);
            }
        }
        if gained.is_empty() || self.stopping.is_cancelled() {
            return;
        }
        // The handover (`crate::handover`) seeds gained instances with the
        // previous owner's status as soon as the members change; runs wait
        // for it a moment, so a run continues the previous owner's drift
        // episode instead of a stale one this replica kept from an earlier
        // ownership, and a verdict it brings can make the run unneeded.
        let this = self.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(TAKEOVER_DELAY) => {}
                _ = this.stopping.cancelled() => return,
            }
            let mut due: HashMap<usize, HashSet<String>> = HashMap::new();
            for id in gained {
                let Some(index) = this.probes.iter().position(|p| p.config.name == id.probe) else {
                    continue;
                };
                if !this.cluster.owns(&id) || this.is_fresh(index, &id) {
                    continue;
                }
                due.entry(index).or_default().insert(id.root);
            }
            for (index, roots) in due {
                // Before its repo's first sync the start-up run covers it.
                if !this.repo_synced(index) || this.stopping.is_cancelled() {
                    continue;
                }
                let runner = this.clone();
                this.tracker.spawn(async move {
                    runner
                        .run_probe_roots(index, Trigger::Ownership, Some(roots))
                        .await;
                });
            }
        });
    }

    /// Whether the last verdict this replica holds for `id` (its own, or
    /// one the handover took from the previous owner) makes a run on
    /// takeover unneeded: a scheduled probe's verdict at the current commit
    /// that is younger than one schedule interval. An unscheduled probe
    /// always runs: without a schedule nothing else would notice drift in
    /// reality that happened while the owner changed.
    pub(super) fn is_fresh(&self, index: usize, id: &InstanceId) -> bool {
        let entry = &self.probes[index];
        let Some(schedule) = &entry.config.schedule else {
            return false;
        };
        let Some(report) = self.state.get(id).and_then(|status| status.last_report) else {
            return false;
        };
        let current = self
            .repos
            .iter()
            .find(|r| r.name() == entry.config.repo)
            .and_then(|repo| repo.current());
        match current {
            Some(checkout) if checkout.commit == report.commit => {}
            _ => return false,
        }
        let age = (Utc::now() - report.started_at).num_milliseconds() as f64 / 1000.0;
        age < schedule_interval(schedule)
    }

    /// Refreshes the next run of every known instance of one probe.
    pub(super) fn update_next_runs(&self, index: usize) {
        let probe = &self.probes[index].config;
        for id in self.state.instances_of(&probe.name) {
            self.update_next_run(probe, &id.root);
        }
    }

    /// Runs a probe each time its live state changes (the probe debounces).
    /// A change seen while another run of it is going is checked after that
    /// run, which may have read the state before the change.
    pub(super) async fn live_loop(self: Arc<Self>, index: usize) {
        let probe = self.probes[index].probe.clone();
        loop {
            tokio::select! {
                _ = probe.live_change() => {}
                _ = self.stopping.cancelled() => return,
            }
            loop {
                let token = self.tracker.token();
                if self.stopping.is_cancelled() {
                    return;
                }
                // Another replica runs it (an empty run here is no skip);
                // before the first sync the start-up run follows the sync.
                if !self.owns_any(index) || !self.repo_synced(index) {
                    break;
                }
                if !self.run_probe(index, Trigger::LiveChange).await.is_empty() {
                    break;
                }
                drop(token);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = self.stopping.cancelled() => return,
                }
            }
        }
    }
}

/// How long to wait before the next sync after `failures` failed ones in a
/// row: the poll interval, doubling per failure up to 8 times it, and never
/// more than 5 minutes beyond the poll interval, so the sync-age alert
/// (a multiple of the poll interval) still sees retries.
fn retry_delay(poll_interval: Duration, failures: u32) -> Duration {
    if failures <= 1 {
        return poll_interval;
    }
    let backoff = poll_interval.saturating_mul(1 << (failures - 1).min(3));
    backoff.min(poll_interval.max(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_syncs_back_off_within_bounds() {
        let minute = Duration::from_secs(60);
        let delays: Vec<u64> = (0..7).map(|n| retry_delay(minute, n).as_secs()).collect();
        assert_eq!(delays, [60, 60, 120, 240, 300, 300, 300]);
        let second = Duration::from_secs(1);
        let delays: Vec<u64> = (0..6).map(|n| retry_delay(second, n).as_secs()).collect();
        assert_eq!(delays, [1, 1, 2, 4, 8, 8]);
        let hour = Duration::from_secs(3600);
        assert_eq!(retry_delay(hour, 5), hour);
    }
}
