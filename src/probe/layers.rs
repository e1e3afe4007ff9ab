//! The layers driftwatch knows, and building a running probe from a spec.
//! Adding a layer is its module plus one line in [`builder`].

use std::sync::Arc;

use super::context::{BuildFn, Probe};
use super::{ansible, command, kubernetes, terraform};
use crate::config::schema::TableSchema;
use crate::config::{FieldError, ProbeSpec};

/// The layers driftwatch knows. One line per layer.
pub fn builder(layer: &str) -> Option<BuildFn> {
    match layer {
        "command" => Some(command::build),
        "kubernetes" => Some(kubernetes::build),
        "terraform" => Some(terraform::build),
        "ansible" => Some(ansible::build),
        _ => None,
    }
}

pub const LAYERS: &[&str] = &["command", "kubernetes", "terraform", "ansible"];

/// Each layer's config tables, for the configuration reference: its own
/// `[[probe]]` keys first, then the tables they hold (ignore rules). One line
/// per layer, as in [`builder`].
pub fn config_tables(layer: &str) -> Option<Vec<TableSchema>> {
    match layer {
        "command" => Some(vec![TableSchema::of::<command::CommandConfig>()]),
        "kubernetes" => Some(vec![
            TableSchema::of::<kubernetes::config::KubernetesConfig>(),
            TableSchema::of::<kubernetes::ignore::IgnoreRuleConfig>(),
        ]),
        "terraform" => Some(vec![
            TableSchema::of::<terraform::config::TerraformConfig>(),
            TableSchema::of::<terraform::ignore::IgnoreRuleConfig>(),
        ]),
        "ansible" => Some(vec![
            TableSchema::of::<ansible::config::AnsibleConfig>(),
            TableSchema::of::<ansible::ignore::IgnoreRuleConfig>(),
        ]),
        _ => None,
    }
}

/// Builds the running probe for a validated spec.
pub fn build(spec: &ProbeSpec) -> Result<Arc<dyn Probe>, Vec<FieldError>> {
    let Some(build) = builder(&spec.layer) else {
        return Err(vec![FieldError::new(
            "layer",
            format!(
                "unknown layer {:?}; known layers: {}",
                spec.layer,
                LAYERS.join(", ")
            ),
        )]);
    };
    build(spec, spec.fields.clone())
}

/// The real layers, for the config loader.
pub struct Layers;

impl crate::config::LayerCatalog for Layers {
    fn names(&self) -> &[&'static str] {
        LAYERS
    }

    fn check(&self, spec: &ProbeSpec) -> Result<(), Vec<FieldError>> {
        build(spec).map(drop)
    }
}
