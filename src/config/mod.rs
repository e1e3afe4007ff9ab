//! Configuration: a TOML file read into raw serde structs (unknown keys
//! rejected), then validated into the plain values of `types.rs`. Every problem is collected
//! and reported as `file:line:col: key.path: message`.

use std::path::Path;

pub use duration::{parse_duration, parse_duration_up_to, MAX_DURATION, MAX_RETENTION};
pub use raw::file_tables;
pub use schedule::{parse_timezone, Schedule};
pub use spans::probe_key_position;
pub use types::{
    AcksConfig, ClusterConfig, Config, ConfigErrors, Defaults, FieldError, HistoryConfig,
    KubernetesCluster, LayerCatalog, ProbeConfig, ProbeSpec, RepoAuth, RepoConfig, RepoSource,
    ServerConfig, DEFAULT_ACK_MAX_EXPIRY, DEFAULT_MAX_CHANGES_PER_REPORT, DEFAULT_MAX_REPORT_BYTES,
};

pub use crate::repo_url::redacted_url;

/// Reads, parses and validates a config file; `layers` checks each probe's
/// layer fields.
pub fn load(path: &Path, layers: &dyn LayerCatalog) -> Result<Config, ConfigErrors> {
    loader::load(path, layers)
}

mod cluster;
mod decode;
mod duration;
mod loader;
mod probes;
mod raw;
mod repos;
pub mod schedule;
pub mod schema;
mod server;
mod spans;
mod types;
