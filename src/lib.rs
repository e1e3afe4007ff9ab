//! driftwatch: continuous drift detection between git and running infrastructure.
//!
//! Data flows config → repo sync → scheduler → probe → outcome → metrics/state → HTTP.
//!
//! The layers, lowest first. A module imports only from its own layer or
//! the ones below it, and no two files import each other round a circle;
//! `tests/it/layers.rs` reads this list and checks both from the `use` lines.
//!
//! 0. values and utilities that import nothing of ours: [`model`], [`paths`], [`walk`], [`repo_url`], [`weblinks`]
//! 1. configuration, plain data that knows no runtime module: [`config`]
//! 2. contained child processes and the git checkouts: [`process`], [`repo`]
//! 3. what talks to the outside: the probes and the cluster's Leases (which share the Kubernetes client): [`probe`], [`cluster`]
//! 4. what is remembered of runs: [`state`], [`history`], [`metrics`], [`handover`], [`ack`]
//! 5. when and how runs happen: [`scheduler`]
//! 6. what is shown: [`http`], [`report`]
//! 7. the edges that wire it all, and the references generated from them: [`app`], [`cli`], [`reference`]
//!
//! The modules:
//!
//! - [`model`]: values that flow between layers: [`model::instance::InstanceId`], the run outcome, drifted resources, fingerprints.
//! - [`paths`], [`walk`]: paths inside a checkout, and the one directory walker layers read checkouts with (stays inside the checkout).
//! - [`repo_url`]: git remote URLs (and the scp-like form), parsed once; redaction and hook matching.
//! - [`weblinks`]: links to commits and files in the repository's web UI.
//! - [`config`]: TOML → validated [`config::Config`], errors as `file:line:col`.
//! - [`process`]: contained child processes (process groups, timeouts, capped output).
//! - [`repo`]: git2 fetch, one checkout directory per commit.
//! - [`probe`]: the [`probe::Probe`] trait, one file per layer.
//! - [`cluster`]: scale-out membership (Kubernetes Leases) and rendezvous ownership of instances.
//! - [`state`]: last report per probe, persisted atomically; readiness.
//! - [`history`]: runs, drift episodes and events in SQLite.
//! - [`metrics`]: the only writer of Prometheus metrics.
//! - [`handover`]: a gained instance takes over its previous owner's status (peers over HTTP, ConfigMaps).
//! - [`ack`]: acknowledgements of known drift: model, matching, store, the repo's acks file.
//! - [`scheduler`]: cron, run-on-change and manual triggers; concurrency, one run per instance at a time (a trigger during a run waits for it; a scheduled tick skips).
//! - [`http`]: `/metrics`, health, the JSON API, the status page and triggers.
//! - [`report`]: the `check` command's report (text, JSON).
//! - [`app`]: wires the above together for `run` and `check`.
//! - [`cli`]: the command line, and the `ack` client against a running daemon.
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
