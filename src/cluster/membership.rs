//! Membership through `coordination.k8s.io/v1` Leases: each replica holds
//! its own Lease `driftwatch-<identity>` and renews it every
//! `renew_interval`; every replica watches all the Leases (kube-runtime's
//! watcher, by label) and hands the live ones to [`Cluster::set_members`].
//!
//! **Clock rule.** A Lease counts as live while it keeps *changing as
//! observed here*: the reader records its own `Instant` whenever a Lease's
//! resourceVersion (or renewTime) changes, and drops the member once its
//! `leaseDurationSeconds` pass with no change. Remote timestamps are never
//! compared with the local clock, so skewed clocks cannot split or merge
//! the cluster. A Lease seen for the first time counts from the moment it
//! was seen (as client-go's leader election does), so a Lease a dead replica
//! left behind expires one lease duration after a newcomer first lists it.
//!
//! **Losing the API.** This replica counts itself a member only while its
//! own last successful renewal, timed from when that request was *sent*, is
//! younger than `lease_duration`. The others can only have observed that
//! renewal after it was sent, so they expire this replica no earlier than
//! it stops claiming: when the API is unreachable (or our renewals fail)
//! the replica owns nothing after one lease duration, and there are never
//! two owners for longer than the read-only handover overlap. Until the
//! watcher's first complete listing arrives, no member set is published at
//! all, so a replica that starts does not briefly claim everything.
//!
//! **Clean shutdown** deletes the own Lease: the survivors see the deletion
//! and take over at once instead of after a lease duration.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Cluster, Member};

/// Each replica's Lease is named this plus its identity.
pub const LEASE_PREFIX: &str = "driftwatch-";
/// The annotation carrying a replica's advertised base URL.
pub const URL_ANNOTATION: &str = "driftwatch.dev/advertise-url";
/// Labels on every member Lease; the watch selects on both.
pub const NAME_LABEL: (&str, &str) = ("app.kubernetes.io/name", "driftwatch");
pub const MEMBER_LABEL: (&str, &str) = ("driftwatch.dev/member", "true");

/// What the membership task needs; built from `[cluster]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub identity: String,
    pub namespace: String,
    pub advertise_url: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

impl Settings {
    pub fn lease_name(&self) -> String {
        format!("{LEASE_PREFIX}{}", self.identity)
    }
}

/// The label selector of member Leases.
pub fn selector() -> String {
    format!(
        "{}={},{}={}",
        NAME_LABEL.0, NAME_LABEL.1, MEMBER_LABEL.0, MEMBER_LABEL.1
    )
}

/// A Lease as last observed, with the local time it last changed.
#[derive(Debug, Clone)]
struct Observed {
    member: Member,
    /// resourceVersion and renewTime as seen; a change in either is a renewal.
    version: (String, String),
    changed_at: Instant,
    duration: Duration,
}

/// Runs membership until `shutdown`: renews the own Lease, watches the
/// others, publishes the live set. On shutdown deletes the own Lease (the
/// scheduler has stopped starting runs by then).
pub async fn run(
    cluster: Cluster,
    client: kube::Client,
    settings: Settings,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let (held_tx, held_rx) = watch::channel(None);
    let renewer = tokio::spawn(renew_loop(
        cluster.clone(),
        api.clone(),
        settings.clone(),
        held_tx,
        shutdown.clone(),
    ));
    observe_loop(&cluster, &api, &settings, held_rx, &shutdown).await;
    let _ = renewer.await;
    release(&api, &settings).await;
    // Owning nothing from here: during the shutdown's handover grace the
    // others already export these instances (statuses are still served to
    // them by instance, whoever owns it).
    cluster.set_members(Vec::new());
}

/// Renews the own Lease every `renew_interval` (creating it when missing);
/// publishes the local send time of each successful renewal.
async fn renew_loop(
    cluster: Cluster,
    api: Api<Lease>,
    settings: Settings,
    held: watch::Sender<Option<Instant>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(settings.renew_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Lease> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let sent = Instant::now();
        // A renewal that hangs must not outlive the lease it renews.
        let attempt =
            tokio::time::timeout(settings.renew_interval, renew(&api, &settings, &mut last));
        match tokio::select! {
            result = attempt => result,
            _ = shutdown.cancelled() => return,
        } {
            Ok(Ok(())) => {
                held.send_replace(Some(sent));
            }
            Ok(Err(err)) => {
                cluster.count_renew_error();
                last = None;
                tracing::warn!(lease = %settings.lease_name(), error = %err, "cannot renew the cluster Lease; this replica stops owning instances once it expires");
            }
            Err(_) => {
                cluster.count_renew_error();
                last = None;
                tracing::warn!(lease = %settings.lease_name(), "renewing the cluster Lease timed out; this replica stops owning instances once it expires");
            }
        }
    }
}

/// One renewal: replace the Lease we last wrote (optimistic concurrency on
/// its resourceVersion), else read it, else create it.
async fn renew(
    api: &Api<Lease>,
    settings: &Settings,
    last: &mut Option<Lease>,
) -> Result<(), kube::Error> {
    let name = settings.lease_name();
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let current = match last.take() {
        Some(lease) => Some(lease),
        None => api.get_opt(&name).await?,
    };
    let written = match current {
        Some(mut lease) => {
            fill(&mut lease, settings);
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(now);
            match api.replace(&name, &PostParams::default(), &lease).await {
                Ok(lease) => lease,
                // Someone else wrote it (a restart of this replica racing
                // its predecessor's last renewal): read again next time.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    return Err(kube::Error::Api(status));
                }
                Err(err) => return Err(err),
            }
        }
        None => {
            let mut lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..LeaseSpec::default()
                }),
            };
            fill(&mut lease, settings);
            api.create(&PostParams::default(), &lease).await?
        }
    };
    *last = Some(written);
    Ok(())
}

/// Sets what every renewal writes besides renewTime: labels, URL, holder, duration.
fn fill(lease: &mut Lease, settings: &Settings) {
    let labels = lease.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(NAME_LABEL.0.into(), NAME_LABEL.1.into());
    labels.insert(MEMBER_LABEL.0.into(), MEMBER_LABEL.1.into());
    lease
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(URL_ANNOTATION.into(), settings.advertise_url.clone());
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(settings.identity.clone());
    spec.lease_duration_seconds = Some(settings.lease_duration.as_secs().max(1) as i32);
}

/// Watches the member Leases and publishes the live set whenever it may
/// have changed: a watch event, an own renewal, or the next expiry.
async fn observe_loop(
    cluster: &Cluster,
    api: &Api<Lease>,
    settings: &Settings,
    mut held: watch::Receiver<Option<Instant>>,
    shutdown: &CancellationToken,
) {
    let own = settings.lease_name();
    let mut stream = watcher(api.clone(), watcher::Config::default().labels(&selector()))
        .default_backoff()
        .boxed();
    let mut observed: BTreeMap<String, Observed> = BTreeMap::new();
    // Leases of a re-list in progress; replaces `observed` at InitDone.
    let mut relisting: Option<BTreeMap<String, Observed>> = None;
    let mut listed = false;
    loop {
        let now = Instant::now();
        let next_expiry = observed
            .values()
            .map(|o| o.changed_at + o.duration)
            .chain(held.borrow().map(|sent| sent + settings.lease_duration))
            .filter(|at| *at > now)
            .min()
            .unwrap_or(now + settings.lease_duration);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = held.changed() => {}
            _ = tokio::time::sleep_until(next_expiry) => {}
            event = stream.next() => match event {
                None => return,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "watching the cluster Leases failed; retrying");
                }
                Some(Ok(event)) => match event {
                    watcher::Event::Init => relisting = Some(BTreeMap::new()),
                    watcher::Event::InitApply(lease) => {
                        if let Some(buffer) = relisting.as_mut() {
                            see(buffer, &observed, lease, settings, Instant::now());
                        }
                    }
                    watcher::Event::InitDone => {
                        if let Some(buffer) = relisting.take() {
                            observed = buffer;
                        }
                        listed = true;
                    }
                    watcher::Event::Apply(lease) => {
                        let previous = observed.clone();
                        see(&mut observed, &previous, lease, settings, Instant::now());
                    }
                    watcher::Event::Delete(lease) => {
                        if let Some(name) = lease.metadata.name {
                            observed.remove(&name);
                        }
                    }
                },
            },
        }
        if listed {
            cluster.set_members(live(
                &observed,
                &own,
                *held.borrow(),
                settings,
                Instant::now(),
            ));
        }
    }
}

/// Records one observed Lease into `into`; its change time carries over
/// from `before` unless its version moved.
fn see(
    into: &mut BTreeMap<String, Observed>,
    before: &BTreeMap<String, Observed>,
    lease: Lease,
    settings: &Settings,
    now: Instant,
) {
    let Some(name) = lease.metadata.name.clone() else {
        return;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let identity = spec
        .holder_identity
        .clone()
        .unwrap_or_else(|| name.trim_start_matches(LEASE_PREFIX).to_string());
    let url = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(URL_ANNOTATION))
        .cloned()
        .unwrap_or_default();
    let version = (
        lease.metadata.resource_version.clone().unwrap_or_default(),
        spec.renew_time
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
    );
    let duration = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(settings.lease_duration);
    let changed_at = match before.get(&name) {
        Some(seen) if seen.version == version => seen.changed_at,
        _ => now,
    };
    into.insert(
        name,
        Observed {
            member: Member { identity, url },
            version,
            changed_at,
            duration,
        },
    );
}

/// The members live now: every other Lease that changed within its
/// duration as observed here, and this replica while its own last
/// successful renewal (from when it was sent) is within the lease duration.
fn live(
    observed: &BTreeMap<String, Observed>,
    own: &str,
    held: Option<Instant>,
    settings: &Settings,
    now: Instant,
) -> Vec<Member> {
    let mut members: Vec<Member> = observed
        .iter()
        .filter(|(name, _)| name.as_str() != own)
        .filter(|(_, seen)| now.duration_since(seen.changed_at) < seen.duration)
        .map(|(_, seen)| seen.member.clone())
        .collect();
    if held.is_some_and(|sent| now.duration_since(sent) < settings.lease_duration) {
        members.push(Member {
            identity: settings.identity.clone(),
            url: settings.advertise_url.clone(),
        });
    }
    members
}

/// Deletes the own Lease so the survivors take over at once.
async fn release(api: &Api<Lease>, settings: &Settings) {
    let name = settings.lease_name();
    match tokio::time::timeout(
        Duration::from_secs(2),
        api.delete(&name, &DeleteParams::default()),
    )
    .await
    {
        Ok(Ok(_)) => tracing::info!(lease = %name, "released the cluster Lease"),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => {}
        Ok(Err(err)) => {
            tracing::warn!(lease = %name, error = %err, "cannot delete the cluster Lease; the others take over once it expires")
        }
        Err(_) => {
            tracing::warn!(lease = %name, "deleting the cluster Lease timed out; the others take over once it expires")
        }
    }
}

/// Builds the API client membership uses: the kubeconfig (and context) when
/// configured, else the pod's service account.
pub async fn client(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<kube::Client> {
    crate::probe::kubernetes::live::connect(kubeconfig, context, timeout)
        .await
        .map_err(|err| anyhow::anyhow!("cluster membership: {}", err.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            identity: "a".into(),
            namespace: "ops".into(),
            advertise_url: "http://a:9808".into(),
            lease_duration: Duration::from_secs(30),
            renew_interval: Duration::from_secs(10),
        }
    }

    fn lease(name: &str, version: &str, renew: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(format!("driftwatch-{name}")),
                resource_version: Some(version.into()),
                annotations: Some([(URL_ANNOTATION.to_string(), format!("http://{name}"))].into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.into()),
                lease_duration_seconds: Some(20),
                renew_time: Some(MicroTime(renew.parse().unwrap())),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn members_live_while_their_lease_changes_on_our_clock() {
        let settings = settings();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut observed = BTreeMap::new();
        let observe = |observed: &mut BTreeMap<String, Observed>, version, renew, when| {
            let before = observed.clone();
            see(
                observed,
                &before,
                lease("b", version, renew),
                &settings,
                at(when),
            );
        };
        let names = |observed: &BTreeMap<String, Observed>, held, now| -> Vec<String> {
            live(observed, "driftwatch-a", held, &settings, now)
                .into_iter()
                .map(|m| m.identity)
                .collect()
        };
        // A renewTime far in the past (a skewed clock) does not matter.
        observe(&mut observed, "1", "2001-01-01T00:00:00Z", 0);
        assert_eq!(names(&observed, None, at(0)), ["b"]);
        assert_eq!(names(&observed, Some(at(15)), at(15)), ["b", "a"]);
        // The same version seen again (a re-list) is no renewal.
        observe(&mut observed, "1", "2001-01-01T00:00:00Z", 15);
        assert_eq!(names(&observed, None, at(19)), ["b"]);
        assert!(
            names(&observed, None, at(21)).is_empty(),
            "b expired after its 20s"
        );
        observe(&mut observed, "7", "2001-01-01T00:00:10Z", 21);
        assert_eq!(
            live(&observed, "driftwatch-a", None, &settings, at(40)),
            [Member {
                identity: "b".into(),
                url: "http://b".into()
            }]
        );
    }

    #[test]
    fn this_replica_stops_claiming_once_its_own_lease_would_expire() {
        let settings = settings();
        let observed = BTreeMap::new();
        let sent = Instant::now();
        let later = |seconds| sent + Duration::from_secs(seconds);
        assert_eq!(
            live(&observed, "driftwatch-a", Some(sent), &settings, later(29)).len(),
            1
        );
        assert!(live(&observed, "driftwatch-a", Some(sent), &settings, later(30)).is_empty());
        assert!(live(&observed, "driftwatch-a", None, &settings, later(0)).is_empty());
    }
}
