//! The probe trait and how probes are built from config. A layer is a
//! module beside this one that implements [`Probe`] and exposes a `build`
//! function; adding a layer means that module plus one line in
//! [`builder`]. This file only declares and re-exports: the trait and the
//! run's context are in `context.rs`, the table of layers in `layers.rs`,
//! the helpers layers check their fields with in `fields.rs`.

pub mod ansible;
pub mod command;
pub mod kubernetes;
pub mod terraform;

mod context;
mod fields;
mod layers;
mod render;
mod repo_path;

pub use context::{
    checkout_problems, BuildFn, CacheStats, Probe, ProbeCommon, ProbeContext, Roots,
};
pub use fields::{check_host_file, check_on_path, check_repo_file, parse_fields};
pub use layers::{build, builder, config_tables, Layers, LAYERS};
pub use render::render_paths;
pub use repo_path::{PathKind, RepoPath};

pub use crate::config::FieldError;
