//! What the state remembers of one drift: each drifted resource with its
//! fingerprints, the values acknowledgements are matched against. Drawn
//! from a run's resource changes; acks, metrics and the page read them.

use serde::{Deserialize, Serialize};

/// One drifted resource and the action that would reconcile it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DriftedResource {
    pub resource: String,
    pub action: String,
    /// The change's fingerprint, what acknowledgements match against.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// Its fields' fingerprints, when the layer gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<DriftedField>,
}

/// One drifted field of a [`DriftedResource`].
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DriftedField {
    pub field: String,
    pub fingerprint: String,
}
