//! The values that flow between layers and import nothing else of ours: an
//! instance's key, what a probe run produces, and the fingerprints that name
//! a drift, and durations as people read them. Every layer above may read them; they know none of it.

pub mod drifted;
pub mod duration;
pub mod fingerprint;
pub mod instance;
pub mod outcome;
