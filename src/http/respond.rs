//! The answers every route shares: JSON errors, HTML with the page's
//! security headers, the 401 with its challenges, and running blocking
//! work off the async workers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A 401 that names each accepted scheme in `WWW-Authenticate`; `hint`
/// says which credential to send and where it is configured (never the
/// credential itself).
pub(crate) fn unauthorized(challenges: &[&'static str], hint: &str) -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, &format!("unauthorized: {hint}"));
    for challenge in challenges {
        response.headers_mut().append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

/// `{"error": message}` with `status`.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A page: never cached, no scripts, no sniffing.
pub(crate) fn html_response<B: IntoResponse>(status: StatusCode, body: B) -> Response {
    let mut response = (status, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing on these pages needs scripts; forbid them outright.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    );
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Runs blocking history reads and rendering off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}
