//! Label sets shared by the collectors, in a file of their own so a
//! collector beside `metrics.rs` names them without importing the registry
//! that uses it.

/// The labels that name a probe instance on every per-instance series.
pub(super) const INSTANCE: &[&str] = &["probe", "layer", "root"];
