//! The answers every handler shares: `Status` objects for errors, 200s
//! with a JSON body, and objects cut to their metadata.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A `Status` object with `code`, as the real server answers errors.
pub(crate) fn status(code: u16, reason: &str, message: String, details: Value) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "details": details, "code": code});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

/// 200 with a JSON body.
pub(crate) fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The object as a `PartialObjectMetadata` (what `Accept: …;as=PartialObjectMetadata` asks for).
pub fn metadata_only(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": object.get("metadata").cloned().unwrap_or(json!({}))})
}
