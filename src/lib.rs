//! driftwatch: continuous drift detection between git and running infrastructure.
//!
//! Data flows config → repo sync → scheduler → probe → outcome → metrics/state → HTTP:
//!
//! - [`cluster`]: scale-out membership (Kubernetes Leases) and rendezvous ownership of instances.
//! - [`config`]: TOML → validated [`config::Config`], errors as `file:line:col`.
//! - [`model`]: values that flow between layers: [`model::instance::InstanceId`], the run outcome, fingerprints.
//! - [`repo`]: git2 fetch, one checkout directory per commit.
//! - [`repo_url`]: git remote URLs (and the scp-like form), parsed once; redaction and hook matching.
//! - [`scheduler`]: cron, run-on-change and manual triggers; concurrency and skip-if-busy.
//! - [`process`]: contained child processes (process groups, timeouts, capped output).
//! - [`probe`]: the [`probe::Probe`] trait, one file per layer.
//! - [`state`]: last report per probe, persisted atomically; readiness.
//! - [`handover`]: a gained instance takes over its previous owner's status (peers over HTTP, ConfigMaps).
//! - [`ack`]: acknowledgements of known drift: model, matching, store, the repo's acks file.
//! - [`metrics`]: the only writer of Prometheus metrics.
//! - [`http`]: `/metrics`, health, the JSON API, the status page and triggers.
//! - [`weblinks`]: links to commits and files in the repository's web UI.
//! - [`walk`]: the one directory walker layers read checkouts with (stays inside the checkout).
//! - [`app`]: wires the above together for `run` and `check`.
//! - [`reference`]: reference pages generated from the code (the metrics registry).

pub mod ack;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod handover;
pub mod history;
pub mod http;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod probe;
pub mod process;
pub mod reference;
pub mod repo;
pub mod repo_url;
pub mod report;
pub mod scheduler;
pub mod state;
pub mod walk;
pub mod weblinks;
