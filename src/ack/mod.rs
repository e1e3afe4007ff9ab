//! Acknowledging a known drift (issue 22): an owned, expiring
//! acknowledgement bound to the exact change it was made on, by its
//! fingerprint. While the drift matches, it is *acknowledged*: the verdict
//! still says drifted, but `driftwatch_probe_drifted` and the alerts built
//! on it stay quiet. Drift that changes, new drift, and drift whose ack
//! expired alert as usual (with the episode's original drifted-since).
//!
//! - [`model`]: the [`Ack`] type, requests, expiry and the covers an ack records.
//! - [`matching`]: a pure match of an instance's drift against its acks at `now`.
//! - [`store`]: the transitions on a status (create, delete, expire, close,
//!   the repo's acks, the handover merge), each an [`AckEvent`] for history.
//! - [`repo_file`]: `.driftwatch/acks.toml` in the watched repo.
//! - [`validate`]: what `driftwatch validate` says about acks (stale, malformed).
//! - [`view`]: an ack as the API, the page and the CLI show it.

pub mod matching;
pub mod model;
pub mod repo_file;
pub mod store;
pub mod validate;
pub mod view;

pub use matching::{assess, Assessment, Standing};
pub use model::{Ack, AckError, AckRequest, AckSource, AckState, Cover, EndReason};
pub use store::{AckEvent, AckEventKind};
pub use view::{assess_status, AckView};
