//! Rendered responses kept between requests. The overview and the probe
//! list are derived from every probe's status, so rendering them per request
//! made their cost grow with probes × clients. Each view is rendered again
//! when the state changes ([`crate::state::State::generation`]), else when it
//! is a second old (relative times, history events, next runs), and by one
//! request at a time: the others meanwhile get the previous rendering.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::response::Response;
use bytes::Bytes;

use super::blocking;

/// How old a view may get while the state does not change.
pub const MAX_AGE: Duration = Duration::from_secs(1);

struct Rendered {
    generation: u64,
    at: Instant,
    body: Bytes,
}

/// One cached view.
#[derive(Default)]
pub struct CachedView {
    current: RwLock<Option<Rendered>>,
    /// Held by the one request that renders.
    rendering: tokio::sync::Mutex<()>,
}

impl CachedView {
    fn fresh(&self, generation: u64) -> Result<Bytes, Option<Bytes>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        match current.as_ref() {
            Some(r) if r.generation == generation && r.at.elapsed() < MAX_AGE => Ok(r.body.clone()),
            Some(r) => Err(Some(r.body.clone())),
            None => Err(None),
        }
    }

    /// The view for state `generation` (read it before calling), rendered
    /// off the async workers by `render` when needed.
    pub async fn get(
        &self,
        generation: u64,
        render: impl FnOnce() -> Bytes + Send + 'static,
    ) -> Result<Bytes, Response> {
        let stale = match self.fresh(generation) {
            Ok(body) => return Ok(body),
            Err(stale) => stale,
        };
        let _rendering = match (self.rendering.try_lock(), stale) {
            (Ok(guard), _) => guard,
            // Someone is rendering already: the previous body is a few
            // milliseconds out of date at most.
            (Err(_), Some(stale)) => return Ok(stale),
            (Err(_), None) => {
                let guard = self.rendering.lock().await;
                if let Ok(body) = self.fresh(generation) {
                    return Ok(body);
                }
                guard
            }
        };
        let body = blocking(render).await?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Rendered {
            generation,
            at: Instant::now(),
            body: body.clone(),
        });
        Ok(body)
    }
}

/// The views [`super::Context`] caches.
#[derive(Default)]
pub struct Views {
    /// `GET /` as HTML.
    pub overview: CachedView,
    /// `GET /api/v1/probes` as JSON.
    pub probes: CachedView,
    /// `GET /` of the whole cluster (`kubernetes` mode), keyed by the
    /// merged view's serial.
    pub cluster_overview: CachedView,
    /// `GET /api/v1/probes` of the whole cluster.
    pub cluster_probes: CachedView,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn renders_once_per_generation() {
        let view = CachedView::default();
        let renders = Arc::new(AtomicUsize::new(0));
        let render = |text: &'static str| {
            let renders = renders.clone();
            move || {
                renders.fetch_add(1, Ordering::SeqCst);
                Bytes::from_static(text.as_bytes())
            }
        };
        assert_eq!(view.get(1, render("one")).await.unwrap(), "one");
        assert_eq!(view.get(1, render("again")).await.unwrap(), "one");
        assert_eq!(renders.load(Ordering::SeqCst), 1);
        assert_eq!(view.get(2, render("two")).await.unwrap(), "two");
        assert_eq!(renders.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn renders_again_when_old() {
        let view = CachedView::default();
        view.get(1, || Bytes::from_static(b"old")).await.unwrap();
        // Age the rendering instead of sleeping through MAX_AGE.
        view.current.write().unwrap().as_mut().unwrap().at =
            Instant::now().checked_sub(MAX_AGE).unwrap();
        assert_eq!(
            view.get(1, || Bytes::from_static(b"new")).await.unwrap(),
            "new"
        );
    }
}
