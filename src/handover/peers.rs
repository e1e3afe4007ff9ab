//! Asking the other replicas over HTTP, at the URL each advertises in its
//! Lease: their local statuses for the handover and for the one page of
//! the whole cluster. Every request has a short timeout, so a member that
//! hangs costs one timeout, never a stuck page or a stuck handover.

use std::time::Duration;

use crate::cluster::Member;
use crate::model::instance::InstanceId;

use super::{StatusSet, STATUS_PATH};

/// Marks a request one replica relays to another; such a request is
/// answered locally, never relayed again (no loops while two replicas
/// briefly disagree on the owner).
pub const RELAYED_HEADER: &str = "x-driftwatch-relayed";
/// The response headers a relay passes on.
pub const RELAYED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "cache-control",
    "content-security-policy",
    "x-content-type-options",
];

/// Default time a peer gets to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a peer's answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("bad member URL {0:?}")]
    Url(String),
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(u16),
}

impl PeerError {
    /// A fixed string, safe as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            PeerError::Url(_) => "bad_url",
            PeerError::Request(err) if err.is_timeout() => "timeout",
            PeerError::Request(err) if err.is_connect() => "connect",
            PeerError::Request(_) => "request",
            PeerError::Status(_) => "status",
        }
    }
}

/// An HTTP client for the other replicas.
#[derive(Clone)]
pub struct Peers {
    client: reqwest::Client,
    /// The `Authorization` header the replicas' read API wants (they share
    /// one config, so one credential opens them all).
    authorization: Option<String>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Peers {
    /// A client whose requests give up after `timeout`; `authorization` is
    /// sent as is (`Bearer …` or `Basic …`).
    pub fn new(timeout: Duration, authorization: Option<String>) -> Peers {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("driftwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a plain HTTP client builds");
        Peers {
            client,
            authorization,
        }
    }

    /// What `member` knows about `instances` (everything it knows when
    /// `None`), for the handover.
    pub async fn statuses(
        &self,
        member: &Member,
        instances: Option<&[InstanceId]>,
    ) -> Result<StatusSet, PeerError> {
        let mut url = status_url(member)?;
        if let Some(instances) = instances {
            let mut query = url.query_pairs_mut();
            for id in instances {
                query.append_pair("instance", &id.to_string());
            }
        }
        self.get(url).await
    }

    /// The instances `member` owns, with their portable statuses, for the
    /// page of the whole cluster.
    pub async fn owned(&self, member: &Member) -> Result<StatusSet, PeerError> {
        let mut url = status_url(member)?;
        url.query_pairs_mut().append_pair("owned", "true");
        self.get(url).await
    }

    /// `member`'s answer to `GET path_and_query`, sent with the
    /// [`RELAYED_HEADER`] so that it is never relayed again: its status,
    /// the headers in [`RELAYED_RESPONSE_HEADERS`] and its body.
    pub async fn relay(
        &self,
        member: &Member,
        path_and_query: &str,
    ) -> Result<(u16, Vec<(String, String)>, bytes::Bytes), PeerError> {
        let url = url::Url::parse(&member.url)
            .and_then(|base| base.join(path_and_query))
            .map_err(|_| PeerError::Url(member.url.clone()))?;
        let mut request = self.client.get(url).header(RELAYED_HEADER, "1");
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = RELAYED_RESPONSE_HEADERS
            .iter()
            .filter_map(|name| {
                let value = response.headers().get(*name)?.to_str().ok()?;
                Some((name.to_string(), value.to_string()))
            })
            .collect();
        Ok((status, headers, response.bytes().await?))
    }

    async fn get(&self, url: url::Url) -> Result<StatusSet, PeerError> {
        let mut request = self.client.get(url);
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            return Err(PeerError::Status(response.status().as_u16()));
        }
        Ok(response.json().await?)
    }
}

fn status_url(member: &Member) -> Result<url::Url, PeerError> {
    url::Url::parse(&member.url)
        .and_then(|base| base.join(STATUS_PATH))
        .map_err(|_| PeerError::Url(member.url.clone()))
}
