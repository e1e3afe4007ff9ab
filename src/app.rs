//! Wires the pieces together: `run` is the daemon, `check` runs once.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::config::{ClusterConfig, Config};
use crate::history::History;
use crate::http::{self, Catalog, SchedulerTriggers, Secrets};
use crate::metrics::Metrics;
use crate::model::outcome::RunReport;
use crate::probe::Probe;
use crate::scheduler::{self, Scheduler};
use crate::state::State;

/// How long a sharded replica keeps serving after releasing its Lease on
/// shutdown: a few of the handover's one-second retries.
const HANDOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
/// How often expired acks are looked for.
const ACK_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything a running daemon is made of.
pub struct Daemon {
    pub config: Arc<Config>,
    pub context: http::Context,
    pub scheduler: Arc<Scheduler>,
    /// Which instances this process runs and exports.
    pub cluster: Cluster,
    /// This replica's status ConfigMap (`kubernetes` mode), the handover's
    /// fallback when a previous owner is gone.
    pub status_store: Option<Arc<crate::handover::StatusStore>>,
}

/// Builds the daemon's parts without starting anything.
pub fn build(mut config: Config, persistent: bool) -> anyhow::Result<Daemon> {
    // A relative state directory (`--state-dir state`) means the invoking
    // process's working directory: made absolute once, here, because tools
    // run with the checkout as theirs (Terraform would put TF_DATA_DIR
    // inside the root).
    config.state_dir = std::path::absolute(&config.state_dir).with_context(|| {
        format!(
            "cannot resolve the state directory {}",
            config.state_dir.display()
        )
    })?;
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "cannot create state directory {}; set state_dir in the config or pass --state-dir",
            config.state_dir.display()
        )
    })?;
    remove_stale_run_dirs(&config.state_dir.join("tmp"));
    let config = Arc::new(config);
    let state = Arc::new(if persistent {
        State::load(&config.state_dir)
    } else {
        State::ephemeral()
    });
    let parked = state.retain_names(&config.probes.iter().map(|p| p.name.clone()).collect());
    if parked && persistent {
        // Acks of a probe left out of the config now wait for it; on disk
        // at once, so a crash before the first run cannot lose them.
        if let Err(err) = state.persist() {
            tracing::warn!(error = %err, "cannot write the state file");
        }
    }
    let label_names: BTreeSet<String> = config
        .probes
        .iter()
        .flat_map(|p| p.labels.keys().cloned())
        .collect();
    let metrics = Arc::new(Metrics::new(
        state.clone(),
        &label_names,
        config.defaults.max_resource_series,
    ));
    // `check` runs what it is asked to, wherever; only the daemon shards.
    let cluster = match (&config.cluster, persistent) {
        (ClusterConfig::Kubernetes(k), true) => Cluster::sharded(&k.identity),
        _ => Cluster::single(),
    };
    metrics.set_cluster(&cluster);
    let probes = build_probes(&config)?;
    let scheduler = Scheduler::with_cluster(
        config.clone(),
        probes,
        state.clone(),
        metrics.clone(),
        cluster.clone(),
    );
    let (key, generated) = crate::model::fingerprint::FingerprintKey::load(
        config.acks.fingerprint_key_file.as_deref(),
        &config.state_dir,
    )
    .map_err(anyhow::Error::msg)?;
    if generated {
        report_new_key(&config.state_dir, &state, persistent);
    }
    scheduler.set_fingerprint_key(key);
    let history =
        persistent.then(|| Arc::new(History::open(&config.state_dir, config.history.clone())));
    let mut context = http::Context::new(
        state,
        metrics,
        Catalog::from_config(&config),
        Arc::new(SchedulerTriggers(scheduler.clone())),
    )
    .context("cannot register the HTTP metrics")?;
    context.history = history;
    context.secrets = Arc::new(Secrets {
        api_token: config.server.api_token.clone(),
        webhook_secret: config.server.webhook_secret.clone(),
        read_token: config.server.read_token.clone(),
        read_users: config.server.read_users.clone(),
        metrics_token: config.server.metrics_token.clone(),
    });
    context.request_timeout = config.server.request_timeout;
    context.ack_max_expiry = config.acks.max_expiry;
    context.cluster = cluster.clone();
    context.peers = crate::handover::Peers::new(
        crate::handover::peers::DEFAULT_TIMEOUT,
        peer_authorization(&context.secrets),
    );
    Ok(Daemon {
        config,
        context,
        scheduler,
        cluster,
        status_store: None,
    })
}

/// Says that a fingerprint key was generated: loudly when acks exist, which
/// were made under another key (a lost or replaced key file) and whose
/// fingerprints of masked values cannot match under this one.
fn report_new_key(state_dir: &std::path::Path, state: &State, persistent: bool) {
    let path = crate::model::fingerprint::default_key_path(state_dir);
    // `check` keeps no state of its own; the daemon's state file has the acks.
    let statuses = match persistent {
        true => state
            .snapshot()
            .into_iter()
            .chain(state.waiting())
            .collect(),
        false => State::peek(state_dir)
            .into_iter()
            .chain(State::peek_waiting(state_dir))
            .collect::<Vec<_>>(),
    };
    let acks = statuses
        .iter()
        .flat_map(|s| &s.acks)
        .filter(|a| a.ended.is_none())
        .count();
    if acks == 0 {
        tracing::info!(path = %path.display(), "generated the fingerprint key; replicas of a cluster must share it ([acks] fingerprint_key_file)");
        return;
    }
    tracing::warn!(
        path = %path.display(),
        acks,
        "generated a new fingerprint key, but {acks} acknowledgement(s) were made under another key: \
         where they cover values driftwatch masks (Kubernetes Secret data, Terraform sensitive values), \
         their fingerprints will not match, so that drift shows as mismatched and alerts again; \
         restore the previous key file (or set [acks] fingerprint_key_file to the key the replicas share) \
         and restart, or acknowledge that drift again"
    );
}

/// The credential replicas present to each other's read API: the read
/// token, else the first read user (they share one config).
fn peer_authorization(secrets: &Secrets) -> Option<String> {
    use base64::Engine;
    if let Some(token) = &secrets.read_token {
        return Some(format!("Bearer {token}"));
    }
    secrets.read_users.first().map(|(user, password)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    })
}

/// Reads and validates a config file, checking each probe's layer fields.
pub fn load_config(path: &std::path::Path) -> Result<Config, crate::config::ConfigErrors> {
    crate::config::load(path, &crate::probe::Layers)
}

/// Turns each probe spec into its running probe. A spec from `load_config`
/// always builds; an error here means the config was not validated.
pub fn build_probes(config: &Config) -> anyhow::Result<Vec<Arc<dyn Probe>>> {
    config
        .probes
        .iter()
        .map(|spec| {
            crate::probe::build(spec).map_err(|errors| {
                let text: Vec<String> = errors
                    .iter()
                    .map(|e| format!("probe.{}.{}: {}", spec.name, e.key, e.message))
                    .collect();
                anyhow::anyhow!("invalid probe {}: {}", spec.name, text.join("; "))
            })
        })
        .collect()
}

/// Removes the empty `run-*` scratch directories a killed process left in
/// `tmp` (a run's own directory is removed when it ends). Only empty ones:
/// a `driftwatch check` sharing the state directory may be running.
fn remove_stale_run_dirs(tmp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("run-")
            && entry.file_type().is_ok_and(|t| t.is_dir())
            && std::fs::remove_dir(entry.path()).is_ok()
        {
            tracing::debug!(dir = %entry.path().display(), "removed a stale run directory");
        }
    }
}

/// Runs the daemon until `shutdown` fires: HTTP server plus scheduler.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let daemon = build(config, true)?;
    // Bind first: health checks answer while the preflights still run.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen}; change [server] listen in the config")
        })?;
    run_with_listener(daemon, listener, shutdown).await
}

/// Runs every probe's preflight at once in the background and logs what
/// they find; a shutdown abandons them (dropping a run kills its process
/// group), so a slow `terraform version` delays neither serving nor exit.
fn preflights(daemon: &Daemon, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    let mut checks = tokio::task::JoinSet::new();
    for (spec, probe) in daemon.scheduler.probes() {
        let name = spec.name.clone();
        let probe = probe.clone();
        checks.spawn(async move { (name, probe.preflight().await) });
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    checks.abort_all();
                    break;
                }
                done = checks.join_next() => match done {
                    Some(Ok((name, problems))) => {
                        for problem in problems {
                            tracing::warn!(probe = %name, "{problem}");
                        }
                    }
                    Some(Err(err)) => tracing::warn!(error = %err, "a preflight check failed"),
                    None => break,
                },
            }
        }
    })
}

/// Runs a built daemon on an already bound listener (tests bind port 0).
pub async fn run_with_listener(
    mut daemon: Daemon,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        repos = daemon.config.repos.len(),
        probes = daemon.config.probes.len(),
        "driftwatch started: status page at http://{address}/, metrics at http://{address}/metrics, API at http://{address}/api/v1/probes"
    );
    let membership = start_membership(&mut daemon, shutdown.clone()).await?;
    let preflights = preflights(&daemon, shutdown.clone());
    let http_stop = CancellationToken::new();
    let history = daemon
        .context
        .history
        .clone()
        .map(|history| record_history(&daemon.scheduler, history, http_stop.clone()));
    let server = tokio::spawn(crate::http::serve(
        listener,
        daemon.context.clone(),
        http_stop.clone(),
    ));
    let cluster_tasks = spawn_cluster_tasks(&daemon, http_stop.clone(), shutdown.clone());
    let ack_sweep = sweep_acks(&daemon, http_stop.clone());
    daemon.scheduler.clone().run(shutdown).await;
    if let Some(membership) = membership {
        let _ = membership.await;
        // The Lease is gone and the others are taking this replica's
        // instances over: keep answering their handover requests
        // (`/api/v1/cluster/status`) a little longer, so drifted-since moves
        // with the instances instead of depending on the status ConfigMap.
        tokio::time::sleep(HANDOVER_GRACE).await;
    }
    http_stop.cancel();
    for task in cluster_tasks {
        let _ = task.await;
    }
    let _ = preflights.await;
    let _ = ack_sweep.await;
    if let Some(history) = history {
        let _ = history.await;
    }
    match server.await {
        Ok(result) => result.context("HTTP server failed")?,
        Err(err) => return Err(err).context("HTTP server task failed"),
    }
    tracing::info!("driftwatch stopped");
    Ok(())
}

/// Starts the membership task of a sharded replica (`[cluster] mode =
/// "kubernetes"`); `None` in single mode. It stops, releasing its Lease,
/// when `shutdown` fires. Also gives the daemon its status ConfigMap store
/// (the handover's fallback), on the same client.
async fn start_membership(
    daemon: &mut Daemon,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let ClusterConfig::Kubernetes(k) = &daemon.config.cluster else {
        return Ok(None);
    };
    if daemon.cluster.is_single() {
        return Ok(None);
    }
    // Requests time out within a renewal, so a hung API cannot stall one.
    let client = crate::cluster::membership::client(
        k.kubeconfig.as_deref(),
        k.context.as_deref(),
        k.renew_interval,
    )
    .await?;
    daemon.status_store = Some(Arc::new(crate::handover::StatusStore::new(
        client.clone(),
        &k.namespace,
        &k.identity,
    )));
    let settings = crate::cluster::membership::Settings {
        identity: k.identity.clone(),
        namespace: k.namespace.clone(),
        advertise_url: k.advertise_url.clone(),
        lease_duration: k.lease_duration,
        renew_interval: k.renew_interval,
    };
    tracing::info!(
        identity = %k.identity,
        namespace = %k.namespace,
        url = %k.advertise_url,
        "sharded mode: joining the cluster through Lease {}",
        settings.lease_name()
    );
    Ok(Some(tokio::spawn(crate::cluster::membership::run(
        daemon.cluster.clone(),
        client,
        settings,
        shutdown,
    ))))
}

/// In `kubernetes` mode: the handover (gained instances take over their
/// previous owner's status) and the writer of this replica's status
/// ConfigMap. Nothing in single mode. The handover runs until `stop` (with
/// the HTTP server); the writer writes a last time as soon as `shutdown`
/// fires, while this replica still owns what it owned.
fn spawn_cluster_tasks(
    daemon: &Daemon,
    stop: CancellationToken,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let cx = &daemon.context;
    if cx.cluster.is_single() {
        return Vec::new();
    }
    let metrics = crate::handover::HandoverMetrics::register(&cx.metrics)
        .map_err(|err| tracing::warn!(error = %err, "cannot register the handover metrics"))
        .ok();
    let mut tasks = vec![crate::handover::Handover {
        cluster: cx.cluster.clone(),
        state: cx.state.clone(),
        history: cx.history.clone(),
        peers: cx.peers.clone(),
        store: daemon.status_store.clone(),
        metrics: metrics.clone(),
    }
    .spawn(stop.clone())];
    if let Some(store) = &daemon.status_store {
        tasks.push(store.clone().spawn_writer(
            cx.state.clone(),
            cx.cluster.clone(),
            crate::handover::store::WRITE_EVERY,
            metrics,
            shutdown,
        ));
    }
    tasks
}

/// Brings every owned instance's acks up to date every few seconds until
/// `stop`, so an expiry is recorded (history, the page) without waiting for
/// a run; metrics match acks at scrape time and need no sweep.
fn sweep_acks(daemon: &Daemon, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let scheduler = daemon.scheduler.clone();
    let state = daemon.context.state.clone();
    let cluster = daemon.cluster.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ACK_SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = chrono::Utc::now();
            let mut events = Vec::new();
            for status in state.snapshot() {
                let id = status.instance();
                let due = status
                    .acks
                    .iter()
                    .any(|a| a.ended.is_none() && a.expires_at <= now);
                if !due || !cluster.owns(&id) {
                    continue;
                }
                events.extend(
                    state
                        .update(&id, |status| crate::ack::store::refresh(status, now))
                        .unwrap_or_default(),
                );
            }
            // Acks waiting for their instance expire too, and are forgotten
            // a while after they end.
            for status in state.waiting() {
                let due = status.acks.iter().any(|a| match a.ended {
                    None => a.expires_at <= now,
                    Some(ended) => now - ended.at >= crate::ack::model::ENDED_RETENTION,
                });
                if due {
                    events.extend(
                        state
                            .update_waiting(&status.instance(), |status| {
                                crate::ack::store::refresh(status, now)
                            })
                            .unwrap_or_default(),
                    );
                    state.persist_soon();
                }
            }
            if !events.is_empty() {
                state.persist_soon();
                scheduler.publish_ack_events(events);
            }
        }
    })
}

/// Feeds every published report into the history (which only queues it),
/// until `stop`; then writes what is queued and closes the database.
fn record_history(
    scheduler: &Scheduler,
    history: Arc<History>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let mut reports = scheduler.subscribe();
    let mut removals = scheduler.subscribe_removals();
    let mut acks = scheduler.subscribe_ack_events();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                Ok(removal) = removals.recv() => history.record_removal(&removal),
                // Runs before acks: a run's ack events are sent after it and
                // name it, so it must be written first.
                received = reports.recv() => match received {
                    Ok(report) => history.record(&report),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "history fell behind the scheduler; runs not recorded");
                    }
                    Err(RecvError::Closed) => break,
                },
                Ok(event) = acks.recv() => history.record_ack(&event),
                _ = stop.cancelled() => {
                    while let Ok(removal) = removals.try_recv() {
                        history.record_removal(&removal);
                    }
                    loop {
                        match reports.try_recv() {
                            Ok(report) => history.record(&report),
                            Err(TryRecvError::Lagged(_)) => continue,
                            Err(_) => break,
                        }
                    }
                    while let Ok(event) = acks.try_recv() {
                        history.record_ack(&event);
                    }
                    break;
                }
            }
        }
        let _ = tokio::task::spawn_blocking(move || history.close()).await;
    })
}

/// Syncs once and runs the selected probes once, for `driftwatch check`.
pub async fn check(mut config: Config, probes: &[String]) -> anyhow::Result<Vec<Arc<RunReport>>> {
    // One run: a watch cache would be filled and thrown away (a plain LIST is cheaper).
    for probe in &mut config.probes {
        probe.one_shot = true;
    }
    let daemon = build(config, false)?;
    let reports = scheduler::run_once(&daemon.scheduler, probes)
        .await
        .map_err(anyhow::Error::msg)?;
    // Acks from the repo came with the runs; run-time ones live in the
    // daemon's state file (read, never written).
    let state_dir = &daemon.config.state_dir;
    let kept: Vec<crate::ack::Ack> = State::peek(state_dir)
        .into_iter()
        .chain(State::peek_waiting(state_dir))
        .flat_map(|status| status.acks)
        .collect();
    let runtime: Vec<crate::ack::Ack> = kept
        .iter()
        .filter(|ack| ack.source == crate::ack::AckSource::Runtime)
        .cloned()
        .collect();
    let now = chrono::Utc::now();
    let reports = reports
        .into_iter()
        .map(|report| {
            let Some(mut status) = daemon.context.state.get(&report.instance()) else {
                return report;
            };
            let id = report.probe.clone();
            // A repo ack the daemon closed (or matched) stays so: the file
            // still holds it, the daemon's state says how it stands.
            for ack in &mut status.acks {
                if let Some(known) = kept
                    .iter()
                    .find(|k| k.id == ack.id && k.instance == ack.instance)
                {
                    ack.ended = known.ended;
                    ack.matched_at = ack.matched_at.or(known.matched_at);
                    ack.changed |= known.changed;
                }
            }
            status
                .acks
                .extend(runtime.iter().filter(|a| a.instance == id).cloned());
            let assessment = crate::ack::assess_status(&status, now);
            let mut report = (*report).clone();
            if report.verdict == crate::model::outcome::Verdict::Drifted {
                for change in &mut report.changes {
                    change.acknowledged_by = assessment
                        .standing_of(&change.subject)
                        .filter(|s| s.standing == crate::ack::Standing::Acknowledged)
                        .map(|s| s.acknowledged_by.clone())
                        .unwrap_or_default();
                }
            }
            Arc::new(report)
        })
        .collect();
    Ok(reports)
}

/// What `validate` found beyond the config file itself.
#[derive(Debug, Default)]
pub struct Validation {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// One line per probe: its schedule and when it next runs.
    pub schedules: Vec<String>,
}

/// `probe.web: "*/15 * * * *" in Europe/Berlin: next run 2026-03-27 13:15 CET
/// (12:15:00 UTC), each instance up to 45s later`.
pub fn schedule_line(
    spec: &crate::config::ProbeSpec,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let Some(schedule) = &spec.schedule else {
        return format!(
            "probe.{}: no schedule (runs at start-up, on a new commit and when triggered)",
            spec.name
        );
    };
    let next = match schedule.next_cron_time(now) {
        Some(next) => format!(
            "next run {} ({})",
            next.with_timezone(&schedule.timezone)
                .format("%Y-%m-%d %H:%M:%S %Z"),
            next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "never fires".to_string(),
    };
    let jitter = if schedule.jitter.is_zero() {
        String::new()
    } else {
        format!(
            ", each instance up to {} later",
            crate::model::duration::compact(schedule.jitter)
        )
    };
    format!(
        "probe.{}: {:?} in {}: {next}{jitter}",
        spec.name,
        schedule.text,
        schedule.timezone.name()
    )
}

/// Checks each probe's environment (binaries present and new enough), and
/// reads each probe's files for warnings (e.g. Ansible tasks that run for
/// real in check mode) where a local copy of its repo is at hand: a `path`
/// repo, or `checkout` (a work tree of the remote repos, as in the infra
/// repo's own CI).
pub async fn validate(config: &Config, checkout: Option<&std::path::Path>) -> Validation {
    let mut result = Validation::default();
    let built = match build_probes(config) {
        Ok(built) => built,
        Err(err) => {
            result
                .errors
                .push(format!("{}: {err:#}", config.source.display()));
            return result;
        }
    };
    let now = chrono::Utc::now();
    // Problems found here point at their key, as the loader's do.
    let text = std::fs::read_to_string(&config.source).unwrap_or_default();
    let at = |probe: &str, key: &str| match crate::config::probe_key_position(&text, probe, key) {
        Some((line, col)) => format!("{}:{line}:{col}", config.source.display()),
        None => config.source.display().to_string(),
    };
    for (probe, runner) in config.probes.iter().zip(&built) {
        result.schedules.push(schedule_line(probe, now));
        for problem in runner.preflight().await {
            result.errors.push(format!(
                "{}: probe.{}: {problem}",
                config.source.display(),
                probe.name
            ));
        }
        let Some(dir) = work_tree(config, probe, checkout) else {
            // Nothing to look in: say which paths stay unchecked.
            let mut named: Vec<(String, String)> = Vec::new();
            if !probe.path.as_os_str().is_empty() {
                named.push(("path".into(), probe.path.display().to_string()));
            }
            for path in runner.repo_paths(None) {
                named.push((path.key.clone(), path.in_repo(&probe.path)));
            }
            for (key, shown) in named {
                result.warnings.push(format!(
                    "probe.{}.{key}: {shown:?} not checked: no work tree of repo {:?} at hand (pass --checkout DIR)",
                    probe.name, probe.repo
                ));
            }
            continue;
        };
        let probe_dir = dir.join(&probe.path);
        if !probe_dir.is_dir() {
            result.errors.push(format!(
                "{}: probe.{}.path: {:?} does not exist in {}",
                at(&probe.name, "path"),
                probe.name,
                probe.path,
                dir.display()
            ));
            continue;
        }
        for problem in crate::probe::checkout_problems(runner.as_ref(), &probe_dir, &probe.path) {
            result.errors.push(format!(
                "{}: probe.{}.{}: {}",
                at(&probe.name, &problem.key),
                probe.name,
                problem.key,
                problem.message
            ));
        }
        for warning in runner.inspect(&probe_dir) {
            result
                .warnings
                .push(format!("probe.{}: {warning}", probe.name));
        }
        for warning in runner.access_warnings(Some(&probe_dir)).await {
            result
                .warnings
                .push(format!("probe.{}: {warning}", probe.name));
        }
    }
    result.warnings.extend(unmatched_ignore_rules(config));
    let instances = probe_instances(config, &built, checkout);
    let acks = crate::ack::validate::check(config, checkout, &instances, now);
    result.errors.extend(acks.errors);
    result.warnings.extend(acks.warnings);
    result
}

/// The work tree `validate` reads a probe's repo in: a `path` repo's own
/// directory, else the `--checkout` given (none: its paths go unchecked).
fn work_tree(
    config: &Config,
    probe: &crate::config::ProbeSpec,
    checkout: Option<&std::path::Path>,
) -> Option<std::path::PathBuf> {
    let repo = config.repos.iter().find(|r| r.name == probe.repo)?;
    match &repo.source {
        crate::config::RepoSource::Path(dir) => Some(dir.clone()),
        crate::config::RepoSource::Remote { .. } => checkout.map(std::path::Path::to_path_buf),
    }
}

/// Each probe's instances, to check the acks files' `instance` against: a
/// multi-root probe's roots as listed in its repo's work tree when one is at
/// hand (a `path` repo, or `checkout`).
fn probe_instances(
    config: &Config,
    built: &[Arc<dyn Probe>],
    checkout: Option<&std::path::Path>,
) -> Vec<(String, crate::ack::repo_file::Instances)> {
    use crate::ack::repo_file::Instances;
    config
        .probes
        .iter()
        .zip(built)
        .map(|(probe, runner)| {
            if runner.single_root() {
                return (probe.name.clone(), Instances::Single);
            }
            let listed = work_tree(config, probe, checkout)
                .and_then(|dir| runner.roots(&dir.join(&probe.path)).ok());
            let listed = listed.map(|listed| listed.roots);
            let instances = listed.map_or(Instances::Unlisted, Instances::Roots);
            (probe.name.clone(), instances)
        })
        .collect()
}

/// Ignore rules that matched nothing in each instance's last run (as the
/// probe recorded them in `details.ignore_rules_unmatched`): stale or
/// mistyped rules, which would otherwise hide nothing silently.
fn unmatched_ignore_rules(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for status in State::peek(&config.state_dir) {
        if !config.probes.iter().any(|p| p.name == status.name) {
            continue;
        }
        let Some(report) = &status.last_report else {
            continue;
        };
        let Some(rules) = report.details["ignore_rules_unmatched"].as_array() else {
            continue;
        };
        let instance = if status.root.is_empty() {
            String::new()
        } else {
            format!(" (root {:?})", status.root)
        };
        for rule in rules.iter().filter_map(|r| r.as_str()) {
            warnings.push(format!(
                "probe.{}{instance}: ignore rule {rule} matched nothing in the last run ({})",
                status.name,
                report.started_at.format("%Y-%m-%d %H:%M UTC")
            ));
        }
    }
    warnings
}
