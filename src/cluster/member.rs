//! A live replica, the unit that ownership is hashed over. Its own file so
//! the rendezvous hashing and the membership task can name it without
//! importing the [`Cluster`](super::Cluster) handle that uses them.

use serde::{Deserialize, Serialize};

/// A live replica, as read from its Lease.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The replica's identity (the pod name); its Lease is `driftwatch-<identity>`.
    pub identity: String,
    /// The base URL the replica advertises for its API (`http://10.0.0.7:8080`).
    pub url: String,
}
